"""Waiting for a model that is rate-limited, overloaded or down: re-queued with a delay, bounded, never on
the receive budget; and the attempt history a job keeps.

The worker's loop is played here by hand: each re-queue is a new SQS message, so every ``process`` call
after one is that message's first receive; the fake clock moves by the delay the runner asked for.
"""

from __future__ import annotations

import pytest

from jobcore.errors import ModelUnavailableError
from jobcore.model import ATTEMPT_ERRORS_KEPT, ERROR_MESSAGE_CHARS, Job, JobStatus, transition
from jobcore.runner import MODEL_WAIT_EARLY_MS
from jobcore.sweeper import Sweeper
from jobcore.tasks import RunContext
from jobcore.views import iso, job_view
from tests.fakes import MemoryQueue, ScriptedModel, harness, text_response

MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
MAX_RECEIVES = 5


def rate_limited() -> ModelUnavailableError:
    return ModelUnavailableError("the model was rate-limited (429)", retry_after_s=1, status=429)


def queued_job(h, **changes) -> Job:
    job = Job(job_id="job_1", tenant_id="t", task="claude.messages", status=JobStatus.QUEUED, lane="cpu",
              route_reason="cpu: test", created_at=h.clock.ms(), updated_at=h.clock.ms(), input=MESSAGES, **changes)
    h.store.create(job)
    return job


def receive(h, model, *, receive_count=1):
    return h.runner.process("job_1", ctx=RunContext(llm=model, model_id="m"), receive_count=receive_count,
                            max_receives=MAX_RECEIVES)


def test_a_job_rate_limited_for_longer_than_its_receives_allow_waits_and_succeeds_when_the_model_recovers():
    """GIVEN a model that answers 429 (Retry-After: 1) to the job's first 8 attempts
    WHEN the worker handles each message as it comes
    THEN every failure re-queues the job as a new delayed message (no receive spent), the delays follow the
    back-off (not the 1 s the model asked for), and the 9th attempt succeeds with the earlier errors kept
    in its history only."""
    h = harness()
    queued_job(h)
    model = ScriptedModel([rate_limited() for _ in range(8)] + [text_response("at last")])
    delays = []
    for _ in range(8):
        outcome = receive(h, model)
        assert outcome.requeue and not outcome.delete, outcome.note
        job = h.store.get("job_1")
        assert job.status is JobStatus.QUEUED and job.lease_owner is None
        delays.append(outcome.retry_in_s)
        h.clock.advance(outcome.retry_in_s)
    done = receive(h, model)

    assert delays == [15, 30, 60, 120, 240, 480, 900, 900]  # capped at SQS's longest message delay
    # Far beyond what its receives could have waited, backing off through visibility (15 + 30 + 60 + 120 s).
    assert sum(delays) > 10 * sum(h.runner.backoff.delay_s(n) for n in range(1, MAX_RECEIVES))
    job = h.store.get("job_1")
    assert done.delete and job.status is JobStatus.SUCCEEDED and job.attempts == 9
    assert job.error is None  # the earlier attempts' errors do not stick to the result
    assert [e["attempt"] for e in job.attempt_errors] == list(range(1, 9))
    assert job.attempt_errors[0] == {"attempt": 1, "at": job.created_at, "type": "model_unavailable",
                                     "message": "the model was rate-limited (429)"}
    assert job.model_wait.waits == 8 and job.model_wait.next_attempt_at is None
    assert "waiting" not in job_view(job)


def test_the_last_receive_does_not_fail_a_job_that_waits_for_the_model():
    h = harness()
    queued_job(h)
    outcome = receive(h, ScriptedModel([rate_limited()]), receive_count=MAX_RECEIVES)
    assert outcome.requeue and h.store.get("job_1").status is JobStatus.QUEUED


@pytest.mark.parametrize(("error", "kind"), [
    (ModelUnavailableError("the model was overloaded (529)", status=529), "overloaded"),
    (ModelUnavailableError("the model failed with a server error (503)", status=503), "server_error"),
    (ModelUnavailableError("could not reach the model", kind="unreachable"), "unreachable"),
])
def test_overload_server_errors_and_an_unreachable_model_wait_too(error, kind):
    h = harness()
    queued_job(h)
    outcome = receive(h, ScriptedModel([error]))
    assert error.kind == kind and outcome.requeue and outcome.retry_in_s == 15


def test_a_timeout_spends_a_receive_as_before_it_may_be_the_jobs_own_doing():
    h = harness()
    queued_job(h)
    outcome = receive(h, ScriptedModel([ModelUnavailableError("the model did not answer in time", kind="timeout")]), receive_count=2)
    assert not outcome.requeue and outcome.retry_in_s == 30 and h.store.get("job_1").model_wait is None


def test_the_wait_is_bounded_the_last_attempt_comes_at_the_limit_then_the_job_fails_saying_how_long_it_waited():
    h = harness()
    h.runner.model_wait_limit_s = 600
    queued_job(h)
    model = ScriptedModel(default=lambda params: (_ for _ in ()).throw(rate_limited()))
    started = None
    delays = []
    while True:
        outcome = receive(h, model)
        started = started or h.store.get("job_1").model_wait.since
        if outcome.delete:
            break
        delays.append(outcome.retry_in_s)
        h.clock.advance(outcome.retry_in_s)

    assert delays == [15, 30, 60, 120, 240, 135]  # the last wait ends exactly at the 600 s limit
    job = h.store.get("job_1")
    assert job.status is JobStatus.FAILED and h.clock.ms() - started == 600_000
    assert job.error == {"type": "model_unavailable", "message": (
        "the model stayed unavailable (model rate-limited (429)): gave up after waiting 10 min (the limit is 10 min) "
        "over 7 attempts")}
    assert len(model.calls) == 7


def test_the_view_says_why_a_queued_job_waits_and_until_when():
    h = harness()
    queued_job(h)
    since = h.clock.ms()
    receive(h, ScriptedModel([rate_limited()]))
    h.clock.advance(15)
    receive(h, ScriptedModel([rate_limited()]))

    view = job_view(h.store.get("job_1"))
    assert view["waiting"] == (f"model rate-limited (429); next attempt at {iso(h.clock.ms() + 30_000)}, attempt 3, "
                               f"waiting since {iso(since)}")
    assert view["waiting"].startswith("model rate-limited (429); next attempt at 20") and view["waiting"].count("Z") == 2
    assert view["error"] == {"type": "model_unavailable", "message": "the model was rate-limited (429)"}
    assert [e["attempt"] for e in view["attempt_errors"]] == [1, 2] and view["attempt_errors"][0]["at"] == iso(since)

    h.clock.advance(30)
    running = transition(h.store.get("job_1"), JobStatus.RUNNING, now_ms=h.clock.ms())
    assert "waiting" not in job_view(running)  # it runs: no longer waiting


def test_a_stray_copy_of_the_message_arriving_long_before_the_next_attempt_is_dropped_without_a_model_call():
    h = harness()
    queued_job(h)
    receive(h, ScriptedModel([rate_limited()]))  # waits 15 s
    early = ScriptedModel([text_response("too early")])

    h.clock.advance(1)  # the old message, whose delete failed, back after its visibility
    stray = receive(h, early, receive_count=2)
    assert stray.delete and "stray" in stray.note and early.calls == []
    assert h.store.get("job_1").status is JobStatus.QUEUED

    h.clock.advance(14 - MODEL_WAIT_EARLY_MS / 1000 + 1)  # within the slack of the next attempt (clock skew): it runs
    assert receive(h, early).delete and h.store.get("job_1").status is JobStatus.SUCCEEDED


def test_a_waiting_job_past_its_max_queue_s_expires_on_its_next_message_and_at_the_sweeper():
    for by_sweeper in (False, True):
        h = harness()
        queued_job(h, queue_deadline_at=h.clock.ms() + 40_000)
        receive(h, ScriptedModel([rate_limited()]))
        h.clock.advance(15)
        receive(h, ScriptedModel([rate_limited()]))  # waits 30 s more: past the deadline
        h.clock.advance(35)  # 50 s after it was submitted
        if by_sweeper:
            report = Sweeper(runner=h.runner, queue=MemoryQueue(), max_attempts=MAX_RECEIVES, grace_ms=0).sweep()
            assert report.expired == ["job_1"]
        else:
            assert receive(h, ScriptedModel([])).delete
        job = h.store.get("job_1")
        assert job.status is JobStatus.EXPIRED
        assert job.error == {"type": "expired", "message": "not finished within max_queue_s (40 s): it was still queued, "
                                                           "to be retried, after 2 attempts"}


def test_the_attempt_history_is_bounded_in_entries_and_message_length():
    h = harness()
    job = queued_job(h)
    for attempt in range(1, ATTEMPT_ERRORS_KEPT + 4):
        running = transition(job, JobStatus.RUNNING, now_ms=h.clock.ms())
        job = transition(running, JobStatus.QUEUED, now_ms=h.clock.ms(),
                         error={"type": "internal_error", "message": f"attempt {attempt} " + "x" * 2000})
    assert len(job.attempt_errors) == ATTEMPT_ERRORS_KEPT
    assert job.attempt_errors[0]["attempt"] == 4 and job.attempt_errors[-1]["attempt"] == ATTEMPT_ERRORS_KEPT + 3
    assert all(len(e["message"]) == ERROR_MESSAGE_CHARS for e in job.attempt_errors)
    assert Job.from_dict(job.to_dict()) == job
