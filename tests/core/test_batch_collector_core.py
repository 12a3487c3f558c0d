"""The batch lane's collector (jobcore.batches) over in-memory fakes: grouping, results, retries, cancels."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from jobcore.batches import LEASE_GRACE_MS, MAX_JOBS_PER_BATCH, Collector, custom_id, parse_custom_id
from jobcore.costing import CostModel
from jobcore.errors import ModelRequestError, ModelUnavailableError, StoreUnavailableError
from jobcore.model import Job, JobStatus, Mode
from jobcore.pricing import default_prices
from jobcore.sweeper import Sweeper
from jobcore.views import render
from tests.fakes import (
    FakeBatchApi,
    FakeClock,
    MemoryBatchStore,
    MemoryInbox,
    harness,
    make_lanes,
    make_service,
)

LANES = make_lanes(batch=True)
MODEL = "claude-sonnet-4-5"


class World:
    def __init__(self, **collector: object) -> None:
        self.h = h = harness(lanes=LANES, cost_model=CostModel(default_prices(), LANES))
        self.clock, self.store, self.blobs, self.deliveries, self.runner = h.clock, h.store, h.blobs, h.deliveries, h.runner
        self.records, self.inbox, self.api = MemoryBatchStore(), MemoryInbox(), FakeBatchApi(self.clock)
        self.collector = Collector(runner=self.runner, batches=self.records, api=self.api, inbox=self.inbox,
                                   queue=self.inbox, model_id=MODEL, **collector)  # type: ignore[arg-type]
        self._n = 0

    def submit(self, task: str = "claude.messages", payload: dict | None = None, **fields: object) -> str:
        self._n += 1
        job_id = f"job_{self._n:032x}"
        now = self.clock.ms()
        payload = payload or {"max_tokens": 50, "messages": [{"role": "user", "content": f"Question {self._n}."}]}
        job = Job(job_id=job_id, tenant_id="t", task=task, status=JobStatus.QUEUED, lane="batch", route_reason="batch: test",
                  mode=Mode.BATCH, created_at=now, updated_at=now, input=payload, **fields)  # type: ignore[arg-type]
        self.store.create(job)
        self.inbox.put(job_id)
        return job_id

    def job(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        assert job is not None
        return job

    def only_batch(self) -> str:
        (batch_id,) = self.records.open_batches()
        return batch_id


def summarize(n: int) -> dict:
    return {"documents": [{"id": f"d{i}", "text": f"Document {i} says something."} for i in range(n)], "max_words": 20,
            "instructions": ""}


def test_custom_ids_fit_the_api_pattern_and_map_back():
    for n, m in ((0, 0), (MAX_JOBS_PER_BATCH - 1, 99_999)):
        assert re.fullmatch(r"^[a-zA-Z0-9_-]{1,64}$", custom_id(n, m))
        assert parse_custom_id(custom_id(n, m)) == (n, m)
    assert parse_custom_id("job_abc") is None


def test_a_pass_sends_the_queue_as_one_batch_and_the_jobs_run_in_it():
    w = World()
    ids = [w.submit() for _ in range(3)]
    report = w.collector.collect()
    assert (report.batches_created, report.jobs_sent, report.requests_sent) == (1, 3, 3)
    batch_id = w.only_batch()
    assert [r.custom_id for r in w.api.created[0]] == ["j0-r0", "j1-r0", "j2-r0"]
    assert w.api.created[0][0].params["model"] == MODEL
    for job_id in ids:
        job = w.job(job_id)
        assert (job.status, job.batch_id, job.batch_attempts, job.lane) == (JobStatus.RUNNING, batch_id, 1, "batch")
        assert job.lease_expires_at == w.api.batches[batch_id]["expires_at"] + LEASE_GRACE_MS
        assert job.started_at == w.clock.ms()
    assert w.inbox.waiting == [] and sorted(w.inbox.deleted) == sorted(ids)
    assert w.records.records[batch_id].jobs == tuple((job_id, 1) for job_id in ids)


def test_an_ended_batch_finishes_its_jobs_with_the_results_at_half_the_token_price():
    w = World()
    job_id = w.submit()
    w.collector.collect()
    w.clock.advance(600)
    assert w.collector.collect().succeeded == []  # still in progress
    w.api.end(w.only_batch())
    report = w.collector.collect()
    assert report.succeeded == [job_id] and report.batches_ended == 1
    job = w.job(job_id)
    assert job.status is JobStatus.SUCCEEDED and job.usage.model_calls == 1
    assert render(job, w.blobs)["result"]["content"][0]["text"].startswith("Summary: ")
    actual = job.cost["actual"]
    assert actual["breakdown"]["compute"] == 0
    full = CostModel(default_prices(), LANES).actual(lane="cpu", model_id=MODEL, usage=job.usage, duration_s=0)
    assert actual["breakdown"]["claude"] == pytest.approx(full["breakdown"]["claude"] / 2)
    assert w.records.open_batches() == [] and w.records.records[job.batch_id].status == "done"


def test_a_multi_call_job_finishes_only_with_all_its_requests_assembled():
    w = World()
    job_id = w.submit("documents.summarize", summarize(3))
    w.collector.collect()
    assert [r.custom_id for r in w.api.created[0]] == ["j0-r0", "j0-r1", "j0-r2"]
    w.api.end(w.only_batch())
    w.collector.collect()
    job = w.job(job_id)
    assert job.status is JobStatus.SUCCEEDED and job.usage.model_calls == 3
    output = render(job, w.blobs)["result"]
    assert output["documents"] == 3 and [s["id"] for s in output["summaries"]] == ["d0", "d1", "d2"]


def test_batches_stay_within_the_limits_and_a_job_never_spans_two():
    w = World(max_requests=4)
    ids = [w.submit("documents.summarize", summarize(3)), w.submit("documents.summarize", summarize(2)), w.submit()]
    report = w.collector.collect()
    assert report.batches_created == 2
    assert [[r.custom_id for r in batch] for batch in w.api.created] == [["j0-r0", "j0-r1", "j0-r2"], ["j0-r0", "j0-r1", "j1-r0"]]
    assert w.job(ids[0]).batch_id != w.job(ids[1]).batch_id == w.job(ids[2]).batch_id


def test_the_byte_limit_and_the_jobs_per_batch_split_too():
    w = World(max_jobs_per_batch=2)
    for _ in range(5):
        w.submit()
    assert w.collector.collect().batches_created == 3
    w = World(max_bytes=250)  # one request of about 150 bytes each
    for _ in range(3):
        w.submit()
    assert w.collector.collect().batches_created == 3


def test_a_job_too_large_for_any_batch_fails():
    w = World(max_requests=2)
    job_id = w.submit("documents.summarize", summarize(3))
    report = w.collector.collect()
    assert report.failed == [job_id] and w.api.created == []
    assert "do not fit one Message Batch" in w.job(job_id).error["message"]


def test_retryable_errors_and_expired_requests_send_the_job_again_then_it_succeeds():
    w = World()
    retry, expire, ok = w.submit(), w.submit(), w.submit()
    w.collector.collect()
    w.api.end(w.only_batch(), {"j0-r0": {"type": "overloaded_error", "message": "Overloaded"}, "j1-r0": "expired"})
    report = w.collector.collect()  # settles, then sends the two again in a new batch in the same pass
    assert report.succeeded == [ok] and sorted(report.requeued) == sorted([retry, expire])
    assert report.batches_created == 1
    for job_id in (retry, expire):
        job = w.job(job_id)
        assert job.status is JobStatus.RUNNING and job.batch_attempts == 2
        assert job.attempt_errors[-1]["type"] == "model_unavailable"
    assert "1 errored (overloaded_error)" in w.job(retry).attempt_errors[-1]["message"]
    assert "1 expired" in w.job(expire).attempt_errors[-1]["message"]
    w.api.end(w.only_batch())
    w.collector.collect()
    assert w.job(retry).status is w.job(expire).status is JobStatus.SUCCEEDED
    assert w.job(retry).error is None


def test_an_invalid_request_fails_the_job_with_the_apis_error_bounded():
    w = World()
    bad, ok = w.submit("documents.summarize", summarize(2)), w.submit()
    w.collector.collect()
    w.api.end(w.only_batch(), {"j0-r1": {"type": "invalid_request_error", "message": "max_tokens: too large " + "x" * 1000}})
    report = w.collector.collect()
    assert report.failed == [bad] and report.succeeded == [ok]
    error = w.job(bad).error
    assert error["type"] == "model_rejected"
    assert error["message"].startswith("request 2 of the job errored in its batch: invalid_request_error: max_tokens: too large")
    assert len(error["message"]) < 400


def test_a_job_is_sent_in_a_bounded_number_of_batches():
    w = World(max_batch_attempts=2)
    job_id = w.submit()
    for _ in range(2):
        w.collector.collect()
        w.api.end(w.only_batch(), {"j0-r0": "expired"})
    report = w.collector.collect()
    assert report.failed == [job_id]
    job = w.job(job_id)
    assert job.status is JobStatus.FAILED and job.error["message"].startswith("gave up after 2 batches: 1 of its 1 requests")


def test_a_canceled_result_of_a_job_nobody_canceled_sends_it_again():
    w = World()
    job_id = w.submit()
    w.collector.collect()
    w.api.end(w.only_batch(), {"j0-r0": "canceled"})
    assert w.collector.collect().requeued == [job_id]


def test_a_batch_whose_every_job_is_canceled_is_canceled_and_its_jobs_end_canceled():
    w = World()
    a, b = w.submit(), w.submit()
    w.collector.collect()
    batch_id = w.only_batch()
    for job_id in (a, b):
        job = w.job(job_id)
        w.runner.save(job, replace(job, status=JobStatus.CANCELING, version=job.version + 1))
    report = w.collector.collect()
    assert report.batches_canceled == 1 and w.api.canceled == [batch_id]
    assert w.collector.collect().batches_canceled == 0  # asked once
    w.api.end(batch_id, {"j0-r0": "canceled", "j1-r0": "canceled"})
    report = w.collector.collect()
    assert sorted(report.canceled) == sorted([a, b])
    assert w.job(a).status is w.job(b).status is JobStatus.CANCELED


def test_a_canceled_job_in_a_batch_with_live_jobs_waits_for_the_batch_and_its_results_are_discarded():
    w = World()
    canceled, live = w.submit(), w.submit()
    w.collector.collect()
    job = w.job(canceled)
    w.runner.save(job, replace(job, status=JobStatus.CANCELING, version=job.version + 1))
    w.collector.collect()
    assert w.api.canceled == [] and w.job(canceled).status is JobStatus.CANCELING
    w.api.end(w.only_batch())
    report = w.collector.collect()
    assert report.canceled == [canceled] and report.succeeded == [live]
    assert w.job(canceled).status is JobStatus.CANCELED and w.job(canceled).result_ref is None


def test_a_job_canceled_in_the_queue_is_never_sent():
    w = World()
    job_id = w.submit()
    w.runner.finish(w.job(job_id), JobStatus.CANCELED)
    report = w.collector.collect()
    assert report.batches_created == 0 and w.api.created == [] and w.inbox.deleted == [job_id]


def test_a_batch_that_never_ends_is_settled_as_expired_after_its_24_hours():
    w = World()
    job_id = w.submit()
    w.collector.collect()
    batch_id = w.only_batch()
    w.clock.advance(86_400 + 3_600 + 1)
    report = w.collector.collect()
    assert report.requeued == [job_id] and w.api.canceled == [batch_id]
    assert "did not end within 24 h" in w.job(job_id).attempt_errors[-1]["message"]
    assert w.records.records[batch_id].status == "done"


def test_the_sweeper_leaves_jobs_in_an_open_batch_alone():
    w = World()
    job_id = w.submit()
    w.collector.collect()
    sweeper = Sweeper(runner=w.runner, queue=w.inbox, max_attempts=5)
    for hours in (1, 11, 12, 1.5):  # 25.5 h in all: the batch could still end
        w.clock.advance(hours * 3600)
        assert not sweeper.sweep()
    assert w.job(job_id).status is JobStatus.RUNNING
    w.clock.advance(3600)  # 26.5 h: the lease ran out: nobody settled the batch (the collector is gone)
    assert sweeper.sweep().requeued == [job_id]
    assert w.job(job_id).lane == "batch"


def test_a_message_for_a_job_already_in_a_batch_is_dropped():
    w = World()
    job_id = w.submit()
    w.collector.collect()
    w.inbox.put(job_id)  # a duplicate, or the send of a re-queue whose state write never landed
    report = w.collector.collect()
    assert report.batches_created == 0 and w.inbox.deleted.count(job_id) == 2


def test_poison_messages_are_counted_and_deleted_without_a_lookup_and_the_pass_sends_the_rest():
    w = World()
    job_id = w.submit()
    for poison in (None, "", "x" * 100, "job 1"):
        w.inbox.put(poison)
    looked_up = []
    real_get = w.store.get
    w.store.get = lambda key: looked_up.append(key) or real_get(key)  # type: ignore[method-assign]

    report = w.collector.collect()

    assert report.poison == 4 and report.jobs_sent == 1 and w.job(job_id).status is JobStatus.RUNNING
    assert sorted(w.inbox.deleted, key=str) == sorted([None, "", "x" * 100, "job 1", job_id], key=str)
    assert set(looked_up) == {job_id}


def test_the_window_holds_jobs_back_until_the_oldest_has_waited_it():
    w = World(window_s=60)
    w.submit()
    report = w.collector.collect()
    assert report.batches_created == 0 and report.deferred == 1 and w.inbox.released[-1][1] == 60
    w.clock.advance(30)
    w.submit()
    assert w.collector.collect().batches_created == 0
    w.clock.advance(31)
    report = w.collector.collect()
    assert report.batches_created == 1 and report.jobs_sent == 2


def test_a_create_the_api_cannot_take_now_is_tried_again_later():
    w = World()
    job_id = w.submit()
    w.api.fail_create.append(ModelUnavailableError("overloaded", status=529))
    report = w.collector.collect()
    assert report.errors == 1 and w.inbox.released == [(job_id, 30)] and w.job(job_id).status is JobStatus.QUEUED
    assert w.collector.collect().batches_created == 1


def test_a_create_refused_for_one_job_fails_only_that_job():
    w = World()
    ids = [w.submit() for _ in range(4)]
    refused = ModelRequestError("the model refused the request (400): bad")
    w.api.fail_create.extend([refused, refused, refused])  # all 4, then [0, 1], then [0]
    report = w.collector.collect()
    assert report.failed == [ids[0]] and report.jobs_sent == 3 and report.batches_created == 2


def test_a_record_that_cannot_be_written_cancels_the_batch_and_keeps_the_jobs_queued():
    w = World()
    job_id = w.submit()
    w.records.broken = True
    with pytest.raises(StoreUnavailableError):
        w.collector.collect()
    assert w.api.canceled == ["msgbatch_0001"] and w.job(job_id).status is JobStatus.QUEUED
    assert w.inbox.released == [(job_id, 30)]


def test_a_gone_batch_sends_its_jobs_again():
    w = World()
    job_id = w.submit()
    w.collector.collect()
    w.api.batches.clear()
    assert w.collector.collect().requeued == [job_id]


def test_the_report_says_how_old_the_oldest_open_batch_is():
    w = World()
    w.submit()
    w.collector.collect()
    w.clock.advance(7200)
    report = w.collector.collect()
    assert report.open_batches == 1 and report.oldest_open_s == 7200


def test_a_job_past_its_queue_deadline_expires_instead_of_being_sent():
    w = World()
    job_id = w.submit(queue_deadline_at=FakeClock().ms() + 1000)
    w.clock.advance(2)
    report = w.collector.collect()
    assert report.expired == [job_id] and w.job(job_id).status is JobStatus.EXPIRED


# --- routing to the batch lane ---------------------------------------------------------------------

from jobcore.errors import UnroutableError  # noqa: E402
from jobcore.routing import RoutingPolicy, decide  # noqa: E402
from jobcore.tasks import CATALOGUE  # noqa: E402
from jobcore.tasks.base import ModelCallsExecutor, load_executor  # noqa: E402

POLICY = RoutingPolicy(lanes=LANES)


def route(task: str, mode: Mode = Mode.AUTO, policy: RoutingPolicy = POLICY, **kwargs: object):
    spec = CATALOGUE[task]
    return decide(spec.profile, expected_duration_s=spec.profile.expected_duration_s, policy=policy, mode=mode,
                  **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("task", ["claude.messages", "invoice.extract", "documents.summarize"])
def test_mode_batch_takes_every_claude_task_to_the_batch_lane(task):
    decision = route(task, Mode.BATCH)
    assert decision.lane == "batch" and "Message Batches API" in decision.reason


def test_mode_batch_refuses_a_gpu_task_and_a_task_that_computes_itself_and_a_deployment_without_the_lane():
    with pytest.raises(UnroutableError, match="needs a GPU"):
        route("embeddings.encode", Mode.BATCH)
    computes = replace(CATALOGUE["claude.messages"].profile, model_calls=False)
    with pytest.raises(UnroutableError, match="computes its result itself"):
        decide(computes, expected_duration_s=1, policy=POLICY, mode=Mode.BATCH)
    without = RoutingPolicy(lanes=make_lanes(batch=True, batch_enabled=False))
    with pytest.raises(UnroutableError, match="batch lane is not enabled"):
        route("claude.messages", Mode.BATCH, policy=without)


def test_auto_sends_a_batch_task_whose_client_waits_a_day_to_the_batch_lane():
    assert route("documents.summarize", max_queue_s=86_400).lane == "batch"
    assert route("documents.summarize", max_queue_s=86_399).lane == "cpu"
    assert route("documents.summarize").lane == "cpu"
    assert route("claude.messages", max_queue_s=86_400).lane == "inline"  # an event task: someone waits on it
    assert route("documents.summarize", Mode.ASYNC, max_queue_s=86_400).lane == "cpu"
    without = RoutingPolicy(lanes=make_lanes(batch=True, batch_enabled=False))
    assert route("documents.summarize", policy=without, max_queue_s=86_400).lane == "cpu"


def test_the_batch_lane_is_never_a_cpu_lane_nor_the_fallback_nor_a_worker_lane():
    assert [lane.name for lane in LANES.queued()] == ["cpu", "gpu", "batch"]
    assert [lane.name for lane in LANES.worker_lanes()] == ["cpu", "gpu"]
    assert [lane.name for lane in LANES.cpu_lanes()] == ["cpu"] and LANES.fallback.name == "cpu"
    assert LANES.batch_lane is not None and LANES.batch_lane.name == "batch"


def test_the_batch_lane_travels_in_the_lanes_document():
    from jobcore.lanes import Lanes

    again = Lanes.from_dict(LANES.to_dict())
    assert again == LANES and again.get("batch").batch and LANES.to_dict()["batch"]["compute"] == {"kind": "batch"}


@pytest.mark.parametrize("task", sorted(CATALOGUE))
def test_each_tasks_profile_says_whether_its_executor_only_calls_claude(task):
    spec = CATALOGUE[task]
    if spec.profile.gpu:
        pytest.importorskip("onnxruntime")
    assert spec.profile.model_calls == isinstance(load_executor(spec.executor), ModelCallsExecutor)


def test_a_batch_job_is_queued_on_the_batch_lane_with_a_half_price_token_estimate():
    from jobcore.requests import parse_submit
    from jobcore.routing import RoutingPolicy as Policy

    w = World()
    queue = MemoryInbox()
    service, _ = make_service(queue=queue, policy=Policy(lanes=LANES), cost_model=w.runner.cost_model, h=w.h,
                              id_format="job_{:032x}")
    body = {"task": "claude.messages", "mode": "batch", "input": {"max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}}
    submitted = service.submit(parse_submit(body), tenant_id="t")
    assert submitted.status_code == 202 and submitted.job.lane == "batch" and submitted.job.mode is Mode.BATCH
    assert queue.waiting[0][0] == submitted.job.job_id
    inline = service.catalogue_view.estimate(CATALOGUE["claude.messages"], "cpu", 1.0)
    assert submitted.job.cost["estimate"]["breakdown"]["claude"] == pytest.approx(inline["breakdown"]["claude"] / 2)
    job = w.store.get(submitted.job.job_id)
    w.runner.save(job, replace(job, status=JobStatus.RUNNING, batch_id="msgbatch_1", version=job.version + 1))
    assert service.cancel(job.job_id, tenant_id="t").status is JobStatus.CANCELING
    assert service.view(w.store.get(job.job_id))["batch_id"] == "msgbatch_1"


def test_a_steady_stream_of_jobs_does_not_keep_a_pass_draining_forever():
    """Jobs arriving as fast as the pass reads them: the pass stops draining after drain_ms and sends what
    it has; the rest waits for the next pass."""
    w = World(drain_ms=1_000)
    first = [w.submit() for _ in range(3)]
    original_receive = w.inbox.receive

    def receive_while_jobs_keep_coming(limit: int):
        got = original_receive(limit=limit)
        w.clock.advance(0.4)  # reading takes time, and meanwhile another job arrives
        w.submit()
        return got

    w.inbox.receive = receive_while_jobs_keep_coming  # type: ignore[method-assign]
    report = w.collector.collect()
    assert report.batches_created == 1
    sent = {job_id for job_id in first if w.job(job_id).status is JobStatus.RUNNING}
    assert sent == set(first)
    assert any(w.job(f"job_{n:032x}").status is JobStatus.QUEUED for n in range(4, w._n + 1))
