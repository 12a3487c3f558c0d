"""The worker's job processing: claims, results, retries, give-ups and duplicates."""

import threading
from dataclasses import replace

import pytest

from jobcore.deliveries import HANDOVER_GRACE_MS
from jobcore.errors import ConflictError, ModelRequestError, ModelUnavailableError
from jobcore.model import Job, JobStatus, Usage, Webhook, transition
from jobcore.routing import TaskProfile
from jobcore.runner import Backoff
from jobcore.schema_keys import partial_key
from jobcore.tasks import RunContext, TaskResult
from jobcore.views import render
from tests.fakes import RecordingDeliveryQueue, ScriptedModel, harness, make_lanes, text_response

BACKOFF = Backoff()  # the runner's default policy

MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def queued_job(h, *, task="claude.messages", payload=MESSAGES, webhook=None) -> Job:
    job = Job(
        job_id="job_1", tenant_id="t", task=task, status=JobStatus.QUEUED, lane="cpu", route_reason="cpu: test",
        created_at=h.clock.ms(), updated_at=h.clock.ms(), input=payload, webhook=webhook,
    )
    h.store.create(job)
    return job


def process(h, script, *, receive_count=1, max_receives=5):
    model = ScriptedModel(list(script))
    outcome = h.runner.process("job_1", ctx=RunContext(llm=model, model_id="m"), receive_count=receive_count, max_receives=max_receives)
    return outcome, model


def test_success_writes_the_result_then_the_state_and_deletes_the_message():
    h = harness()
    queued_job(h, webhook=Webhook("https://example.com/h"))
    outcome, _ = process(h, [text_response("done")])
    job = h.store.get("job_1")
    assert outcome.delete and job.status is JobStatus.SUCCEEDED
    assert render(job, h.blobs)["result"]["content"][0]["text"] == "done"
    assert job.attempts == 1 and job.usage.output_tokens == 5
    # The outbox entry is written with the terminal state, then handed over to the dispatcher.
    assert job.delivery is not None and job.delivery.pending and job.delivery.event_id == "evt_job_1_succeeded"
    assert job.delivery.next_attempt_at == h.clock.ms() and job.delivery.url == "https://example.com/h"
    assert h.deliveries.scheduled == [("job_1", h.clock.ms(), 0)]


def test_no_webhook_no_delivery():
    h = harness()
    queued_job(h)
    process(h, [text_response("done")])
    assert h.store.get("job_1").delivery is None and h.deliveries.scheduled == []


def test_a_failed_hand_over_leaves_the_delivery_pending_for_the_sweep_and_the_job_finished():
    h = harness()
    h.runner.deliveries = RecordingDeliveryQueue(broken=True)
    queued_job(h, webhook=Webhook("https://example.com/h"))
    outcome, _ = process(h, [text_response("done")])
    job = h.store.get("job_1")
    assert outcome.delete and job.status is JobStatus.SUCCEEDED and job.delivery.pending
    # The hand-over was marked in the same write; the sweep takes it up once its grace has passed.
    assert h.store.due_deliveries(until_ms=h.clock.ms(), limit=10) == []
    grace_over = h.clock.ms() + HANDOVER_GRACE_MS
    assert h.store.due_deliveries(until_ms=grace_over, limit=10) == [("job_1", grace_over)]


def test_a_finished_job_is_not_run_again():
    h = harness()
    queued_job(h)
    process(h, [text_response("first")])
    outcome, model = process(h, [text_response("second")])
    assert outcome.delete and model.calls == []
    assert render(h.store.get("job_1"), h.blobs)["result"]["content"][0]["text"] == "first"


def test_a_missing_job_deletes_the_message():
    h = harness()
    outcome, model = process(h, [])
    assert outcome.delete and "does not exist" in outcome.note


def test_retryable_error_requeues_with_backoff_and_keeps_the_message():
    h = harness()
    queued_job(h)
    outcome, _ = process(h, [ModelUnavailableError("model answered 529: overloaded")], receive_count=2)
    job = h.store.get("job_1")
    assert not outcome.delete and outcome.retry_in_s == BACKOFF.base_s * 2 == 30
    assert job.status is JobStatus.QUEUED and job.error["type"] == "model_unavailable"


def test_retry_after_is_a_floor_under_the_backoff_never_a_replacement():
    h = harness()
    queued_job(h)
    outcome, _ = process(h, [ModelUnavailableError("the model did not answer in time", retry_after_s=7)])
    assert outcome.retry_in_s == BACKOFF.base_s == 15  # not 7: the back-off is longer
    h = harness()
    queued_job(h)
    outcome, _ = process(h, [ModelUnavailableError("the model did not answer in time", retry_after_s=100)])
    assert outcome.retry_in_s == 100  # the model asked for longer than the back-off


def test_the_last_receive_fails_the_job_instead_of_leaving_it_to_the_dlq():
    h = harness()
    queued_job(h)
    outcome, _ = process(h, [ModelUnavailableError("model answered 529: overloaded")], receive_count=5, max_receives=5)
    job = h.store.get("job_1")
    assert outcome.delete and job.status is JobStatus.FAILED
    assert job.error == {"type": "model_unavailable", "message": "gave up after 5 attempts: model answered 529: overloaded"}


def test_a_job_whose_worker_died_is_failed_on_the_last_receive_instead_of_lost_to_the_dlq():
    h = harness()
    job = queued_job(h)
    h.store.save(transition(job, JobStatus.RUNNING, now_ms=h.clock.ms()), expected_version=0)  # then the worker died
    retried, model = process(h, [text_response("second try")], receive_count=2, max_receives=5)
    assert retried.delete and h.store.get("job_1").status is JobStatus.SUCCEEDED and len(model.calls) == 1

    h = harness()
    job = queued_job(h)
    h.store.save(transition(job, JobStatus.RUNNING, now_ms=h.clock.ms()), expected_version=0)
    outcome, model = process(h, [text_response("never")], receive_count=5, max_receives=5)
    failed = h.store.get("job_1")
    assert outcome.delete and model.calls == [] and failed.status is JobStatus.FAILED
    assert failed.error["message"] == "the worker died while running it, 4 times"


def test_a_long_retry_after_is_capped_to_what_sqs_allows():
    h = harness()
    queued_job(h)
    outcome, _ = process(h, [ModelUnavailableError("429", retry_after_s=86_400)])
    assert outcome.retry_in_s == BACKOFF.cap_s == 900


def test_permanent_model_error_fails_at_once():
    h = harness()
    queued_job(h)
    outcome, _ = process(h, [ModelRequestError("model answered 400: bad")])
    assert outcome.delete and h.store.get("job_1").status is JobStatus.FAILED


def test_unexpected_crash_is_retried_as_internal_error():
    h = harness()
    queued_job(h)
    outcome, _ = process(h, [RuntimeError("boom at host 10.0.0.7")])
    job = h.store.get("job_1")
    assert not outcome.delete and job.error["type"] == "internal_error"
    assert "boom" not in job.error["message"] and "internal error" in job.error["message"]  # the raw text is logged only
    assert [(e["attempt"], e["type"]) for e in job.attempt_errors] == [(1, "internal_error")]


def test_a_canceled_job_is_not_run():
    h = harness()
    job = queued_job(h)
    h.store.save(transition(job, JobStatus.CANCELED, now_ms=h.clock.ms()), expected_version=0)
    outcome, model = process(h, [])
    assert outcome.delete and model.calls == [] and "already canceled" in outcome.note


def test_a_queued_job_is_claimed_in_one_write_without_reading_it_first():
    h = harness()
    queued_job(h)
    h.store.get = lambda job_id: pytest.fail("a queued job is claimed without a read")
    writes = h.store.writes

    outcome, model = process(h, [text_response("done")])

    assert outcome.delete and outcome.job.status is JobStatus.SUCCEEDED and outcome.job.attempts == 1
    assert h.store.writes - writes == 2  # claimed, finished


def test_a_claim_that_loses_the_race_is_seen_again_later():
    """GIVEN a job whose worker died (its lease ran out): the one-write claim refuses it, the runner re-claims
    it on the version it read WHEN another worker's claim lands first THEN it is seen again later."""
    h = harness()
    job = queued_job(h)
    h.store.save(transition(job, JobStatus.RUNNING, now_ms=h.clock.ms(), lease_owner="dead", lease_expires_at=h.clock.ms()),
                 expected_version=0)
    h.clock.advance(1)
    save = h.store.save

    def another_worker_wins(job, *, expected_version, usage=None):
        h.store.save = save  # one lost race, then normal
        raise ConflictError("job job_1 changed since version 0")

    h.store.save = another_worker_wins
    outcome, model = process(h, [])
    assert not outcome.delete and outcome.retry_in_s == BACKOFF.base_s and model.calls == []
    assert h.store.get("job_1").lease_owner == "dead"  # the winner's write is not this runner's


class SlowExecutor:
    """A RunExecutor that waits until released."""

    def __init__(self):
        self.release = threading.Event()

    def run(self, payload, ctx):
        self.release.wait(5)
        return TaskResult({"late": True}, Usage())


SLOW = SlowExecutor()


class SlowTask:
    name = "slow"
    description = "waits for an event"
    profile = TaskProfile(expected_duration_s=1, memory_mb=128, timeout_s=0.05)
    executor = "tests.core.test_runner:SLOW"

    def validate(self, payload):
        return payload

    def expected_duration_s(self, payload):
        return 1


def test_a_job_past_its_time_limit_is_timed_out_and_its_late_answer_dropped():
    h = harness()
    h.runner.context.catalogue = {"slow": SlowTask()}
    queued_job(h, task="slow", payload={})
    try:
        outcome, _ = process(h, [])
    finally:
        SLOW.release.set()
    job = h.store.get("job_1")
    assert outcome.delete and job.status is JobStatus.TIMED_OUT and "0.05 s" in job.error["message"]
    assert "results/job_1.json" not in h.blobs.docs


class EchoExecutor:
    """A RunExecutor that answers at once (it makes its calls itself, if any: none are kept between runs)."""

    def run(self, payload, ctx):
        return TaskResult({"echo": payload}, Usage())


ECHO = EchoExecutor()


class EchoTask(SlowTask):
    name = "echo"
    profile = TaskProfile(expected_duration_s=1, memory_mb=128, timeout_s=5)
    executor = "tests.core.test_runner:ECHO"


@pytest.mark.parametrize(("task", "reads"), [("echo", 0), ("claude.messages", 1)])
def test_only_a_retried_model_calls_task_looks_for_the_answers_its_last_run_kept(task, reads):
    """A retry of a task that runs itself (a RunExecutor) has no kept answers to read: no S3 read; a retry of a
    model-calls task reads them once."""
    h = harness()
    h.runner.context.catalogue = {**h.runner.catalogue, "echo": EchoTask()}
    job = queued_job(h, task=task, payload={} if task == "echo" else MESSAGES)
    h.store.save(replace(job, attempts=1, version=job.version + 1), expected_version=job.version)  # its second run
    looked_up = []
    get_json = h.blobs.get_json
    h.blobs.get_json = lambda key: looked_up.append(key) or get_json(key)

    outcome, _ = process(h, [text_response("ok")], receive_count=2)

    assert outcome.delete and h.store.get("job_1").status is JobStatus.SUCCEEDED and h.store.get("job_1").attempts == 2
    assert looked_up == [partial_key("job_1")] * reads


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED])
def test_webhook_events_filter(status):
    h = harness()
    queued_job(h, webhook=Webhook("https://example.com/h", ("failed",)))
    process(h, [text_response("ok") if status is JobStatus.SUCCEEDED else ModelRequestError("bad")])
    delivery = h.store.get("job_1").delivery
    if status is JobStatus.FAILED:
        assert delivery.event_type == "job.failed" and h.deliveries.job_ids == ["job_1"]
    else:
        assert delivery is None and h.deliveries.job_ids == []


def test_the_lane_limit_cuts_a_longer_task_limit():
    h = harness()
    h.runner.context.lanes = make_lanes(cpu_time_limit_s=120)
    job = queued_job(h, task="documents.summarize", payload={"documents": [{"id": "1", "text": "x"}], "max_words": 5, "instructions": ""})
    assert h.runner.time_limit_s(job) == 120  # the task allows 3,600 s
    h.runner.context.lanes = make_lanes(cpu_time_limit_s=7200)
    assert h.runner.time_limit_s(job) == 3600


def test_backoff_doubles_per_attempt_with_retry_after_as_a_floor_and_is_capped():
    backoff = Backoff(base_s=10, cap_s=100, jitter=False)
    assert [backoff.delay_s(n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 80, 100]
    # Retry-After never shortens the back-off (a rate-limited model answering "retry-after: 1"), it only lengthens it.
    assert backoff.delay_s(1, retry_after_s=1) == 10 and backoff.delay_s(3, retry_after_s=1) == 40
    assert backoff.delay_s(1, retry_after_s=33.2) == 34 and backoff.delay_s(1, retry_after_s=1e6) == 100
    assert repr(backoff) == "Backoff(base_s=10, cap_s=100, jitter=False)"
    with pytest.raises(ValueError, match="cap_s"):
        Backoff(base_s=10, cap_s=13 * 3600)


@pytest.mark.parametrize(("draw", "delays"), [(0.0, [5, 10, 20, 40, 50]), (0.5, [8, 15, 30, 60, 75]), (0.999, [10, 20, 40, 80, 100])])
def test_backoff_jitter_is_equal_jitter_from_the_injected_random_source(draw, delays):
    backoff = Backoff(base_s=10, cap_s=100, rng=lambda: draw)
    assert [backoff.delay_s(n) for n in (1, 2, 3, 4, 5)] == delays
    assert backoff.delay_s(1, retry_after_s=30) == 30  # the floor holds under the jitter too


def test_a_runner_with_its_own_backoff_uses_it():
    h = harness()
    h.runner.backoff = Backoff(base_s=2, cap_s=5, jitter=False)
    queued_job(h)
    outcome, _ = process(h, [ModelUnavailableError("529")], receive_count=3)
    assert outcome.retry_in_s == 5 and "Backoff(base_s=2, cap_s=5, jitter=False)" in outcome.note
