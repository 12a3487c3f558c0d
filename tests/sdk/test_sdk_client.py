"""The SDK against the local pipeline (one per module, over real HTTP): create inline and queued jobs, wait,
list pages, cancel, the catalogue, typed errors, and a webhook the pipeline signed, verified.

The pipeline's cpu worker runs one job at a time (``--worker-concurrency 1``), so that a job can be held in
the queue behind another one, to be canceled or waited on in vain.
"""

from __future__ import annotations

import uuid

import pytest

from jobpipe import Client, WaitTimeoutError, WebhookVerificationError, errors
from tests.bodies import LONG, SHORT
from tests.e2e.harness import wait_until

PIPELINE_ARGS = ("--worker-concurrency", "1")


def documents(n: int) -> dict:
    return {"documents": [{"id": f"d{i}", "text": f"Document number {i}. It says little."} for i in range(n)]}


@pytest.fixture
def client(pipeline) -> Client:
    """A client of a tenant of its own (every API key is a tenant locally): its jobs are the test's only."""
    return Client(pipeline["api_url"], f"sdk-{uuid.uuid4().hex[:12]}")


def test_a_short_job_is_created_inline_and_comes_back_finished(client):
    job = client.jobs.create(SHORT["task"], SHORT["input"])
    assert job.succeeded and job.terminal and job.lane == "inline" and job.route_reason
    assert job.result["content"][0]["text"].startswith("Summary: Name one AWS region.")
    assert client.jobs.get(job.id) == {**job, **client.jobs.get(job.id)}  # the same job, read back
    got = client.jobs.get(job.id)
    assert (got.id, got.status, got.lane, got.result) == (job.id, job.status, job.lane, job.result)


def test_a_long_job_is_queued_then_waited_for(client):
    job = client.jobs.create(LONG["task"], LONG["input"], metadata={"order": "42"})
    assert job.status == "queued" and job.lane == "cpu" and not job.terminal
    seen: list[str] = []
    done = client.jobs.wait(job.id, timeout=60, on_update=lambda update: seen.append(update.status))
    assert done.succeeded and [s["id"] for s in done.result["summaries"]] == ["a", "b"]
    assert done["metadata"] == {"order": "42"} and seen[-1] == "succeeded"


def test_create_with_wait_returns_the_finished_job(client):
    job = client.jobs.create(LONG["task"], LONG["input"], mode="async", wait=60)
    assert job.succeeded and job.lane == "cpu" and job.result["documents"] == 2


def test_the_same_idempotency_key_returns_the_same_job_and_another_body_is_refused(client):
    key = f"order-{uuid.uuid4().hex[:8]}"
    first = client.jobs.create(SHORT["task"], SHORT["input"], idempotency_key=key)
    again = client.jobs.create(SHORT["task"], SHORT["input"], idempotency_key=key)
    assert again.id == first.id
    with pytest.raises(errors.IdempotencyMismatchError) as caught:
        client.jobs.create(LONG["task"], LONG["input"], idempotency_key=key)
    assert caught.value.status_code == 422 and caught.value.field == "Idempotency-Key"


def test_list_goes_through_every_page_newest_first(client):
    created = [client.jobs.create(SHORT["task"], SHORT["input"]).id for _ in range(3)]
    pages = list(client.jobs.list(limit=2).pages())
    assert [len(page.jobs) for page in pages] == [2, 1] and pages[0].next_cursor and pages[-1].next_cursor is None
    assert [job.id for job in client.jobs.list(limit=2)] == created[::-1]
    assert [job.id for job in client.jobs.list(status="succeeded", limit=100)] == created[::-1]
    assert list(client.jobs.list(status="failed")) == []


def test_a_queued_job_is_canceled_and_a_wait_on_it_runs_out_first(client, standin):
    standin(latency_s=3)  # holds the only cpu worker with the first job
    blocker = client.jobs.create("documents.summarize", documents(1), mode="async")
    wait_until(lambda: client.jobs.get(blocker.id).status == "running", timeout_s=30, what="the first job running")
    held = client.jobs.create(LONG["task"], LONG["input"], mode="async")
    with pytest.raises(WaitTimeoutError) as caught:
        client.jobs.wait(held.id, timeout=1)
    assert caught.value.job_id == held.id and caught.value.job.status == "queued"
    canceled = client.jobs.cancel(held.id)
    assert canceled.status == "canceled" and canceled["attempts"] == 0
    with pytest.raises(errors.JobFinishedError) as finished:
        client.jobs.cancel(held.id)
    assert finished.value.status_code == 409 and finished.value.status == "canceled"
    assert client.jobs.wait(blocker.id, timeout=60).succeeded


def test_the_catalogue_lists_every_task_with_its_route(client):
    tasks = {task["name"]: task for task in client.tasks.list()}
    assert {"claude.messages", "invoice.extract", "documents.summarize"} <= set(tasks)
    assert all(task["route"]["reason"] and task["description"] for task in tasks.values())


def test_errors_come_back_as_their_classes(client):
    with pytest.raises(errors.NotFoundError) as missing:
        client.jobs.get("job_nosuchjob")
    assert missing.value.status_code == 404 and missing.value.type == "not_found"
    with pytest.raises(errors.UnknownTaskError) as unknown:
        client.jobs.create("no.such.task", {})
    assert unknown.value.status_code == 422
    with pytest.raises(errors.InvalidInputError) as invalid:
        client.jobs.create("claude.messages", {"max_tokens": "many", "messages": []})
    assert invalid.value.status_code == 422 and invalid.value.field.startswith("input.")
    assert invalid.value.field in invalid.value.message
    with pytest.raises(errors.InvalidInputError) as bad_webhook:
        client.jobs.create(SHORT["task"], SHORT["input"], webhook="ftp://example.com/hook")
    assert bad_webhook.value.field == "webhook.url"


def test_a_webhook_the_pipeline_signed_is_verified_and_a_forgery_is_not(client, pipeline, raw_receiver):
    job = client.jobs.create(LONG["task"], LONG["input"], webhook={"url": raw_receiver.url, "events": ["succeeded"]})
    body, headers = raw_receiver.wait_for(job.id)
    event = client.webhooks.verify(body, headers, pipeline["webhook_secret"])
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job.id and event["data"]["status"] == "succeeded"
    assert event["id"] == {k.lower(): v for k, v in headers.items()}["webhook-id"]
    with pytest.raises(WebhookVerificationError):
        client.webhooks.verify(body.replace(b"succeeded", b"failed"), headers, pipeline["webhook_secret"])
    with pytest.raises(WebhookVerificationError):
        client.webhooks.verify(body, headers, "whsec_" + "QUJD" * 8)
