"""The router Lambda's handler, driven by API Gateway REST proxy events, over moto and the stand-in."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from jobadapters.dynamo import DynamoJobStore
from jobadapters.settings import DispatcherSettings
from jobadapters.sqs import SqsJobQueue, decode, decode_hand_over
from jobadapters.wiring import build_dispatcher, build_runner, clock_ms
from jobcore.dispatch import Dispatcher
from jobcore.limits import API_GATEWAY_TIMEOUT_S
from jobcore.model import JobStatus, transition
from jobcore.schema_keys import upload_key
from jobcore.service import JobService
from jobcore.sweeper import Sweeper
from jobcore.views import iso
from local.gateway import LambdaContext, api_key_id, response_headers, to_event
from local.webhook_receiver import WebhookReceiver
from router import handler as router
from tests.adapters.support import LANES, RecordingServer
from tests.bodies import LONG, SHORT

SAMPLES = Path(__file__).resolve().parents[2] / "local" / "samples"
EVENTS = Path(__file__).resolve().parent / "events"
KEY = "tenant-a-key"
WEBHOOK_SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLXRoZS1yb3V0ZXItdGVzdHM="


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
    lambda_timeout_s: float = 30  # the router function's timeout: each request's context has it left

    def send(self, event: dict[str, Any]) -> Reply:
        answer = router.handler(event, LambdaContext(self.lambda_timeout_s))
        return Reply(answer["statusCode"], response_headers(answer), json.loads(answer["body"]) if answer.get("body") else None)

    def call(self, method: str, path: str, body: Any = None, *, key: str = KEY, raw: str | None = None) -> Reply:
        text = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return self.send(to_event(method, path, {"x-api-key": key, "content-type": "application/json"}, text))

    def item(self, job_id: str) -> dict[str, Any] | None:
        return self.clients.table.get_item(Key={"job_id": job_id}).get("Item")

    def messages(self) -> list[dict[str, Any]]:
        url = self.aws.queue_urls["cpu"]
        return self.clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])

    def hand_overs(self) -> list[tuple[str, int | None]]:
        """(job id, due at) of every hand-over now on the webhook queue, each taken off it."""
        url, taken = self.aws.webhook_queue_url, []
        while messages := self.clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
            for message in messages:
                taken.append(decode_hand_over(message["Body"]))
                self.clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return taken


@pytest.fixture
def router_env(aws, standin, monkeypatch):
    env = {
        "STAGE": "test", "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket,
        "LANES": json.dumps(LANES.to_dict()), "PRICE_OVERRIDES": "{}",  # a 10 s inline budget, no GPU lane
        "LANE_QUEUE_URLS": json.dumps({"cpu": aws.queue_urls["cpu"]}),
        "WEBHOOK_QUEUE_URL": aws.webhook_queue_url,
        "ANTHROPIC_BASE_URL": standin.base_url, "WEBHOOK_ALLOW_LOOPBACK": "true", "MODEL_ID": "claude-test",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def api(aws, standin, clients, router_env):
    router.service.cache_clear()
    yield Api(aws, standin, clients)
    router.service.cache_clear()


def results_in_s3(monkeypatch: Any) -> None:
    """Every result is stored in S3, as one too big for the job item is (jobcore.limits.RESULT_IN_ITEM_BYTES)."""
    monkeypatch.setattr("jobcore.runner.RESULT_IN_ITEM_BYTES", 0)


def test_inline_invoice_answers_200_with_the_result_kept_in_its_dynamodb_item(api):
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
    assert item["status"] == "succeeded" and "result_ref" not in item and json.loads(item["result_json"]) == job["result"]
    assert "Contents" not in api.clients.s3.list_objects_v2(Bucket=api.aws.bucket, Prefix="results/")  # no S3 object
    assert api.messages() == []
    again = api.call("GET", f"/v1/jobs/{job['id']}").body
    assert again["result"] == job["result"] and "result_url" not in again
    assert job["cost"]["actual"]["total"] > 0 and job["cost"]["estimate"]["currency"]
    assert again["cost"] == job["cost"]  # fractional prices survive DynamoDB's Decimals


def test_summarize_is_queued_202_with_location_and_one_message_on_the_cpu_queue(api):
    reply = api.call("POST", "/v1/jobs", LONG)

    assert reply.status == 202, reply.body
    job_id = reply.body["id"]
    assert reply.headers["Location"] == f"/v1/jobs/{job_id}"
    assert reply.body["status"] == "queued" and reply.body["route"]["lane"] == "cpu"
    assert "background task" in reply.body["route"]["reason"]
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
    assert reply.body["error"] == {"type": "model_unavailable", "message": "the model was overloaded (529)"}
    assert reply.body["waiting"].startswith("model overloaded (529); next attempt at ")
    assert api.standin.stats()["by_status"] == {"529": 2}
    # Queued to wait out the back-off (8 to 15 s, the workers' rule), as a delayed message.
    assert api.messages() == [] and delayed(api) == 1
    item = api.item(job_id)
    assert item["status"] == "queued" and item["lane"] == "cpu"
    assert 8_000 <= item["model_wait"]["next_attempt_at"] - item["updated_at"] <= 15_000
    assert api.call("GET", f"/v1/jobs/{job_id}").body["status"] == "queued"


def delayed(api: Api) -> int:
    attributes = api.clients.sqs.get_queue_attributes(
        QueueUrl=api.aws.queue_urls["cpu"], AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesDelayed"])


def test_a_queue_that_refuses_the_job_answers_202_with_it_and_the_sweeper_sends_it(api, monkeypatch):
    """GIVEN the lane queue unreachable at submit
    THEN the job is accepted (202 with it; listed queued, never failed, no webhook) and marked in the watch
    index, where the sweeper finds it and sends its message."""
    missing = api.aws.queue_urls["cpu"].replace("hybrid-local-cpu", "no-such-queue")
    monkeypatch.setenv("LANE_QUEUE_URLS", json.dumps({"cpu": missing}))
    router.service.cache_clear()

    reply = api.call("POST", "/v1/jobs", LONG)

    assert reply.status == 202, reply.body
    job_id = reply.body["id"]
    assert reply.body["status"] == "queued" and "no-such-queue" not in reply.body["waiting"]
    assert reply.body["waiting"].startswith("its queue refused it at ")
    [listed] = api.call("GET", "/v1/jobs").body["jobs"]
    assert (listed["id"], listed["status"]) == (job_id, "queued")
    item = api.item(job_id)
    assert item["unsent_since"] == item["watch_at"] and "delivery" not in item
    assert api.messages() == []

    runner = build_runner(api.clients, api.aws.bucket, api.aws.webhook_queue_url, LANES, cost_model=None, role="sweeper")
    its_next_run = dataclasses.replace(runner, context=dataclasses.replace(runner.context, clock_ms=lambda: clock_ms() + 60_000))
    report = Sweeper(runner=its_next_run, queue=SqsJobQueue(api.clients.sqs, api.aws.queue_urls), max_attempts=3).sweep()

    assert report.sent == [job_id] and "unsent_since" not in api.item(job_id)
    assert [decode(message["Body"]) for message in api.messages()] == [job_id]


# --- webhooks: handed to the dispatcher, never sent from the router ----------------------------

@pytest.fixture
def hooks():
    """A receiver that records every request (the router must never send it one)."""
    server = RecordingServer(status=204).start()
    yield server
    server.stop()


@pytest.fixture
def receiver():
    made = WebhookReceiver(WEBHOOK_SECRET).start()
    yield made
    made.stop()


def dispatcher_for(api: Api) -> Dispatcher:
    """The webhook dispatcher on the same table, bucket and queue, as its Lambda builds it."""
    settings = DispatcherSettings.from_env({
        "JOBS_TABLE": api.aws.table, "RESULTS_BUCKET": api.aws.bucket, "WEBHOOK_QUEUE_URL": api.aws.webhook_queue_url,
        "WEBHOOK_SECRET": WEBHOOK_SECRET, "WEBHOOK_ALLOW_LOOPBACK": "true",
    })
    return build_dispatcher(settings, api.clients)


def test_an_inline_job_with_a_webhook_hands_it_to_the_dispatcher_without_contacting_the_receiver(api, hooks):
    """GIVEN an inline job with a webhook
    WHEN it finishes in the router
    THEN the 200 answer shows the delivery pending, the job item carries it (the outbox), one hand-over
    waits on the webhook queue, and the receiver has not been contacted."""
    url = f"{hooks.url}/hooks"

    reply = api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": url}})

    assert reply.status == 200, reply.body
    job_id = reply.body["id"]
    assert reply.body["webhook"] == {"url": url, "events": ["completed"], "delivery": "pending, 0 attempts so far"}
    item = api.item(job_id)
    assert item["delivery"]["state"] == "pending"
    assert item["delivery"]["event_id"] == f"evt_{job_id}_succeeded" and item["delivery"]["url"] == url
    assert api.hand_overs() == [(job_id, int(item["finished_at"]))]
    assert hooks.requests == []
    assert api.messages() == []  # nothing on the lane's queue


def test_a_queued_job_with_a_webhook_says_it_is_sent_when_the_job_finishes(api, hooks):
    reply = api.call("POST", "/v1/jobs", {**LONG, "webhook": {"url": hooks.url, "events": ["failed"]}})

    assert reply.status == 202
    assert reply.body["webhook"] == {"url": hooks.url, "events": ["failed"], "delivery": "sent when the job finishes"}
    assert api.hand_overs() == [] and hooks.requests == []
    deliveries = api.call("GET", f"/v1/jobs/{reply.body['id']}/deliveries")
    assert deliveries.status == 200 and deliveries.body["deliveries"] == []


def test_a_finished_job_whose_webhook_did_not_ask_for_its_event_opens_no_delivery(api, hooks):
    reply = api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": hooks.url, "events": ["failed"]}})

    assert reply.status == 200 and reply.body["status"] == "succeeded"
    assert reply.body["webhook"]["delivery"] == "not asked for this event"
    assert "delivery" not in api.item(reply.body["id"])
    assert api.hand_overs() == [] and hooks.requests == []


def test_get_deliveries_lists_the_pending_event_and_when_it_is_due(api, hooks):
    job_id = api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": hooks.url}}).body["id"]
    finished_at = int(api.item(job_id)["finished_at"])

    reply = api.call("GET", f"/v1/jobs/{job_id}/deliveries")

    assert reply.status == 200
    assert reply.body == {
        "job_id": job_id,
        "deliveries": [{
            "event_id": f"evt_{job_id}_succeeded", "type": "job.succeeded", "url": hooks.url, "state": "pending",
            "series": 1, "summary": "pending, 0 attempts so far", "attempts": [], "next_attempt_at": iso(finished_at),
        }],
        "links": {"job": f"/v1/jobs/{job_id}"},
    }
    assert hooks.requests == []


def test_deliveries_of_another_tenants_job_are_404_like_an_unknown_job(api, hooks):
    job_id = api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": hooks.url}}, key="tenant-a-key").body["id"]
    api.hand_overs()

    replies = [
        api.call("GET", f"/v1/jobs/{job_id}/deliveries", key="tenant-b-key"),
        api.call("POST", f"/v1/jobs/{job_id}/deliveries", key="tenant-b-key"),
        api.call("GET", "/v1/jobs/job_doesnotexist/deliveries"),
        api.call("POST", "/v1/jobs/job_doesnotexist/deliveries"),
    ]

    assert [reply.status for reply in replies] == [404, 404, 404, 404]
    assert all(reply.body["error"]["type"] == "not_found" for reply in replies)
    assert api.hand_overs() == [] and hooks.requests == []
    assert api.item(job_id)["delivery"]["series"] == 1


def test_redelivery_while_the_delivery_is_pending_is_409_conflict(api, hooks):
    job_id = api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": hooks.url}}).body["id"]
    before = api.item(job_id)
    api.hand_overs()

    reply = api.call("POST", f"/v1/jobs/{job_id}/deliveries")

    assert reply.status == 409
    assert reply.body["error"]["type"] == "conflict"
    assert "under way" in reply.body["error"]["message"]
    assert api.item(job_id) == before
    assert api.hand_overs() == [] and hooks.requests == []


@pytest.mark.parametrize(("body", "why"), [
    (SHORT, "no webhook"),
    ({**LONG, "webhook": {"url": "http://127.0.0.1:9/hooks"}}, "it is queued"),
    ({**SHORT, "webhook": {"url": "http://127.0.0.1:9/hooks", "events": ["failed"]}}, "did not ask for job.succeeded"),
], ids=["no webhook", "not finished", "event not asked for"])
def test_redelivery_of_a_job_without_a_delivery_is_409_no_delivery(api, body, why):
    job_id = api.call("POST", "/v1/jobs", body).body["id"]

    reply = api.call("POST", f"/v1/jobs/{job_id}/deliveries")

    assert reply.status == 409
    assert reply.body["error"]["type"] == "no_delivery"
    assert why in reply.body["error"]["message"]
    assert api.hand_overs() == []


def test_a_delivered_event_is_logged_and_a_redelivery_is_a_new_series_of_the_same_event(api, receiver):
    """GIVEN an inline job whose webhook the dispatcher delivered
    THEN its deliveries and its view say so; a POST to its deliveries answers 202 with a new series of
    the same event, handed to the dispatcher (the router sends nothing); the dispatcher delivers it with
    the same event id and body."""
    job_id = api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": receiver.url}}).body["id"]
    dispatcher = dispatcher_for(api)
    [(handed, due_at)] = api.hand_overs()
    dispatcher.deliver(handed, due_at=due_at)
    assert receiver.rejected == [] and len(receiver.events) == 1

    log = api.call("GET", f"/v1/jobs/{job_id}/deliveries").body["deliveries"]
    view = api.call("GET", f"/v1/jobs/{job_id}").body

    [delivery] = log
    assert delivery["state"] == "delivered" and delivery["reason"] == "HTTP 204" and "next_attempt_at" not in delivery
    [attempt] = delivery["attempts"]
    assert attempt["attempt"] == 1 and attempt["series"] == 1 and attempt["status"] == 204 and "error" not in attempt
    assert view["webhook"]["delivery"] == "delivered on attempt 1 (HTTP 204)"

    reply = api.call("POST", f"/v1/jobs/{job_id}/deliveries")

    assert reply.status == 202, reply.body
    [renewed] = reply.body["deliveries"]
    assert renewed["state"] == "pending" and renewed["series"] == 2 and len(renewed["attempts"]) == 1
    assert renewed["event_id"] == delivery["event_id"]
    [(again, again_due)] = api.hand_overs()
    assert again == job_id and again_due > due_at
    assert len(receiver.events) == 1  # the router sent nothing
    assert api.call("POST", f"/v1/jobs/{job_id}/deliveries").status == 409  # pending again

    dispatcher.deliver(again, due_at=again_due)

    first, second = receiver.events
    assert first == second and first["id"] == f"evt_{job_id}_succeeded"
    final = api.call("GET", f"/v1/jobs/{job_id}/deliveries").body["deliveries"][0]
    assert final["state"] == "delivered" and [a["series"] for a in final["attempts"]] == [1, 2]
    assert api.call("GET", f"/v1/jobs/{job_id}").body["webhook"]["delivery"] == "delivered on attempt 2 (HTTP 204)"


def test_a_failed_delivery_shows_why_in_the_job_view_and_can_be_redelivered(api, hooks):
    hooks.status = 410
    job_id = api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": hooks.url}}).body["id"]
    [(handed, due_at)] = api.hand_overs()
    dispatcher_for(api).deliver(handed, due_at=due_at)

    view = api.call("GET", f"/v1/jobs/{job_id}").body

    assert view["webhook"]["delivery"] == "failed after 1 attempt: the receiver answered 410 Gone"
    [delivery] = api.call("GET", f"/v1/jobs/{job_id}/deliveries").body["deliveries"]
    assert delivery["state"] == "failed" and delivery["attempts"][0]["status"] == 410
    assert delivery["attempts"][0]["error"] == "http"
    reply = api.call("POST", f"/v1/jobs/{job_id}/deliveries")
    assert reply.status == 202 and reply.body["deliveries"][0]["state"] == "pending"
    assert len(hooks.requests) == 1  # the dispatcher's attempt only
    assert [job for job, _ in api.hand_overs()] == [job_id]


def test_tasks_lists_the_catalogue_with_profiles_and_where_each_would_run(api):
    reply = api.call("GET", "/v1/tasks")

    assert reply.status == 200
    tasks = {task["name"]: task for task in reply.body["tasks"]}
    assert len(tasks) == len(reply.body["tasks"])  # each task listed once
    assert set(tasks) >= {"claude.messages", "invoice.extract", "documents.summarize"}  # more may come
    assert {name: tasks[name]["route"]["lane"] for name in ("claude.messages", "invoice.extract", "documents.summarize")} == {
        "claude.messages": "inline", "invoice.extract": "inline", "documents.summarize": "cpu",
    }
    assert tasks["documents.summarize"]["profile"]["trigger"] == "background"
    assert tasks["invoice.extract"]["profile"]["memory_mb"] == 256
    assert all(task["description"] and task["route"]["reason"] for task in tasks.values())
    routed = [task for task in tasks.values() if task["route"]["lane"]]  # a task for a disabled lane has no cost
    assert {task["name"] for task in routed} >= {"claude.messages", "invoice.extract", "documents.summarize"}
    assert all(task["typical_cost"]["total"] > 0 for task in routed)
    invoice = tasks["invoice.extract"]  # the batch price beside the routed one: the same tokens at half price
    assert invoice["batch_cost"]["breakdown"]["claude"] * 2 == pytest.approx(invoice["typical_cost"]["breakdown"]["claude"])


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
    "no webhook queue": ({}, ["WEBHOOK_QUEUE_URL"], "WEBHOOK_QUEUE_URL"),
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
            replies = [api.call("POST", "/v1/jobs", LONG), api.call("GET", "/v1/jobs/job_x"), api.call("GET", "/v1/tasks"),
                       api.call("GET", "/v1/jobs/job_x/deliveries"), api.call("POST", "/v1/jobs/job_x/deliveries")]
    finally:
        router.service.cache_clear()

    assert [reply.status for reply in replies] == [503] * 5, [reply.body for reply in replies]
    assert all(reply.body["error"]["type"] == "misconfigured" and reply.body["error"]["message"] for reply in replies)
    logged = [record for record in caplog.records if record.name == router.logger.name and "misconfigured" in record.getMessage()]
    assert len(logged) == 1, [record.getMessage() for record in logged]
    assert logged[0].levelno == logging.ERROR and named in logged[0].reason  # the variable and why, for the operator
    assert named not in replies[0].body["error"]["message"]  # the client is told to ask the operator, not how it is set up
    assert made == []  # no clients made, so no table touched
    assert clients.table.scan()["Count"] == 0 and api.messages() == [] and standin.stats()["requests"] == 0
    assert api.hand_overs() == []


# --- job control: list, cancel, long poll, idempotent submits --------------------------------------

ASYNC = {**SHORT, "mode": "async"}


def store(api):
    return DynamoJobStore(api.clients.table)


def test_list_pages_a_tenants_jobs_newest_first_with_a_status_filter(api):
    ids = [api.call("POST", "/v1/jobs", ASYNC).body["id"] for _ in range(3)]
    api.call("POST", "/v1/jobs", ASYNC, key="tenant-b-key")
    first = api.call("GET", "/v1/jobs?limit=2")
    assert first.status == 200 and [j["id"] for j in first.body["jobs"]] == ids[::-1][:2] and first.body["next_cursor"]
    rest = api.call("GET", f"/v1/jobs?limit=2&cursor={first.body['next_cursor']}")
    assert [j["id"] for j in rest.body["jobs"]] == ids[:1] and rest.body["next_cursor"] is None
    assert api.call("GET", "/v1/jobs?status=succeeded").body["jobs"] == []
    assert len(api.call("GET", "/v1/jobs?status=queued").body["jobs"]) == 3


@pytest.mark.parametrize(("query", "field"), [
    ("status=done", "query.status"), ("limit=500", "query.limit"), ("limit=-1", "query.limit"),
    ("cursor=not-a-cursor", "cursor"), ("order=asc", "query.order"),
])
def test_list_with_a_bad_parameter_is_422_naming_it(api, query, field):
    reply = api.call("GET", f"/v1/jobs?{query}")
    assert reply.status == 422 and reply.body["error"]["field"] == field


def test_a_cursor_cannot_reach_another_tenants_jobs(api):
    mine = api.call("POST", "/v1/jobs", ASYNC, key="tenant-b-key").body
    forged = base64.urlsafe_b64encode(f'[{10**13},"{mine["id"]}"]'.encode()).decode().rstrip("=")
    reply = api.call("GET", f"/v1/jobs?cursor={forged}")
    assert reply.status == 200 and reply.body["jobs"] == []


def test_cancel_of_a_queued_job_is_200_canceled_and_a_second_cancel_is_409_with_its_state(api):
    job = api.call("POST", "/v1/jobs", ASYNC).body
    reply = api.call("POST", f"/v1/jobs/{job['id']}/cancel")
    assert reply.status == 200 and reply.body["status"] == "canceled"
    again = api.call("POST", f"/v1/jobs/{job['id']}/cancel")
    assert again.status == 409 and again.body["error"] == {
        "type": "job_finished", "message": f"job {job['id']} already finished: it is canceled", "status": "canceled"}


def test_cancel_of_a_running_job_is_202_canceling(api):
    job = api.call("POST", "/v1/jobs", LONG).body
    jobs = store(api)
    queued = jobs.get(job["id"])
    jobs.save(transition(queued, JobStatus.RUNNING, now_ms=queued.created_at, lease_owner="w", lease_expires_at=10**13),
              expected_version=queued.version)
    reply = api.call("POST", f"/v1/jobs/{job['id']}/cancel")
    assert reply.status == 202 and reply.body["status"] == "canceling"


def test_cancel_and_long_poll_of_another_tenants_job_are_404(api):
    job = api.call("POST", "/v1/jobs", ASYNC).body
    for method, path in (("POST", f"/v1/jobs/{job['id']}/cancel"), ("GET", f"/v1/jobs/{job['id']}?wait=1")):
        reply = api.call(method, path, key="tenant-b-key")
        assert reply.status == 404 and reply.body["error"]["type"] == "not_found"


@pytest.mark.parametrize("job_id", ["x" * 200, "job%20id", "..%2F..%2Fetc"])
def test_an_id_that_cannot_be_a_job_is_404_not_a_500(api, job_id):
    for method, path in (("GET", f"/v1/jobs/{job_id}"), ("POST", f"/v1/jobs/{job_id}/cancel"),
                         ("GET", f"/v1/jobs/{job_id}/deliveries")):
        reply = api.call(method, path)
        assert reply.status == 404 and len(reply.body["error"]["message"]) < 100


def test_long_poll_answers_when_the_job_finishes(api):
    job = api.call("POST", "/v1/jobs", ASYNC).body
    jobs = store(api)

    def finish_soon():
        queued = jobs.get(job["id"])
        jobs.save(transition(queued, JobStatus.CANCELED, now_ms=queued.created_at), expected_version=queued.version)

    timer = threading.Timer(0.5, finish_soon)
    timer.start()
    reply = api.call("GET", f"/v1/jobs/{job['id']}?wait=10")
    timer.join()
    assert reply.status == 200 and reply.body["status"] == "canceled"


@pytest.mark.parametrize("wait", ["21", "-1", "later"])
def test_a_bad_wait_is_422(api, wait):
    reply = api.call("GET", f"/v1/jobs/job_1?wait={wait}")
    assert reply.status == 422 and reply.body["error"]["field"] == "query.wait"


def test_an_idempotent_submit_returns_the_original_job_with_its_status_code_and_one_model_call(api):
    def submit(body, key="order-1"):
        event_headers = {"x-api-key": "tenant-a-key", "content-type": "application/json", "idempotency-key": key}
        import json

        from local.gateway import to_event

        return api.send(to_event("POST", "/v1/jobs", event_headers, json.dumps(body)))

    first = submit(SHORT)
    calls = api.standin.stats()["requests"]
    again = submit(SHORT)
    assert first.status == again.status == 200 and again.body["id"] == first.body["id"]
    assert api.standin.stats()["requests"] == calls
    mismatch = submit({**SHORT, "metadata": {"x": "y"}})
    assert mismatch.status == 422 and mismatch.body["error"]["type"] == "idempotency_mismatch"
    assert mismatch.body["error"]["field"] == "Idempotency-Key"
    queued = submit(ASYNC, key="order-2")
    assert queued.status == 202 and submit(ASYNC, key="order-2").status == 202
    bad = submit(SHORT, key="has spaces")
    assert bad.status == 422 and bad.body["error"]["field"] == "Idempotency-Key"


def test_max_queue_s_is_recorded_as_the_jobs_queue_deadline(api):
    job = api.call("POST", "/v1/jobs", {**ASYNC, "max_queue_s": 60}).body
    assert "queue_deadline_at" in job and job["status"] == "queued"
    assert api.call("POST", "/v1/jobs", {**ASYNC, "max_queue_s": 0}).body["error"]["field"] == "max_queue_s"


# --- our own dependencies failing: 503 unavailable, never a 500, never AWS's words -------------------

RAW_AWS_TEXT = "Rate of requests exceeds the allowed throughput: table arn:aws:dynamodb:us-east-1:123456789012:table/jobs"


def aws_error(code: str, operation: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": RAW_AWS_TEXT},
                        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "REQ-9F8E"}}, operation)


def throttle_writes_after_the_first(api: Api, monkeypatch: Any) -> Callable[[], None]:
    """DynamoDB takes the job's first write (created) and throttles every later one (a put, or the terminal write's
    transaction); the function that brings DynamoDB back."""
    table = built(api).runner.store._table
    client = table.meta.client
    real_put, real_transact, writes = table.put_item, client.transact_write_items, []

    def first_write_only(**kwargs: Any) -> Any:
        writes.append(kwargs)
        if len(writes) > 1:
            raise aws_error("ProvisionedThroughputExceededException", "PutItem")
        return real_put(**kwargs)

    def throttled(**kwargs: Any) -> Any:
        raise aws_error("ProvisionedThroughputExceededException", "TransactWriteItems")

    monkeypatch.setattr(table, "put_item", first_write_only)
    monkeypatch.setattr(client, "transact_write_items", throttled)

    def back() -> None:
        monkeypatch.setattr(table, "put_item", real_put)
        monkeypatch.setattr(client, "transact_write_items", real_transact)

    return back


def built(api: Api) -> Any:
    """The router's job service (built on first use), to make its clients fail."""
    return router.service()


def assert_unavailable(reply: Reply) -> None:
    assert reply.status == 503, reply.body
    assert reply.headers["Retry-After"] == "5"
    assert reply.body["error"]["type"] == "unavailable" and reply.body["error"]["message"]
    text = json.dumps(reply.body)
    assert "arn:aws" not in text and "ProvisionedThroughput" not in text and "REQ-9F8E" not in text


def test_a_throttled_or_unreachable_job_store_answers_503_unavailable_with_retry_after_on_every_route(api, monkeypatch):
    queued = api.call("POST", "/v1/jobs", LONG).body["id"]
    table = built(api).runner.store._table
    for failure in (aws_error("ProvisionedThroughputExceededException", "GetItem"),
                    EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.invalid")):
        def fail(*args: Any, failure: Exception = failure, **kwargs: Any) -> Any:
            raise failure

        for method in ("get_item", "put_item", "query", "update_item"):
            monkeypatch.setattr(table, method, fail)
        replies = [
            api.call("POST", "/v1/jobs", LONG), api.call("POST", "/v1/jobs", SHORT), api.call("GET", "/v1/jobs"),
            api.call("GET", f"/v1/jobs/{queued}"), api.call("GET", f"/v1/jobs/{queued}?wait=1"),
            api.call("POST", f"/v1/jobs/{queued}/cancel"), api.call("GET", f"/v1/jobs/{queued}/deliveries"),
            api.call("POST", f"/v1/jobs/{queued}/deliveries"),
        ]
        for reply in replies:
            assert_unavailable(reply)
            assert "job_id" not in reply.body["error"]  # nothing was recorded
    assert api.standin.stats()["requests"] == 0


def test_a_result_kept_in_the_job_item_is_read_without_s3(api, monkeypatch):
    job_id = api.call("POST", "/v1/jobs", SHORT).body["id"]

    def slow_down(**kwargs: Any) -> Any:
        raise aws_error("SlowDown", "GetObject", 503)

    monkeypatch.setattr(built(api).runner.blobs._client, "get_object", slow_down)
    reply = api.call("GET", f"/v1/jobs/{job_id}")
    assert reply.status == 200 and reply.body["result"]["content"], reply.body


def test_a_throttled_result_store_answers_503_on_get(api, monkeypatch):
    results_in_s3(monkeypatch)
    job_id = api.call("POST", "/v1/jobs", SHORT).body["id"]

    def slow_down(**kwargs: Any) -> Any:
        raise aws_error("SlowDown", "GetObject", 503)

    monkeypatch.setattr(built(api).runner.blobs._client, "get_object", slow_down)
    assert_unavailable(api.call("GET", f"/v1/jobs/{job_id}"))


def test_an_inline_run_whose_result_store_fails_is_queued_for_a_worker_with_202(api, monkeypatch):
    """GIVEN S3 refusing the result's PUT (SlowDown) after the model answered
    WHEN a short job is submitted
    THEN it is queued on the cpu lane for a worker (202), never left running, never a 500."""
    def slow_down(**kwargs: Any) -> Any:
        raise aws_error("SlowDown", "PutObject", 503)

    results_in_s3(monkeypatch)
    monkeypatch.setattr(built(api).runner.blobs._client, "put_object", slow_down)

    reply = api.call("POST", "/v1/jobs", SHORT)

    assert reply.status == 202, reply.body
    job_id = reply.body["id"]
    assert reply.headers["Location"] == f"/v1/jobs/{job_id}" and reply.body["status"] == "queued"
    assert reply.body["route"]["reason"].startswith("cpu: inline fallback, the result store is unavailable")
    assert reply.body["error"]["type"] == "unavailable" and "SlowDown" not in json.dumps(reply.body)
    [message] = api.messages()
    assert decode(message["Body"]) == job_id
    item = api.item(job_id)
    assert item["status"] == "queued" and "lease_owner" not in item


def test_an_inline_run_whose_job_store_fails_after_recording_it_answers_503_with_its_id_and_the_sweeper_recovers_it(
    api, monkeypatch,
):
    """GIVEN DynamoDB taking the job's first write, then refusing every write (throttled)
    WHEN a short job is submitted
    THEN the client gets 503 unavailable naming the job (job_id, links, Location); the job stays running
    under its inline lease; once that lease has run out, the sweeper queues it for a worker."""
    dynamodb_back = throttle_writes_after_the_first(api, monkeypatch)

    reply = api.call("POST", "/v1/jobs", SHORT)

    assert_unavailable(reply)
    job_id = reply.body["error"]["job_id"]
    assert reply.body["error"]["links"] == {"job": f"/v1/jobs/{job_id}"} and reply.headers["Location"] == f"/v1/jobs/{job_id}"
    assert "poll it" in reply.body["error"]["message"]
    item = api.item(job_id)
    assert item["status"] == "running" and item["lane"] == "inline" and int(item["lease_expires_at"]) > clock_ms()
    dynamodb_back()

    runner = build_runner(api.clients, api.aws.bucket, api.aws.webhook_queue_url, LANES, cost_model=None, role="sweeper")
    later = dataclasses.replace(runner, context=dataclasses.replace(
        runner.context, clock_ms=lambda: clock_ms() + (API_GATEWAY_TIMEOUT_S + 10) * 1000))
    queue = SqsJobQueue(api.clients.sqs, {"cpu": api.aws.queue_urls["cpu"]})
    report = Sweeper(runner=later, queue=queue, max_attempts=5).sweep()

    assert report.requeued == [job_id]
    assert api.item(job_id)["status"] == "queued" and api.item(job_id)["lane"] == "cpu"
    [message] = api.messages()
    assert decode(message["Body"]) == job_id


def test_the_503_naming_a_recorded_job_links_it_under_the_deployed_stage(api, monkeypatch):
    throttle_writes_after_the_first(api, monkeypatch)
    event = to_event("POST", "/v1/jobs", {"x-api-key": KEY, "content-type": "application/json"}, json.dumps(SHORT), stage="dev")
    event["requestContext"]["path"] = "/dev/v1/jobs"

    reply = api.send(event)

    job_id = reply.body["error"]["job_id"]
    assert reply.status == 503 and reply.headers["Location"] == reply.body["error"]["links"]["job"] == f"/dev/v1/jobs/{job_id}"


def test_an_unexpected_aws_error_no_adapter_translated_is_still_a_503(api, monkeypatch):
    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise aws_error("ThrottlingException", "Query")

    monkeypatch.setattr(JobService, "tasks", throttled)
    assert_unavailable(api.call("GET", "/v1/tasks"))


def test_a_job_whose_result_object_is_gone_answers_200_with_a_null_result_marked_expired(api, monkeypatch):
    results_in_s3(monkeypatch)
    job = api.call("POST", "/v1/jobs", SHORT).body
    api.clients.s3.delete_object(Bucket=api.aws.bucket, Key=f"results/{job['id']}.json")

    reply = api.call("GET", f"/v1/jobs/{job['id']}")

    assert reply.status == 200, reply.body
    assert reply.body["status"] == "succeeded" and reply.body["result"] is None and reply.body["result_status"] == "expired"
    assert "result_url" not in reply.body


def test_a_job_past_its_result_retention_is_listed_and_shown_expired(api):
    job = api.call("POST", "/v1/jobs", SHORT).body
    api.clients.table.update_item(Key={"job_id": job["id"]}, UpdateExpression="SET result_expires_at = :past",
                                  ExpressionAttributeValues={":past": clock_ms() - 1})

    shown = api.call("GET", f"/v1/jobs/{job['id']}").body
    [listed] = api.call("GET", "/v1/jobs").body["jobs"]

    for view in (shown, listed):
        assert view["result"] is None and view["result_status"] == "expired" and "result_url" not in view


def test_a_sync_job_meeting_an_overloaded_model_is_a_503_with_a_retry_hint_never_a_202(api):
    """sync means inline or not at all: the client did not accept a queued job in advance (auto does)."""
    api.standin.configure(fail_status=529, fail_times=2)

    reply = api.call("POST", "/v1/jobs", {**SHORT, "mode": "sync"})

    assert reply.status == 503, reply.body
    error = reply.body["error"]
    assert error["type"] == "model_unavailable" and "mode auto" in error["message"]
    assert int(reply.headers["Retry-After"]) >= 1
    job_id = error["job_id"]
    assert reply.headers["Location"] == f"/v1/jobs/{job_id}"
    job = api.call("GET", f"/v1/jobs/{job_id}").body
    assert job["status"] == "failed" and job["error"]["type"] == "model_unavailable"
    assert api.messages() == [] and delayed(api) == 0  # nothing queued behind the client's back


def test_a_sync_retry_with_the_same_idempotency_key_runs_again_once_the_model_is_back(api):
    api.standin.configure(fail_status=429, fail_times=2)
    headers = {"x-api-key": KEY, "content-type": "application/json", "idempotency-key": "sync-retry-1"}
    body = json.dumps({**SHORT, "mode": "sync"})

    first = api.send(to_event("POST", "/v1/jobs", headers, body))
    again = api.send(to_event("POST", "/v1/jobs", headers, body))

    assert first.status == 503
    assert again.status == 200 and again.body["status"] == "succeeded"
    assert again.body["id"] != first.body["error"]["job_id"]


# --- uploads -------------------------------------------------------------------------------------


def test_post_uploads_answers_201_with_a_presigned_put_that_signs_type_and_length(api):
    from urllib.parse import parse_qs, unquote, urlsplit

    reply = api.call("POST", "/v1/uploads", {"content_type": "application/json", "size": 50_000_000})

    assert reply.status == 201, reply.body
    upload_id = reply.body["upload_id"]
    assert upload_id.startswith("upl_") and len(upload_id) == 36
    assert reply.body["headers"] == {"content-type": "application/json", "content-length": "50000000"}
    assert reply.body["max_bytes"] == 1024 ** 3 and reply.body["expires_at"].endswith("Z")
    url = urlsplit(reply.body["url"])
    path = unquote(url.path)
    assert path.endswith(f"/uploads/{path.split('/uploads/')[1].split('/')[0]}/{upload_id}")
    assert path.endswith("/" + upload_key(api_key_id(KEY), upload_id))  # under the caller's tenant, no other
    query = parse_qs(url.query)
    signed = query["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-length", "content-type", "host"} <= set(signed)
    assert query["X-Amz-Expires"] == ["3600"]


@pytest.mark.parametrize("body", [{"content_type": "image/png", "size": 10}, {"content_type": "text/plain", "size": 2 * 1024 ** 3}])
def test_post_uploads_refuses_other_types_and_sizes_with_422(api, body):
    reply = api.call("POST", "/v1/uploads", body)
    assert reply.status == 422 and reply.body["error"]["type"] == "invalid_input"


def _uploaded(api, data: bytes, content_type: str = "application/json", *, key: str = KEY) -> str:
    """An upload made through the API, its object put as the presigned PUT would (moto in-process takes no HTTP)."""
    from urllib.parse import unquote, urlsplit

    reply = api.call("POST", "/v1/uploads", {"content_type": content_type, "size": len(data)}, key=key)
    object_key = unquote(urlsplit(reply.body["url"]).path).split(f"/{api.aws.bucket}/", 1)[-1].lstrip("/")
    if not object_key.startswith("uploads/"):  # virtual-hosted style: the bucket is in the host
        object_key = unquote(urlsplit(reply.body["url"]).path).lstrip("/")
    api.clients.s3.put_object(Bucket=api.aws.bucket, Key=object_key, Body=data, ContentType=content_type)
    return reply.body["upload_id"]


def test_a_job_names_a_large_upload_and_is_queued_with_its_input_ref(api):
    data = json.dumps({"documents": [{"id": f"d{i}", "text": "x" * 40_000} for i in range(3)]}).encode()
    upload_id = _uploaded(api, data)

    reply = api.call("POST", "/v1/jobs", {"task": "documents.summarize", "input_upload": upload_id})

    assert reply.status == 202, reply.body
    item = api.item(reply.body["id"])
    assert item["input_ref"].startswith("uploads/") and item["input_ref"].endswith(upload_id)
    assert "input" not in item or not item["input"]
    assert [decode(m["Body"]) for m in api.messages()] == [reply.body["id"]]


def test_a_small_text_upload_runs_inline_as_the_invoice_text(api):
    upload_id = _uploaded(api, (SAMPLES / "invoice_acme.txt").read_bytes(), "text/plain")
    reply = api.call("POST", "/v1/jobs", {"task": "invoice.extract", "input_upload": upload_id})
    assert reply.status == 200, reply.body
    assert reply.body["result"]["invoice"]["vendor"] == "Acme Corporation"


def test_another_tenants_upload_or_one_never_put_is_a_422(api):
    upload_id = _uploaded(api, b'{"documents": [{"text": "hi"}]}')
    other = api.call("POST", "/v1/jobs", {"task": "documents.summarize", "input_upload": upload_id}, key="tenant-b-key")
    assert other.status == 422 and other.body["error"]["field"] == "input_upload"

    never = api.call("POST", "/v1/uploads", {"content_type": "application/json", "size": 10}).body["upload_id"]
    reply = api.call("POST", "/v1/jobs", {"task": "documents.summarize", "input_upload": never})
    assert reply.status == 422 and "PUT it" in reply.body["error"]["message"]
