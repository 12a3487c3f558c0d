"""The router Lambda's handler, driven by API Gateway REST proxy events, over moto and the stand-in."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobadapters.sqs import decode
from local.gateway import LambdaContext, response_headers, to_event
from local.webhook_receiver import WebhookReceiver
from router import handler as router
from tests.adapters.support import LANES

SAMPLES = Path(__file__).resolve().parents[2] / "local" / "samples"
EVENTS = Path(__file__).resolve().parent / "events"
KEY = "tenant-a-key"
WEBHOOK_SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLXRoZS1yb3V0ZXItdGVzdHM="
SHORT = {
    "task": "claude.messages",
    "input": {"max_tokens": 60, "messages": [{"role": "user", "content": "Name one AWS region. Keep it short."}]},
}
LONG = {
    "task": "documents.summarize",
    "input": {"documents": [{"id": "a", "text": "First document. It is short."}, {"id": "b", "text": "Second one."}]},
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Api:
    aws: Any
    standin: Any
    clients: Any

    def send(self, event: dict[str, Any]) -> Reply:
        answer = router.handler(event, LambdaContext(30))
        return Reply(answer["statusCode"], response_headers(answer), json.loads(answer["body"]) if answer.get("body") else None)

    def call(self, method: str, path: str, body: Any = None, *, key: str = KEY, raw: str | None = None) -> Reply:
        text = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return self.send(to_event(method, path, {"x-api-key": key, "content-type": "application/json"}, text))

    def item(self, job_id: str) -> dict[str, Any] | None:
        return self.clients.table.get_item(Key={"job_id": job_id}).get("Item")

    def messages(self) -> list[dict[str, Any]]:
        url = self.aws.queue_urls["cpu"]
        return self.clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])


@pytest.fixture
def router_env(aws, standin, monkeypatch):
    env = {
        "STAGE": "test", "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket,
        "LANES": json.dumps(LANES.to_dict()), "PRICE_OVERRIDES": "{}",  # a 10 s inline budget, no GPU lane
        "LANE_QUEUE_URLS": json.dumps({"cpu": aws.queue_urls["cpu"]}),
        "ANTHROPIC_BASE_URL": standin.base_url, "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "WEBHOOK_SECRET": WEBHOOK_SECRET, "MODEL_ID": "claude-test",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def api(aws, standin, clients, router_env):
    router.service.cache_clear()
    yield Api(aws, standin, clients)
    router.service.cache_clear()


def test_inline_invoice_answers_200_with_the_result_stored_in_dynamodb_and_s3(api):
    text = (SAMPLES / "invoice_acme.txt").read_text()

    reply = api.call("POST", "/v1/jobs", {"task": "invoice.extract", "input": {"text": text}})

    assert reply.status == 200, reply.body
    job = reply.body
    assert job["status"] == "succeeded" and job["route"]["lane"] == "inline"
    assert job["result"]["invoice"]["vendor"] == "Acme Corporation"
    assert job["result"]["invoice"]["total"] == 849.2
    assert job["result"]["checks"]["total_matches"] is True
    assert job["usage"]["model_calls"] == 1 and job["usage"]["input_tokens"] > 0
    item = api.item(job["id"])
    assert item["status"] == "succeeded" and item["result_ref"] == f"results/{job['id']}.json"
    stored = json.loads(api.clients.s3.get_object(Bucket=api.aws.bucket, Key=item["result_ref"])["Body"].read())
    assert stored == job["result"]
    assert api.messages() == []
    again = api.call("GET", f"/v1/jobs/{job['id']}").body
    assert again["result"] == job["result"] and item["result_ref"] in again["result_url"]
    assert job["cost"]["actual"]["total"] > 0 and job["cost"]["estimate"]["currency"]
    assert again["cost"] == job["cost"]  # fractional prices survive DynamoDB's Decimals


def test_summarize_is_queued_202_with_location_and_one_message_on_the_cpu_queue(api):
    reply = api.call("POST", "/v1/jobs", LONG)

    assert reply.status == 202, reply.body
    job_id = reply.body["id"]
    assert reply.headers["Location"] == f"/v1/jobs/{job_id}"
    assert reply.body["status"] == "queued" and reply.body["route"]["lane"] == "cpu"
    assert "batch" in reply.body["route"]["reason"]
    [message] = api.messages()
    assert decode(message["Body"]) == job_id
    assert api.item(job_id)["status"] == "queued"
    assert api.standin.stats()["requests"] == 0


def test_get_a_job_answers_200_with_its_current_state(api):
    job_id = api.call("POST", "/v1/jobs", LONG).body["id"]

    reply = api.call("GET", f"/v1/jobs/{job_id}")

    assert reply.status == 200
    assert reply.body["id"] == job_id and reply.body["status"] == "queued"
    assert reply.body["links"]["self"] == f"/v1/jobs/{job_id}"


def test_get_an_unknown_job_answers_404_json_error(api):
    reply = api.call("GET", "/v1/jobs/job_doesnotexist")

    assert reply.status == 404
    assert reply.body["error"]["type"] == "not_found"
    assert "job_doesnotexist" in reply.body["error"]["message"]


def test_another_tenants_job_is_reported_missing_exactly_like_an_unknown_one(api):
    job_id = api.call("POST", "/v1/jobs", LONG, key="tenant-a-key").body["id"]

    reply = api.call("GET", f"/v1/jobs/{job_id}", key="tenant-b-key")

    assert reply.status == 404
    assert reply.body["error"]["type"] == "not_found"
    assert api.call("GET", f"/v1/jobs/{job_id}", key="tenant-a-key").status == 200


def test_malformed_json_is_400_and_nothing_is_stored(api):
    reply = api.call("POST", "/v1/jobs", raw='{"task": "claude.messages", ')

    assert reply.status == 400
    assert reply.body["error"]["type"] == "bad_request"
    assert api.clients.table.scan()["Count"] == 0


def test_unknown_task_is_422_naming_the_task_and_the_known_ones(api):
    reply = api.call("POST", "/v1/jobs", {"task": "video.render", "input": {}})

    assert reply.status == 422
    assert reply.body["error"]["type"] == "unknown_task"
    message = reply.body["error"]["message"]
    assert "task" in message and "video.render" in message and "documents.summarize" in message


def test_invalid_input_is_422_with_the_offending_field(api):
    body = {"task": "claude.messages", "input": {"max_tokens": 50, "messages": [{"role": "robot", "content": "hi"}]}}

    reply = api.call("POST", "/v1/jobs", body)

    assert reply.status == 422
    assert reply.body["error"]["type"] == "invalid_input"
    assert reply.body["error"]["field"] == "input.messages[0].role"
    assert api.standin.stats()["requests"] == 0


def test_sync_mode_for_a_long_job_is_422_unroutable(api):
    body = {
        "task": "claude.messages", "mode": "sync",
        "input": {"max_tokens": 8000, "messages": [{"role": "user", "content": "Write a long story."}]},
    }

    reply = api.call("POST", "/v1/jobs", body)

    assert reply.status == 422
    assert reply.body["error"]["type"] == "unroutable"
    assert "sync" in reply.body["error"]["message"]
    assert api.messages() == [] and api.standin.stats()["requests"] == 0


def test_inline_job_that_meets_529_twice_falls_back_to_the_queue_and_is_not_lost(api):
    """GIVEN Claude overloaded for both inline attempts
    WHEN a short job is submitted
    THEN the client gets 202, the job is queued on the cpu lane with the reason, and a message waits."""
    api.standin.configure(fail_status=529, fail_times=2)

    reply = api.call("POST", "/v1/jobs", SHORT)

    assert reply.status == 202, reply.body
    job_id = reply.body["id"]
    assert reply.headers["Location"] == f"/v1/jobs/{job_id}"
    assert reply.body["status"] == "queued"
    assert reply.body["route"]["lane"] == "cpu"
    assert "inline fallback" in reply.body["route"]["reason"]
    assert reply.body["error"]["type"] == "model_unavailable"
    assert api.standin.stats()["by_status"] == {"529": 2}
    [message] = api.messages()
    assert decode(message["Body"]) == job_id
    item = api.item(job_id)
    assert item["status"] == "queued" and item["lane"] == "cpu"
    assert api.call("GET", f"/v1/jobs/{job_id}").body["status"] == "queued"


def test_a_queue_that_refuses_the_job_answers_503_and_records_it_failed(api, monkeypatch):
    missing = api.aws.queue_urls["cpu"].replace("hybrid-local-cpu", "no-such-queue")
    monkeypatch.setenv("LANE_QUEUE_URLS", json.dumps({"cpu": missing}))
    router.service.cache_clear()

    reply = api.call("POST", "/v1/jobs", LONG)

    assert reply.status == 503
    assert reply.body["error"]["type"] == "unavailable"
    [item] = api.clients.table.scan()["Items"]
    assert item["status"] == "failed" and item["error"]["type"] == "unavailable"


def test_inline_job_with_a_webhook_delivers_it_signed_before_the_handler_returns(api):
    receiver = WebhookReceiver(WEBHOOK_SECRET).start()
    try:
        reply = api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": receiver.url}})

        assert reply.status == 200
        assert receiver.rejected == []
        [event] = receiver.events  # already there: the Lambda may freeze right after returning
        assert event["type"] == "job.succeeded" and event["data"]["id"] == reply.body["id"]
    finally:
        receiver.stop()


def test_tasks_lists_the_catalogue_with_profiles_and_where_each_would_run(api):
    reply = api.call("GET", "/v1/tasks")

    assert reply.status == 200
    tasks = {task["name"]: task for task in reply.body["tasks"]}
    assert len(tasks) == len(reply.body["tasks"])  # each task listed once
    assert set(tasks) >= {"claude.messages", "invoice.extract", "documents.summarize"}  # more may come
    assert {name: tasks[name]["route"]["lane"] for name in ("claude.messages", "invoice.extract", "documents.summarize")} == {
        "claude.messages": "inline", "invoice.extract": "inline", "documents.summarize": "cpu",
    }
    assert tasks["documents.summarize"]["profile"]["trigger"] == "batch"
    assert tasks["invoice.extract"]["profile"]["memory_mb"] == 256
    assert all(task["description"] and task["route"]["reason"] for task in tasks.values())
    routed = [task for task in tasks.values() if task["route"]["lane"]]  # a task for a disabled lane has no cost
    assert {task["name"] for task in routed} >= {"claude.messages", "invoice.extract", "documents.summarize"}
    assert all(task["typical_cost"]["total"] > 0 for task in routed)


def test_an_unknown_route_is_404_json(api):
    event = json.loads((EVENTS / "unknown_route.json").read_text())

    reply = api.send(event)

    assert reply.status == 404
    assert reply.body["error"]["type"] == "not_found"
    assert "/v1/nope" in reply.body["error"]["message"]


def test_a_body_with_nan_is_400_not_a_500(api):
    raw = ('{"task": "claude.messages", "input": {"max_tokens": 10, "metadata": {"user_id": NaN}, '
           '"messages": [{"role": "user", "content": "hi"}]}}')

    reply = api.call("POST", "/v1/jobs", raw=raw)

    assert reply.status == 400
    assert reply.body["error"]["type"] == "bad_request"


def test_a_request_without_an_api_key_identity_is_401_not_a_shared_tenant(api):
    """GIVEN a route reached without API Gateway identifying a key (a misconfigured method)
    THEN the router refuses it instead of filing the job under an "anonymous" tenant."""
    event = to_event("GET", "/v1/jobs/job_x", {"content-type": "application/json"}, None)
    event["requestContext"]["identity"].update(apiKey=None, apiKeyId=None)

    reply = api.send(event)

    assert reply.status == 401 and reply.body["error"]["type"] == "unauthenticated"


# (variables to set, variables to remove, the variable the logged reason names)
BAD_ENVIRONMENTS = {
    "LANES missing": ({}, ["LANES"], "LANES"),
    "an unknown price override": ({"PRICE_OVERRIDES": json.dumps({"lamda": {}})}, [], "PRICE_OVERRIDES"),
    "a queue for a lane that does not exist": (
        {"LANE_QUEUE_URLS": json.dumps({"cpu": "https://q/cpu", "tpu": "https://q/tpu"})}, [], "LANE_QUEUE_URLS"),
}


@pytest.mark.parametrize(("changes", "removed", "named"), BAD_ENVIRONMENTS.values(), ids=BAD_ENVIRONMENTS.keys())
def test_a_router_whose_settings_are_refused_fails_shut_with_503_on_every_route(
    aws, standin, clients, router_env, monkeypatch, caplog, changes, removed, named,
):
    """GIVEN an environment RouterSettings.from_env refuses
    WHEN any route is called
    THEN it answers 503 misconfigured, the reason is logged once, and no table, queue or model is touched."""
    for key in removed:
        monkeypatch.delenv(key)
    for key, value in changes.items():
        monkeypatch.setenv(key, value)
    made: list[str] = []
    monkeypatch.setattr(router.AwsClients, "create", classmethod(lambda cls, table: made.append(table)))
    router.service.cache_clear()
    api = Api(aws, standin, clients)
    try:
        with caplog.at_level(logging.INFO, logger=router.logger.name):
            replies = [api.call("POST", "/v1/jobs", LONG), api.call("GET", "/v1/jobs/job_x"), api.call("GET", "/v1/tasks")]
    finally:
        router.service.cache_clear()

    assert [reply.status for reply in replies] == [503, 503, 503], [reply.body for reply in replies]
    assert all(reply.body["error"]["type"] == "misconfigured" and reply.body["error"]["message"] for reply in replies)
    logged = [record for record in caplog.records if record.name == router.logger.name and "misconfigured" in record.getMessage()]
    assert len(logged) == 1, [record.getMessage() for record in logged]
    assert logged[0].levelno == logging.ERROR and named in logged[0].reason  # the variable and why, for the operator
    assert named not in replies[0].body["error"]["message"]  # the client is told to ask the operator, not how it is set up
    assert made == []  # no clients made, so no table touched
    assert clients.table.scan()["Count"] == 0 and api.messages() == [] and standin.stats()["requests"] == 0
