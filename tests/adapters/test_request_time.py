"""AWS calls on the router's path are bounded by the request's time: a hanging DynamoDB or S3 answers 503
(retry shortly) well within API Gateway's 29 s, never a gateway timeout.

The bounds are checked as configured (no wall-time races): the clients' timeouts and attempts, and the
request deadline on a fake clock. One end-to-end check per store runs the router handler against a local
server that accepts and never answers (``RecordingServer`` held), with a wide margin on the wall time."""

# ruff: noqa: F811  (the api fixture, imported, is a parameter here)

from __future__ import annotations

import json
import time

import pytest

from jobadapters import request_time
from jobadapters.aws_errors import RequestTimeSpentError
from jobadapters.dynamo import DynamoJobStore
from jobadapters.request_time import RequestDeadline
from jobadapters.wiring import AwsClients
from jobcore.errors import StoreUnavailableError
from jobcore.limits import API_GATEWAY_TIMEOUT_S, INLINE_FALLBACK_MARGIN_S
from jobcore.service import INLINE_INPUT_LIMIT
from local.gateway import LambdaContext, response_headers, to_event
from router import handler as router
from tests.adapters.support import RecordingServer
from tests.adapters.test_router_handler import KEY, SHORT, Api, api, router_env  # noqa: F401  (fixtures)
from tests.fakes import FakeClock

HEADERS = {"x-api-key": KEY, "content-type": "application/json"}


class Context:
    """A Lambda context whose remaining time is fixed (the fake clock does the rest)."""

    def __init__(self, remaining_s: float):
        self.remaining_ms = int(remaining_s * 1000)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_one_call_and_the_last_attempt_fit_within_the_gateways_timeout():
    assert request_time.CALL_BOUND_S == 11.0  # 2 attempts of 2 s to connect + 3 s of silence, 1 s back-off between
    # A call started with the deadline's minimum left ends before it; then the answer has its margin.
    assert request_time.ATTEMPT_BOUND_S + request_time.ANSWER_MARGIN_S < API_GATEWAY_TIMEOUT_S
    # Without the deadline, three calls in a row could already outlast the gateway: the deadline is what bounds them.
    assert 3 * request_time.CALL_BOUND_S > API_GATEWAY_TIMEOUT_S


def test_the_routers_clients_carry_the_request_bounds_and_the_workers_keep_theirs(aws):
    routers = AwsClients.create(aws.table, deadline=RequestDeadline())
    for client in (routers.table.meta.client, routers.sqs, routers.s3):
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (request_time.CONNECT_TIMEOUT_S, request_time.READ_TIMEOUT_S)
        assert config.retries == {"total_max_attempts": request_time.ATTEMPTS, "mode": "standard"}
    workers = AwsClients.create(aws.table)
    assert workers.sqs.meta.config.read_timeout == 30 and workers.table.meta.client.meta.config.read_timeout == 10


def test_an_attempt_that_could_end_past_the_deadline_is_never_started(aws):
    clock = FakeClock()
    deadline = RequestDeadline(monotonic=clock.monotonic)
    clients = AwsClients.create(aws.table, deadline=deadline)
    sent: list[str] = []
    clients.table.meta.client.meta.events.register("before-send", lambda **kw: sent.append(kw["request"].url))
    store = DynamoJobStore(clients.table)

    assert store.get("job_1") is None and len(sent) == 1  # outside a request: the clients' own bounds only
    with deadline.request(Context(30)):  # the gateway's 29 s is the shorter: 28 s to use
        assert deadline.left_s() == API_GATEWAY_TIMEOUT_S - request_time.ANSWER_MARGIN_S
        assert store.get("job_1") is None and len(sent) == 2
        clock.advance(API_GATEWAY_TIMEOUT_S - request_time.ANSWER_MARGIN_S - request_time.ATTEMPT_BOUND_S)
        assert store.get("job_1") is None and len(sent) == 3  # exactly one attempt's time left: still tried
        clock.advance(0.001)
        with pytest.raises(StoreUnavailableError) as caught:
            store.get("job_1")
        assert isinstance(caught.value.__cause__, RequestTimeSpentError) and len(sent) == 3  # nothing sent
    with deadline.request(Context(4)):  # a Lambda with 4 s left: less than one attempt
        with pytest.raises(StoreUnavailableError):
            store.get("job_1")
    assert len(sent) == 3
    assert deadline.left_s() is None


def test_a_request_with_too_little_time_left_answers_503_at_once_and_records_nothing(api):
    event = to_event("POST", "/v1/jobs", HEADERS, json.dumps(SHORT))
    answer = router.handler(event, LambdaContext(request_time.ATTEMPT_BOUND_S))  # less the answer's margin

    assert answer["statusCode"] == 503, answer
    assert json.loads(answer["body"])["error"]["type"] == "unavailable" and response_headers(answer)["Retry-After"]
    assert api.clients.table.scan()["Count"] == 0 and api.standin.stats()["requests"] == 0


@pytest.fixture
def hanging():
    """A server that takes every request and never answers."""
    server = RecordingServer().start()
    server.hold.clear()
    yield server
    server.stop()


@pytest.mark.parametrize(("service", "body"), [
    ("DYNAMODB", SHORT),  # inline: the job's record is never written
    ("DYNAMODB", {**SHORT, "mode": "async"}),  # queued: likewise
    ("S3", {"task": "documents.summarize", "mode": "async",  # queued, its input too large for the item: S3 first
            "input": {"documents": [{"id": "a", "text": "x" * (INLINE_INPUT_LIMIT + 1)}]}}),
])
def test_a_hanging_store_answers_503_well_within_the_gateways_timeout(api, hanging, monkeypatch, service, body):
    monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", hanging.url)
    router.service.cache_clear()  # the router's clients are made again, pointed at the hanging server

    started = time.monotonic()
    reply = api.send(to_event("POST", "/v1/jobs", HEADERS, json.dumps(body)))
    took = time.monotonic() - started

    assert reply.status == 503 and reply.body["error"]["type"] == "unavailable", reply.body
    assert reply.headers["Retry-After"]
    assert len(hanging.requests) == request_time.ATTEMPTS  # every attempt reached the server, and no more
    # The configured bound is 11 s; the margin up to the gateway's 29 s absorbs a slow, shared machine.
    assert took < API_GATEWAY_TIMEOUT_S - request_time.ANSWER_MARGIN_S, took


def test_the_time_kept_after_the_inline_budget_fits_one_bounded_write_and_the_answer():
    """A model call that spends its whole inline budget still gets its job written: the margin the config keeps
    between the budget and the router's timeout holds one bounded attempt and the answer's margin (a deadline
    that refused that write would leave the job running until the sweeper ran it, and paid for it, again)."""
    assert INLINE_FALLBACK_MARGIN_S >= request_time.ATTEMPT_BOUND_S + request_time.ANSWER_MARGIN_S + 1
