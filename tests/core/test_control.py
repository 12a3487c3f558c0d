"""Control of jobs over in-memory ports: cancel, list, long poll, idempotent submits, deadlines, the sweeper."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jobcore.errors import (
    IdempotencyInProgressError,
    IdempotencyMismatchError,
    InvalidInputError,
    JobCanceledError,
    JobFinishedError,
    JobNotFoundError,
    StoreUnavailableError,
)
from jobcore.idempotency import check_key
from jobcore.model import JobStatus, Mode, Webhook, transition
from jobcore.queries import decode_cursor, encode_cursor
from jobcore.requests import SubmitRequest, parse_list_query, parse_submit, parse_wait, well_formed_job_id
from jobcore.sweeper import Sweeper
from jobcore.tasks import RunContext
from tests import fakes
from tests.fakes import MemoryQueue, ScriptedModel, text_response

MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "Say hi."}]}
SUMMARIZE = {"documents": [{"id": str(i), "text": f"document {i}"} for i in range(5)]}


def make_service(script=(), *, queue=None):
    llm = ScriptedModel(list(script), default=lambda p: text_response("ok"))
    return fakes.make_service(llm=llm, queue=queue, id_format="job_{:03d}")  # ids that sort as they are made


def submit(service, task="claude.messages", payload=MESSAGES, tenant="tenant-a", key=None, **kwargs):
    return service.submit(SubmitRequest(task=task, input=payload, **kwargs), tenant_id=tenant, idempotency_key=key)


# -- cancel ----------------------------------------------------------------------------------------

def test_a_queued_job_is_canceled_at_once_and_never_runs():
    service, h = make_service()
    job = submit(service, mode=Mode.ASYNC, webhook=Webhook("https://example.com/h")).job
    canceled = service.cancel(job.job_id, tenant_id="tenant-a")
    assert canceled.status is JobStatus.CANCELED and canceled.delivery.event_type == "job.canceled"
    model = ScriptedModel()
    outcome = h.runner.process(job.job_id, ctx=RunContext(llm=model, model_id="m"), receive_count=1, max_receives=5)
    assert outcome.delete and model.calls == [] and h.store.get(job.job_id).status is JobStatus.CANCELED


def test_a_running_job_becomes_canceling_and_its_runner_confirms_the_cancel():
    service, h = make_service()
    job = submit(service, task="documents.summarize", payload=SUMMARIZE).job
    claimed = h.runner.save(job, transition(job, JobStatus.RUNNING, now_ms=h.clock.ms(), **h.runner.lease(h.clock.ms())))
    assert service.cancel(job.job_id, tenant_id="tenant-a").status is JobStatus.CANCELING
    assert service.cancel(job.job_id, tenant_id="tenant-a").status is JobStatus.CANCELING  # asked twice: the same

    calls = []

    def check():  # the worker's heartbeat sees "canceling" after two calls
        calls.append(1)
        if len(calls) > 2:
            raise JobCanceledError("canceled")

    model = ScriptedModel(default=lambda p: text_response("summary"))
    outcome = h.runner.execute(claimed, RunContext(llm=model, model_id="m", concurrency=1, check=check))
    assert outcome.job.status is JobStatus.CANCELED and len(model.calls) == 2
    assert h.store.get(job.job_id).result_ref is None


def test_a_job_canceled_while_its_run_finishes_ends_canceled_not_succeeded():
    service, h = make_service()
    job = submit(service, mode=Mode.ASYNC).job
    claimed = h.runner.save(job, transition(job, JobStatus.RUNNING, now_ms=h.clock.ms(), **h.runner.lease(h.clock.ms())))

    def answer_then_get_canceled(params):
        service.cancel(job.job_id, tenant_id="tenant-a")  # lands while the model call is in flight
        return text_response("too late")

    outcome = h.runner.execute(claimed, RunContext(llm=ScriptedModel(default=answer_then_get_canceled), model_id="m"))
    assert outcome.job.status is JobStatus.CANCELED and h.store.get(job.job_id).status is JobStatus.CANCELED


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED])
def test_a_finished_job_cannot_be_canceled_and_says_its_state(status):
    service, h = make_service([text_response("hi")] if status is JobStatus.SUCCEEDED else [])
    job = submit(service).job if status is JobStatus.SUCCEEDED else h.runner.fail(submit(service, mode=Mode.ASYNC).job,
                                                                                  RuntimeError("x"))
    with pytest.raises(JobFinishedError, match=f"it is {status.value}") as raised:
        service.cancel(job.job_id, tenant_id="tenant-a")
    assert raised.value.status == status.value


def test_another_tenant_cannot_cancel():
    service, _ = make_service()
    job = submit(service, mode=Mode.ASYNC).job
    with pytest.raises(JobNotFoundError):
        service.cancel(job.job_id, tenant_id="tenant-b")


# -- list ------------------------------------------------------------------------------------------

def test_list_pages_through_the_tenants_jobs_newest_first_with_a_status_filter():
    service, h = make_service()
    made = []
    for _ in range(7):
        made.append(submit(service, mode=Mode.ASYNC).job.job_id)
        h.clock.advance(1)
    submit(service, mode=Mode.ASYNC, tenant="tenant-b")
    service.cancel(made[1], tenant_id="tenant-a")

    first = service.list_jobs(tenant_id="tenant-a", limit=3)
    assert [j["id"] for j in first["jobs"]] == made[::-1][:3] and first["next_cursor"]
    rest = service.list_jobs(tenant_id="tenant-a", limit=10, cursor=first["next_cursor"])
    assert [j["id"] for j in rest["jobs"]] == made[::-1][3:] and rest["next_cursor"] is None
    canceled = service.list_jobs(tenant_id="tenant-a", status=JobStatus.CANCELED, limit=10)
    assert [j["id"] for j in canceled["jobs"]] == [made[1]]
    assert service.list_jobs(tenant_id="tenant-c")["jobs"] == []


@pytest.mark.parametrize("cursor", ["not base64!", encode_cursor.__name__, "WzEsMiwzXQ", "eyJhIjoxfQ"])
def test_a_cursor_the_api_did_not_make_is_refused(cursor):
    with pytest.raises(InvalidInputError, match="cursor"):
        decode_cursor(cursor)


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "done"}, "query.status"), ({"limit": "0"}, "query.limit"), ({"limit": "101"}, "query.limit"),
    ({"limit": "ten"}, "query.limit"), ({"sort": "asc"}, "query.sort"),
])
def test_list_query_is_checked_naming_the_parameter(params, field):
    with pytest.raises(InvalidInputError) as raised:
        parse_list_query(params)
    assert raised.value.field == field


def test_list_query_defaults():
    assert parse_list_query(None).limit == 20 and parse_list_query({"status": "queued"}).status is JobStatus.QUEUED


# -- long poll -------------------------------------------------------------------------------------

def test_a_long_poll_answers_as_soon_as_the_job_is_finished():
    service, h = make_service()
    job = submit(service, mode=Mode.ASYNC).job
    finished_at = h.clock.monotonic() + 3
    real_sleep = h.clock.sleep

    def sleep_and_maybe_finish(seconds):
        real_sleep(seconds)
        current = h.store.get(job.job_id)
        if h.clock.monotonic() >= finished_at and current.status is JobStatus.QUEUED:
            h.runner.fail(current, RuntimeError("done"))

    service.sleep = sleep_and_maybe_finish
    started = h.clock.monotonic()
    assert service.wait(job.job_id, tenant_id="tenant-a", wait_s=20).status is JobStatus.FAILED
    assert 3 <= h.clock.monotonic() - started < 4.5


def test_a_long_poll_returns_the_job_as_it_is_when_the_wait_ends():
    service, h = make_service()
    job = submit(service, mode=Mode.ASYNC).job
    started = h.clock.monotonic()
    assert service.wait(job.job_id, tenant_id="tenant-a", wait_s=2.5).status is JobStatus.QUEUED
    assert h.clock.monotonic() - started == pytest.approx(2.5)


@pytest.mark.parametrize("raw", ["21", "-1", "soon", "nan"])
def test_wait_is_checked(raw):
    with pytest.raises(InvalidInputError, match="query.wait"):
        parse_wait({"wait": raw})


@pytest.mark.parametrize(("job_id", "ok"), [("job_0123", True), ("x" * 65, False), ("../etc", False), ("", False), ("job id", False)])
def test_only_well_formed_ids_are_looked_up(job_id, ok):
    assert well_formed_job_id(job_id) is ok


# -- idempotency -----------------------------------------------------------------------------------

def test_the_same_key_and_body_return_the_original_job_and_status_code_with_one_model_call():
    service, h = make_service([text_response("hi")])
    first = submit(service, key="k-1")
    again = submit(service, key="k-1")
    assert again.job.job_id == first.job.job_id and again.status_code == first.status_code == 200
    assert len(service.llm.calls) == 1 and len(h.store.jobs) == 1


def test_a_queued_job_replays_with_202_and_its_current_state():
    service, h = make_service()
    first = submit(service, key="k-2", mode=Mode.ASYNC)
    h.runner.fail(h.store.get(first.job.job_id), RuntimeError("x"))
    again = submit(service, key="k-2", mode=Mode.ASYNC)
    assert again.status_code == 202 and again.job.status is JobStatus.FAILED and service.queue.sent == [(first.job.job_id, "cpu")]


def test_the_same_key_with_another_body_is_a_mismatch_and_keys_are_per_tenant():
    service, _ = make_service([text_response("a"), text_response("b")])
    submit(service, key="k-3")
    with pytest.raises(IdempotencyMismatchError) as raised:
        submit(service, key="k-3", payload={**MESSAGES, "max_tokens": 50})
    assert raised.value.field == "Idempotency-Key" and raised.value.type == "idempotency_mismatch"
    other = submit(service, key="k-3", tenant="tenant-b")  # another tenant's key space
    assert other.job.tenant_id == "tenant-b"


def test_a_duplicate_while_the_first_is_still_answering_waits_then_gets_its_answer():
    service, h = make_service()
    first = submit(service, key="k-4", mode=Mode.ASYNC)
    record = next(iter(h.store.keys.values()))
    h.store.keys[record.record_id] = replace(record, status_code=None)  # as if the first were still running
    sleeps = []

    def first_answers(seconds):
        sleeps.append(seconds)
        h.store.complete_key(record.record_id, status_code=202)

    service.sleep = first_answers
    again = submit(service, key="k-4", mode=Mode.ASYNC)
    assert again.job.job_id == first.job.job_id and again.status_code == 202 and len(sleeps) == 1


def test_a_duplicate_gets_409_when_the_first_is_not_answered_within_the_inline_budget():
    service, h = make_service()
    submit(service, key="k-5", mode=Mode.ASYNC)
    record = next(iter(h.store.keys.values()))
    h.store.keys[record.record_id] = replace(record, status_code=None)
    with pytest.raises(IdempotencyInProgressError):
        submit(service, key="k-5", mode=Mode.ASYNC)


def test_a_submit_that_fails_releases_its_key():
    service, h = make_service()

    def down(job):
        raise StoreUnavailableError("the job store is unavailable (throttled or unreachable); retry shortly")

    h.store.create = down
    with pytest.raises(StoreUnavailableError):
        submit(service, key="k-6", mode=Mode.ASYNC)
    assert h.store.keys == {}


def test_a_submit_whose_queue_refused_it_keeps_its_key_and_a_retry_gets_the_same_job():
    service, h = make_service(queue=MemoryQueue(broken=True))
    first = submit(service, key="k-7", mode=Mode.ASYNC)
    again = submit(service, key="k-7", mode=Mode.ASYNC)
    assert first.status_code == again.status_code == 202 and again.job.job_id == first.job.job_id
    assert len(h.store.jobs) == 1


@pytest.mark.parametrize("raw", ["", "x" * 256, "has space", "naïve"])
def test_a_malformed_key_is_refused_naming_the_header(raw):
    with pytest.raises(InvalidInputError) as raised:
        check_key(raw)
    assert raised.value.field == "Idempotency-Key"


# -- deadlines -------------------------------------------------------------------------------------

def test_a_queued_job_past_max_queue_s_expires_and_never_runs():
    service, h = make_service()
    job = submit(service, mode=Mode.ASYNC, max_queue_s=30).job
    assert job.queue_deadline_at == h.clock.ms() + 30_000
    h.clock.advance(31)
    model = ScriptedModel()
    outcome = h.runner.process(job.job_id, ctx=RunContext(llm=model, model_id="m"), receive_count=1, max_receives=5)
    expired = h.store.get(job.job_id)
    assert outcome.delete and expired.status is JobStatus.EXPIRED and model.calls == []
    assert "max_queue_s" in expired.error["message"]


@pytest.mark.parametrize("value", [0, -1, 15 * 86_400, "10", True])
def test_max_queue_s_is_checked(value):
    with pytest.raises(InvalidInputError, match="max_queue_s"):
        parse_submit({"task": "claude.messages", "input": MESSAGES, "max_queue_s": value})


# -- leases and the sweeper ------------------------------------------------------------------------

def claim(h, job, *, owner="worker-a"):
    h.runner.owner = owner
    return h.runner.save(job, transition(job, JobStatus.RUNNING, now_ms=h.clock.ms(), **h.runner.lease(h.clock.ms())))


def test_a_second_runner_never_runs_a_job_under_a_live_lease():
    service, h = make_service()
    job = claim(h, submit(service, mode=Mode.ASYNC).job)
    h.runner.owner = "worker-b"
    model = ScriptedModel()
    outcome = h.runner.process(job.job_id, ctx=RunContext(llm=model, model_id="m"), receive_count=2, max_receives=5)
    assert not outcome.delete and model.calls == [] and "held by worker-a" in outcome.note
    assert outcome.retry_in_s == h.runner.lease_ms // 1000 + 1
    h.clock.advance(h.runner.lease_ms / 1000 + 1)  # the lease ran out: its worker died
    outcome = h.runner.process(job.job_id, ctx=RunContext(llm=ScriptedModel([text_response("ok")]), model_id="m"),
                               receive_count=2, max_receives=5)
    assert outcome.delete and h.store.get(job.job_id).status is JobStatus.SUCCEEDED


def test_renewing_a_lease_keeps_the_version_and_a_cancel_is_read_with_the_lease_state():
    service, h = make_service()
    job = claim(h, submit(service, mode=Mode.ASYNC).job)
    assert h.store.renew_lease(job.job_id, owner="worker-a", until_ms=h.clock.ms() + 99_000) is True
    assert h.store.get(job.job_id).version == job.version
    service.cancel(job.job_id, tenant_id="tenant-a")
    assert h.store.renew_lease(job.job_id, owner="worker-a", until_ms=h.clock.ms() + 99_000) is True
    assert h.store.lease_states([job.job_id]) == {job.job_id: (JobStatus.CANCELING, "worker-a")}
    assert h.store.renew_lease(job.job_id, owner="worker-b", until_ms=h.clock.ms() + 99_000) is False


def sweeper(h, queue=None, max_attempts=3):
    return Sweeper(runner=h.runner, queue=queue or MemoryQueue(), max_attempts=max_attempts)


def test_the_sweeper_requeues_a_run_whose_worker_went_silent_and_fails_it_once_out_of_attempts():
    service, h = make_service()
    job = claim(h, submit(service, mode=Mode.ASYNC).job)
    queue = MemoryQueue()
    sweep = sweeper(h, queue, max_attempts=2)
    assert not sweep.sweep()  # the lease is live
    h.clock.advance(h.runner.lease_ms / 1000 + 6)
    report = sweep.sweep()
    requeued = h.store.get(job.job_id)
    assert report.requeued == [job.job_id] and requeued.status is JobStatus.QUEUED and queue.sent == [(job.job_id, "cpu")]
    assert requeued.lease_owner is None and "no heartbeat from worker-a" in requeued.route_reason

    again = claim(h, requeued, owner="worker-c")  # its second attempt dies too
    h.clock.advance(h.runner.lease_ms / 1000 + 6)
    report = sweep.sweep()
    failed = h.store.get(job.job_id)
    assert report.failed == [again.job_id] and failed.status is JobStatus.FAILED
    assert "gave up after 2 attempts" in failed.error["message"]


def test_the_sweeper_recovers_an_inline_run_whose_router_died_onto_the_fallback_lane():
    service, h = make_service()
    request = SubmitRequest(task="claude.messages", input=MESSAGES)
    task = h.runner.catalogue["claude.messages"]
    payload = task.validate(MESSAGES)
    decision = service.catalogue_view.route(task, task.expected_duration_s(payload), request)
    job = service._new_job(request, payload, decision, tenant_id="tenant-a", task=task, expected_s=1)
    h.store.create(job)  # recorded RUNNING inline, then the router died mid-call
    assert job.lane == "inline" and job.status is JobStatus.RUNNING
    queue = MemoryQueue()
    h.clock.advance(35)
    report = sweeper(h, queue).sweep()
    recovered = h.store.get(job.job_id)
    assert report.requeued == [job.job_id] and recovered.lane == "cpu" and queue.sent == [(job.job_id, "cpu")]


def test_the_sweeper_cancels_a_canceling_job_whose_worker_died_and_expires_overdue_queued_jobs():
    service, h = make_service()
    running = claim(h, submit(service, mode=Mode.ASYNC).job)
    service.cancel(running.job_id, tenant_id="tenant-a")
    waiting = submit(service, mode=Mode.ASYNC, max_queue_s=10).job
    h.clock.advance(h.runner.lease_ms / 1000 + 6)
    report = sweeper(h).sweep()
    assert report.canceled == [running.job_id] and report.expired == [waiting.job_id]
    assert h.store.get(waiting.job_id).status is JobStatus.EXPIRED


class FakeLetters:
    def __init__(self, *job_ids):
        self.batches = [[(job_id, f"r-{i}", 6) for i, job_id in enumerate(job_ids)]]
        self.deleted = []

    def receive(self):
        return self.batches.pop(0) if self.batches else []

    def delete(self, receipt):
        self.deleted.append(receipt)


def test_dead_letters_become_failed_jobs_with_the_reason_and_poison_is_dropped():
    service, h = make_service()
    job = submit(service, mode=Mode.ASYNC).job
    h.runner.save(job, replace(job, error={"type": "model_unavailable", "message": "529"}, version=job.version + 1))
    live = claim(h, submit(service, mode=Mode.ASYNC).job)
    letters = FakeLetters(job.job_id, None, live.job_id, "job_gone")
    report = sweeper(h, max_attempts=5).drain(letters, lane="cpu")
    failed = h.store.get(job.job_id)
    assert failed.status is JobStatus.FAILED and "dead-letter queue after 5 receives; last error: 529" in failed.error["message"]
    assert h.store.get(live.job_id).status is JobStatus.RUNNING  # a live runner holds it
    assert report.dead_letters == 4 and len(letters.deleted) == 4 and report.failed == [job.job_id]


def test_draining_into_an_empty_report_counts_into_that_report():
    service, h = make_service()
    report = sweeper(h).sweep()
    assert not report  # nothing to settle: the report is empty, hence falsy
    sweeper(h).drain(FakeLetters(None), lane="cpu", report=report)
    assert report.dead_letters == 1 and report.poison == 1
