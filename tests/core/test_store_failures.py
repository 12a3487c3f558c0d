"""Our own dependencies failing: the job store or the result store unavailable during an inline run, and
results that are gone when a job is read. Over in-memory ports that fail on cue."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jobcore.errors import ModelUnavailableError, StoreUnavailableError
from jobcore.limits import RESULT_IN_ITEM_BYTES
from jobcore.model import JobStatus
from jobcore.requests import SubmitRequest
from jobcore.sweeper import Sweeper
from jobcore.views import job_view, render
from tests.fakes import make_service, text_response

MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "Say hi."}]}


def unavailable() -> StoreUnavailableError:
    return StoreUnavailableError("the job store is unavailable (throttled or unreachable); retry shortly")




def submit(service, key=None):
    return service.submit(SubmitRequest(task="claude.messages", input=MESSAGES), tenant_id="tenant-a", idempotency_key=key)


def fail_after(h, method: str, *, calls_ok: int = 0, error: Exception | None = None):
    """Make ``h.store``/``h.blobs``'s ``method`` raise ``error`` after ``calls_ok`` calls that work."""
    target = h.store if hasattr(h.store, method) and method != "put_json" else h.blobs
    real = getattr(target, method)
    seen = []

    def failing(*args, **kwargs):
        seen.append(args)
        if len(seen) > calls_ok:
            raise error or unavailable()
        return real(*args, **kwargs)

    setattr(target, method, failing)
    return lambda: setattr(target, method, real)


def test_a_result_store_failing_after_the_model_answered_queues_the_job_for_a_worker():
    service, h = make_service([text_response("x" * RESULT_IN_ITEM_BYTES)])  # too big for the item: stored in S3
    fail_after(h, "put_json", error=StoreUnavailableError("the result store is unavailable (throttled or unreachable); retry shortly"))

    submitted = submit(service)

    job = h.store.get(submitted.job.job_id)
    assert submitted.status_code == 202 and job.status is JobStatus.QUEUED and job.lane == "cpu"
    assert job.lease_owner is None and service.queue.sent == [(job.job_id, "cpu")]
    assert job.route_reason.startswith("cpu: inline fallback, the result store is unavailable")
    assert job.error["type"] == "unavailable" and job.attempt_errors[0]["attempt"] == 1


def test_a_bug_in_the_run_queues_the_job_too_and_its_text_stays_in_the_logs():
    service, h = make_service([RuntimeError("KeyError in table arn:aws:dynamodb:eu-west-1:123456789012:table/jobs")])
    submitted = submit(service)
    job = h.store.get(submitted.job.job_id)
    assert submitted.status_code == 202 and job.status is JobStatus.QUEUED
    assert "arn:aws" not in job.route_reason and "arn:aws" not in str(job.error)


def test_a_job_store_down_after_the_job_was_recorded_answers_unavailable_with_the_id_and_the_sweeper_recovers_it():
    """GIVEN a job store that records the inline job, then fails every write
    WHEN the job is submitted
    THEN the client gets StoreUnavailableError naming the job, the job is left running under its inline
    lease, and once that lease has run out the sweeper queues it on the fallback lane, where a worker runs it."""
    service, h = make_service([text_response("hi")])
    restore = fail_after(h, "save")

    with pytest.raises(StoreUnavailableError) as caught:
        submit(service)

    job_id = caught.value.job_id
    assert job_id == "job_0" and "poll it" in str(caught.value)
    stuck = h.store.get(job_id)
    assert stuck.status is JobStatus.RUNNING and stuck.lease_expires_at == h.clock.ms() + 30_000
    restore()  # the store is back

    sweeper = Sweeper(runner=h.runner, queue=service.queue, max_attempts=5)
    assert not sweeper.sweep()  # its lease is still live
    h.clock.advance(30 + sweeper.grace_ms / 1000)
    assert sweeper.sweep().requeued == [job_id]
    job = h.store.get(job_id)
    assert job.status is JobStatus.QUEUED and job.lane == "cpu" and service.queue.sent == [(job_id, "cpu")]


def test_a_model_fallback_whose_write_fails_answers_unavailable_with_the_id_too():
    service, h = make_service([ModelUnavailableError("the model was overloaded (529)", status=529)] * 2)
    fail_after(h, "save")
    with pytest.raises(StoreUnavailableError) as caught:
        submit(service)
    assert h.store.get(caught.value.job_id).status is JobStatus.RUNNING  # the sweeper's, as above


def test_a_write_that_failed_but_landed_is_taken_as_it_stands():
    service, h = make_service([text_response("hi")])
    real_save = h.store.save

    def lands_then_fails(job, *, expected_version, usage=None):
        real_save(job, expected_version=expected_version, usage=usage)
        raise unavailable()  # a timeout after DynamoDB applied the write

    h.store.save = lands_then_fails
    submitted = submit(service)
    assert submitted.job.status is JobStatus.SUCCEEDED and submitted.status_code == 200


def test_an_idempotency_key_whose_job_was_recorded_returns_that_job_on_retry():
    service, h = make_service([text_response("hi")])
    restore = fail_after(h, "save")
    with pytest.raises(StoreUnavailableError) as caught:
        submit(service, key="order-7")
    restore()
    again = submit(service, key="order-7")
    assert again.job.job_id == caught.value.job_id and again.status_code == 202


def test_a_key_left_without_a_status_code_by_a_dead_request_finds_its_job_once_stale():
    service, h = make_service([text_response("hi")])
    restore_save = fail_after(h, "save")
    restore_key = fail_after(h, "complete_key")  # the store is down for the key's completion too
    with pytest.raises(StoreUnavailableError) as caught:
        submit(service, key="order-8")
    restore_save()
    restore_key()
    h.clock.advance(61)
    again = submit(service, key="order-8")
    assert again.job.job_id == caught.value.job_id and again.status_code == 202


def test_a_result_that_is_gone_reads_as_expired_not_as_an_error():
    service, h = make_service([text_response("x" * RESULT_IN_ITEM_BYTES)])  # too big for the item: stored in S3
    job = submit(service).job
    del h.blobs.docs[job.result_ref]  # deleted by hand, or by the lifecycle before DynamoDB's TTL

    view = service.view(h.store.get(job.job_id))

    assert view["status"] == "succeeded" and view["result"] is None and view["result_status"] == "expired"
    assert "result_url" not in view
    assert render(job, h.blobs)["result_status"] == "expired"  # the webhook's rendering too


def test_a_result_past_its_retention_is_expired_without_reading_it_in_the_job_and_in_lists():
    service, h = make_service([text_response("hi")])
    h.runner.result_retention_days = 30
    job = submit(service).job
    h.clock.advance(30 * 86_400)
    h.blobs.get_json = lambda key: pytest.fail("an expired result is not read")

    view = service.view(h.store.get(job.job_id))
    [listed] = service.list_jobs(tenant_id="tenant-a")["jobs"]

    for shown in (view, listed):
        assert shown["result"] is None and shown["result_status"] == "expired" and "result_url" not in shown
    assert "result_status" not in job_view(job, now_ms=h.clock.ms() - 1)  # a day before: still there


def test_files_of_an_expired_result_keep_their_sizes_but_lose_their_links():
    service, h = make_service([text_response("hi")])
    job = submit(service).job
    job = replace(job, files={"v.npy": {"key": "results/x/v.npy", "bytes": 10, "content_type": "application/octet-stream"}},
                  result_expires_at=h.clock.ms())
    view = job_view(job, url_for=h.blobs.url_for, now_ms=h.clock.ms())
    assert view["files"] == {"v.npy": {"bytes": 10, "content_type": "application/octet-stream"}}
