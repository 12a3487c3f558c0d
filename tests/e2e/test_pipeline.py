"""End to end: the local pipeline in its own process, driven over real HTTP like a client would.

The pipeline (the ``pipeline`` fixture, conftest.py) runs with a 4 s inline budget so that the timeout
fallback is quick to provoke.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from local import client
from tests.bodies import LONG, SHORT
from worker.main import READY

# A failed attempt backs off from 2 s here (the deployment's: 15 s, jobcore.limits.BACKOFF_BASE_S): an inline job
# that falls back while the model is overloaded is queued to run again within seconds, by the same path.
PIPELINE_ENV = {"BACKOFF_BASE_S": "2"}

KEY = "e2e-key"


def call(method, url, body=None, *, key=KEY, raw=None):
    return client.call(method, url, body, key=key, raw=raw)


def poll(pipeline, job_id, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, _, job = call("GET", f"{pipeline['api_url']}/v1/jobs/{job_id}")
        assert status == 200, job
        if job["status"] not in {"queued", "running"}:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{job_id} still {job['status']} after {timeout_s} s")


def test_short_job_runs_inline_through_the_sdk_and_returns_200(pipeline, standin):
    before = standin.requests()
    status, _, job = call("POST", f"{pipeline['api_url']}/v1/jobs", SHORT)
    assert status == 200, job
    assert job["status"] == "succeeded" and job["route"]["lane"] == "inline"
    assert job["result"]["content"][0]["text"].startswith("Summary: Name one AWS region.")
    assert job["usage"]["model_calls"] == 1
    assert standin.requests() == before + 1  # a real HTTP call of the anthropic SDK


def test_long_job_is_queued_polled_and_its_result_read_back(pipeline):
    status, headers, job = call("POST", f"{pipeline['api_url']}/v1/jobs", LONG)
    assert status == 202 and job["status"] == "queued" and job["route"]["lane"] == "cpu"
    assert headers["Location"] == f"/v1/jobs/{job['id']}"
    done = poll(pipeline, job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert [s["id"] for s in done["result"]["summaries"]] == ["a", "b"]
    assert "result_url" not in done  # a small result is kept in the job item: nothing in S3 to link to
    assert f"{READY} the cpu lane" in Path(pipeline["worker_log"]).read_text()  # what local.pipeline's wait reads


def test_webhook_is_delivered_signed_on_completion(pipeline):
    receiver = pipeline["receiver"]
    body = {**LONG, "webhook": {"url": receiver.url}}
    _, _, job = call("POST", f"{pipeline['api_url']}/v1/jobs", body)
    event = receiver.wait_for(job["id"], timeout_s=60)
    assert event is not None, "no webhook arrived"
    assert event["type"] == "job.succeeded" and event["id"] == f"evt_{job['id']}_succeeded"
    assert event["data"]["status"] == "succeeded" and event["data"]["result"]["documents"] == 2
    assert receiver.rejected == []


def settled_delivery(pipeline, job_id, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, _, body = call("GET", f"{pipeline['api_url']}/v1/jobs/{job_id}/deliveries")
        assert status == 200, body
        if body["deliveries"] and body["deliveries"][0]["state"] != "pending":
            return body["deliveries"][0]
        time.sleep(0.2)
    raise AssertionError(f"the delivery of {job_id} did not settle in {timeout_s} s")


def test_a_receiver_failing_three_times_gets_the_event_once_on_the_fourth_attempt(pipeline):
    receiver = pipeline["receiver"]
    _, _, job = call("POST", f"{pipeline['api_url']}/v1/jobs", {**SHORT, "webhook": {"url": f"{receiver.url}?fail=3"}})
    delivery = settled_delivery(pipeline, job["id"])
    event_id = f"evt_{job['id']}_succeeded"
    assert delivery["state"] == "delivered" and delivery["event_id"] == event_id
    assert [a.get("status") for a in delivery["attempts"]] == [503, 503, 503, 204]
    assert receiver.attempts[event_id] == 4  # every attempt carried the same webhook-id
    assert [e["id"] for e in receiver.events].count(event_id) == 1 and receiver.rejected == []
    _, _, view = call("GET", f"{pipeline['api_url']}/v1/jobs/{job['id']}")
    assert view["webhook"]["delivery"] == "delivered on attempt 4 (HTTP 204)"


def test_an_exhausted_delivery_is_logged_failed_and_a_redelivery_delivers_it(pipeline):
    receiver = pipeline["receiver"]
    _, _, job = call("POST", f"{pipeline['api_url']}/v1/jobs", {**SHORT, "webhook": {"url": f"{receiver.url}?fail=5"}})
    failed = settled_delivery(pipeline, job["id"])
    assert failed["state"] == "failed" and len(failed["attempts"]) == 5 and "no attempt left" in failed["reason"]

    status, _, again = call("POST", f"{pipeline['api_url']}/v1/jobs/{job['id']}/deliveries")
    assert status == 202 and again["deliveries"][0]["state"] == "pending" and again["deliveries"][0]["series"] == 2
    delivered = settled_delivery(pipeline, job["id"])
    assert delivered["state"] == "delivered" and delivered["attempts"][-1]["series"] == 2
    assert receiver.wait_for(job["id"], timeout_s=5)["id"] == f"evt_{job['id']}_succeeded"


def test_a_hanging_receiver_never_delays_an_inline_answer(pipeline):
    receiver = pipeline["receiver"]
    started = time.monotonic()
    status, _, job = call("POST", f"{pipeline['api_url']}/v1/jobs", {**SHORT, "webhook": {"url": f"{receiver.url}?hang=30"}})
    assert status == 200 and job["status"] == "succeeded"
    assert time.monotonic() - started < 4  # the inline budget; the receiver would hold a sender for 30 s
    assert job["webhook"]["delivery"].startswith("pending")


def test_deliveries_of_another_tenants_job_are_not_found(pipeline):
    receiver = pipeline["receiver"]
    _, _, job = call("POST", f"{pipeline['api_url']}/v1/jobs", {**SHORT, "webhook": {"url": receiver.url}})
    for method in ("GET", "POST"):
        status, _, body = call(method, f"{pipeline['api_url']}/v1/jobs/{job['id']}/deliveries", key="someone-else")
        assert status == 404 and body["error"]["type"] == "not_found"


@pytest.mark.parametrize(("fail", "reason"), [({"status": 529, "times": 2}, "529"), ({"status": 429, "times": 2}, "429")])
def test_overloaded_model_turns_an_inline_job_into_a_queued_one(pipeline, standin, fail, reason):
    standin(fail=fail)
    status, _, job = call("POST", f"{pipeline['api_url']}/v1/jobs", SHORT)
    assert status == 202, job
    assert job["status"] == "queued" and job["route"]["lane"] == "cpu"
    assert "inline fallback" in job["route"]["reason"] and reason in job["route"]["reason"]
    done = poll(pipeline, job["id"])  # the stand-in has recovered: the worker finishes it
    assert done["status"] == "succeeded" and done["result"]["content"][0]["type"] == "text"


def test_slow_model_turns_an_inline_job_into_a_queued_one_before_the_gateway_times_out(pipeline, standin):
    standin(hang_s=6)
    started = time.monotonic()
    status, _, job = call("POST", f"{pipeline['api_url']}/v1/jobs", SHORT)
    elapsed = time.monotonic() - started
    standin(hang_s=0)
    assert status == 202, job
    assert elapsed < 29  # never API Gateway's 504
    assert "did not answer in time" in job["route"]["reason"] or "budget spent" in job["route"]["reason"]
    assert poll(pipeline, job["id"])["status"] == "succeeded"


@pytest.mark.parametrize(("method", "path", "body", "status", "error_type"), [
    ("POST", "/v1/jobs", b"{not json", 400, "bad_request"),
    ("POST", "/v1/jobs", b'{"task": "nope", "input": {}}', 422, "unknown_task"),
    ("POST", "/v1/jobs", b'{"task": "claude.messages", "input": {"max_tokens": 5}}', 422, "invalid_input"),
    ("POST", "/v1/jobs",
     b'{"task": "claude.messages", "mode": "sync", "input": {"max_tokens": 9000, "messages": [{"role": "user", "content": "x"}]}}',
     422, "unroutable"),
    ("GET", "/v1/jobs/job_doesnotexist", None, 404, "not_found"),
])
def test_bad_requests_get_json_errors_with_the_right_status(pipeline, method, path, body, status, error_type):
    got, _, answer = call(method, f"{pipeline['api_url']}{path}", raw=body)
    assert got == status and answer["error"]["type"] == error_type
    assert answer["error"]["message"]


def test_invalid_input_names_the_field(pipeline):
    _, _, answer = call("POST", f"{pipeline['api_url']}/v1/jobs", {"task": "claude.messages", "input": {"max_tokens": 5}})
    assert answer["error"]["field"] == "input.messages"


def test_requests_without_an_api_key_are_refused(pipeline):
    status, _, _ = call("GET", f"{pipeline['api_url']}/v1/tasks", key=None)
    assert status == 403


def test_another_tenant_cannot_see_a_job(pipeline):
    _, _, job = call("POST", f"{pipeline['api_url']}/v1/jobs", LONG)
    status, _, _ = call("GET", f"{pipeline['api_url']}/v1/jobs/{job['id']}", key="someone-else")
    assert status == 404


def test_tasks_lists_the_catalogue_with_routes(pipeline):
    status, _, body = call("GET", f"{pipeline['api_url']}/v1/tasks")
    routes = {t["name"]: t["route"]["lane"] for t in body["tasks"]}
    assert status == 200 and len(routes) == len(body["tasks"])
    # The catalogue may grow; these three run on the cpu lane with a 4 s inline budget.
    assert {name: routes.get(name) for name in ("claude.messages", "invoice.extract", "documents.summarize")} == {
        "claude.messages": "cpu", "invoice.extract": "cpu", "documents.summarize": "cpu",
    }
