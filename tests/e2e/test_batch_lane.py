"""The batch lane end to end: ``mode: "batch"`` jobs through the local pipeline, whose collector process sends
them to the Claude stand-in's Message Batches API through the anthropic SDK and settles the results.

The collector waits ``batch_window_s`` (2 s here) for a fuller batch, so jobs submitted together share one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local import client
from tests.e2e.harness import finished_job, wait_until

PIPELINE_ARGS = ("--context", json.dumps({"batch_window_s": 2}))
INPUTS = {
    "claude.messages": {"max_tokens": 60, "messages": [{"role": "user", "content": "Explain what a Message Batch is."}]},
    "invoice.extract": {"text": (Path(__file__).parents[2] / "local" / "samples" / "invoice_acme.txt").read_text()},
    "documents.summarize": {"documents": [{"id": "a", "text": "Batches cost half. They end within a day."},
                                          {"id": "b", "text": "The collector polls every minute."}]},
}


def api(pipeline, method, path, body=None):
    return client.call(method, pipeline["api_url"] + path, body)


def submit(pipeline, task, payload, **extra):
    status, _, job = api(pipeline, "POST", "/v1/jobs", {"task": task, "input": payload, **extra})
    assert status in (200, 202), job
    return job


def finished(pipeline, job_id, timeout_s=60):
    return finished_job(pipeline, job_id, timeout_s=timeout_s)


@pytest.fixture(autouse=True)
def no_batch_failures(standin):
    standin(batch={"fail": None, "delay_s": 1})
    yield
    standin(batch={"fail": None, "delay_s": 1})


def test_a_batch_job_of_each_claude_task_succeeds_through_the_batches_api(pipeline, standin):
    jobs = {task: submit(pipeline, task, payload, mode="batch") for task, payload in INPUTS.items()}
    for task, job in jobs.items():
        assert job["route"]["lane"] == "batch" and job["status"] == "queued"
        done = finished(pipeline, job["id"])
        assert done["status"] == "succeeded", done["error"]
        assert done["batch_id"].startswith("msgbatch_")
        assert done["usage"]["model_calls"] == (2 if task == "documents.summarize" else 1)
        assert done["cost"]["actual"]["breakdown"]["compute"] == 0
    assert len({finished(pipeline, job["id"])["batch_id"] for job in jobs.values()}) == 1  # one batch, the window's
    assert finished(pipeline, jobs["documents.summarize"]["id"])["result"]["documents"] == 2
    assert standin.stats()["batches"]["created"] >= 1


def test_errored_and_expired_requests_fail_their_jobs_and_the_others_succeed(pipeline, standin):
    standin(batch={"fail": [{"custom_id": "-r2$", "error_type": "invalid_request_error", "message": "bad document"},
                            {"custom_id": "-r1$", "result": "expired"}]})
    ok = submit(pipeline, "claude.messages", INPUTS["claude.messages"], mode="batch")  # r0 only
    expiring = submit(pipeline, "documents.summarize", INPUTS["documents.summarize"], mode="batch")  # r1 expires, every batch
    three = {"documents": [{"id": str(i), "text": f"Document {i}."} for i in range(3)]}
    refused = submit(pipeline, "documents.summarize", three, mode="batch")  # r2 is refused (and r1 expires)
    assert finished(pipeline, ok["id"])["status"] == "succeeded"
    job = finished(pipeline, refused["id"])
    assert job["status"] == "failed" and job["error"]["type"] == "model_rejected"
    assert job["error"]["message"] == "request 3 of the job errored in its batch: invalid_request_error: bad document"
    job = finished(pipeline, expiring["id"], timeout_s=90)
    assert job["status"] == "failed" and job["error"]["message"].startswith("gave up after 3 batches: 1 of its 2 requests")
    assert [e["type"] for e in job["attempt_errors"]] == ["model_unavailable", "model_unavailable", "model_error"]


def test_a_canceled_batch_job_ends_canceled(pipeline, standin):
    standin(batch={"delay_s": 60})
    job = submit(pipeline, "claude.messages", INPUTS["claude.messages"], mode="batch")

    def in_batch():
        _, _, view = api(pipeline, "GET", f"/v1/jobs/{job['id']}")
        return view if view["status"] == "running" else None
    running = wait_until(in_batch, timeout_s=30, what="the job in a batch")
    status, _, canceling = api(pipeline, "POST", f"/v1/jobs/{job['id']}/cancel")
    assert (status, canceling["status"]) == (202, "canceling")
    done = finished(pipeline, job["id"])
    assert done["status"] == "canceled" and done["batch_id"] == running["batch_id"]
    assert "result" not in done


def test_a_batch_job_costs_half_the_tokens_of_the_same_job_inline(pipeline):
    inline = submit(pipeline, "claude.messages", INPUTS["claude.messages"])
    assert inline["route"]["lane"] == "inline" and inline["status"] == "succeeded"
    batch = finished(pipeline, submit(pipeline, "claude.messages", INPUTS["claude.messages"], mode="batch")["id"])
    assert batch["usage"] == inline["usage"]
    claude = (inline["cost"]["actual"]["breakdown"]["claude"], batch["cost"]["actual"]["breakdown"]["claude"])
    assert claude[1] == pytest.approx(claude[0] / 2)
