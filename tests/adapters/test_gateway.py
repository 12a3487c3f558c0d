"""The local API Gateway stand-in over real HTTP, in front of the router handler (moto, the Claude
stand-in): it enforces the real request limit (a 6 MB Lambda event) with the router's 413, and every
request gets an answer, a body that is not UTF-8 included. The router's execution environments, as Lambda
runs them: one process per concurrent request, started on demand up to the concurrency limit, throttled
past it, a dead or timed-out one replaced."""

# ruff: noqa: F811  (the api fixture, imported, is a parameter here)

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobcore.limits import MAX_REQUEST_EVENT_BYTES
from local.gateway import EnvironmentFailed, ExecutionEnvironments, Gateway, Throttled, to_event
from router import handler as router
from tests.adapters.test_router_handler import KEY, SHORT, api, router_env  # noqa: F401  (fixtures)
from tests.e2e.harness import exited, wait_until

ASYNC = {**SHORT, "mode": "async"}


@pytest.fixture
def gateway(api):
    started = Gateway(router.handler).start()
    yield started
    started.stop()


def request(gateway: Gateway, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers={"x-api-key": KEY, "content-type": "application/json"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"null")
    finally:
        connection.close()


def raw_request(gateway: Gateway, head: bytes) -> bytes:
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_normal_request_still_goes_through(gateway):
    status, body = request(gateway, "POST", "/v1/jobs", json.dumps(ASYNC).encode())
    assert status == 202 and body["status"] == "queued"


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b'{"task": "claude.messages", "input": "caf\xe9"}'])
def test_a_body_that_is_not_utf8_gets_a_400_not_silence(gateway, raw):
    status, body = request(gateway, "POST", "/v1/jobs", raw)
    assert status == 400 and body["error"]["type"] == "bad_request" and "not UTF-8" in body["error"]["message"]


def test_a_body_over_the_event_limit_is_413_without_invoking_the_router(gateway, api):
    status, body = request(gateway, "POST", "/v1/jobs", b" " * (MAX_REQUEST_EVENT_BYTES + 1))
    assert status == 413 and body["error"]["type"] == "payload_too_large"
    assert api.clients.table.scan()["Count"] == 0


def test_a_body_under_six_megabytes_whose_event_is_over_is_413_too(gateway, api):
    """Quotes double when the body is put in the event as a JSON string."""
    text = json.dumps({**ASYNC, "input": {**ASYNC["input"], "system": '"' * (MAX_REQUEST_EVENT_BYTES // 3)}}).encode()
    assert len(text) < MAX_REQUEST_EVENT_BYTES

    status, body = request(gateway, "POST", "/v1/jobs", text)

    assert status == 413 and body["error"]["type"] == "payload_too_large"
    assert api.clients.table.scan()["Count"] == 0


def test_a_large_body_within_the_limit_is_accepted(gateway):
    text = json.dumps({**ASYNC, "input": {**ASYNC["input"], "system": "s" * (5 * 1024 * 1024)}}).encode()
    status, body = request(gateway, "POST", "/v1/jobs", text)
    assert status == 202, body


@pytest.mark.parametrize("length", [b"abc", b"-5", b"1e3"])
def test_a_content_length_that_is_not_a_number_is_400(gateway, length):
    answer = raw_request(gateway, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nx-api-key: " + KEY.encode() + b"\r\n"
                                  b"Content-Length: " + length + b"\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 400") and b"bad_request" in answer


def test_a_path_that_is_not_a_url_path_gets_an_answer(gateway):
    answer = raw_request(gateway, b"GET //[x/v1/jobs HTTP/1.1\r\nHost: x\r\nx-api-key: " + KEY.encode() + b"\r\nConnection: close\r\n\r\n")
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 404"))


@pytest.mark.parametrize("method", ["PATCH", "TRACE", "OPTIONS", "QUERY"])
def test_a_method_no_route_has_gets_the_api_s_404_not_an_html_501(gateway, method):
    status, body = request(gateway, method, "/v1/tasks")
    assert status == 404 and body["error"]["type"] == "not_found"


def test_a_query_parameter_without_a_value_reaches_the_router_empty_as_in_api_gateway(gateway):
    status, body = request(gateway, "GET", "/v1/jobs?status=")
    assert status == 422 and body["error"]["field"] == "query.status"


def test_the_gateway_s_own_errors_are_in_the_api_s_error_shape(gateway):
    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("GET", "/v1/tasks")  # no API key
        answer = connection.getresponse()
        status, body = answer.status, json.loads(answer.read())
    finally:
        connection.close()
    assert status == 403 and body["error"]["type"] == "INVALID_API_KEY" and body["error"]["message"]


# --- the router's execution environments: supervised and bounded as Lambda's ------------------------------

TARGET = "tests.adapters.lambda_targets:handler"


def event(body: dict[str, Any]) -> dict[str, Any]:
    found = to_event("POST", "/v1/jobs", {"x-api-key": KEY}, json.dumps(body))
    assert found is not None
    return found


def answered_by(answer: dict[str, Any]) -> int:
    assert answer["statusCode"] == 200, answer
    return json.loads(answer["body"])["pid"]


@pytest.fixture
def environments(request) -> Iterator[ExecutionEnvironments]:
    options = getattr(request, "param", {})
    pool = ExecutionEnvironments(TARGET, **{"concurrency": 3, "timeout_s": 20.0, **options})
    yield pool
    pool.close()


def hold(pool: ExecutionEnvironments, release: Path, n: int) -> list[threading.Thread]:
    """``n`` requests held in their environments until ``release`` exists; returns once all are in flight."""
    busy = pool.busy + n
    threads = [threading.Thread(target=pool, args=(event({"hold": str(release)}), None), daemon=True) for _ in range(n)]
    for thread in threads:
        thread.start()
    wait_until(lambda: pool.busy == busy, timeout_s=30, every_s=0.01, what=f"{busy} requests in flight")
    return threads


def test_an_environment_that_dies_mid_request_fails_that_request_only_and_is_replaced(environments):
    first = answered_by(environments(event({}), None))
    with pytest.raises(EnvironmentFailed, match="exited"):
        environments(event({"exit": 3}), None)
    answers = {answered_by(environments(event({}), None)) for _ in range(5)}
    assert len(answers) == 1 and first not in answers  # one fresh environment, reused
    assert environments.pids() == sorted(answers)


def test_an_environment_killed_while_idle_is_replaced_and_no_request_fails(environments):
    first = answered_by(environments(event({}), None))
    os.kill(first, signal.SIGKILL)  # our pool's child, by its own pid
    wait_until(lambda: exited(first), timeout_s=30, every_s=0.01, what="the killed environment's exit")
    second = answered_by(environments(event({}), None))
    assert second != first and environments.pids() == [second]


def test_a_handler_that_raises_fails_its_request_and_keeps_its_environment(environments):
    first = answered_by(environments(event({}), None))
    with pytest.raises(RuntimeError, match="ValueError: asked to raise"):
        environments(event({"raise": True}), None)
    assert answered_by(environments(event({}), None)) == first


def test_environments_start_on_demand_up_to_the_limit_then_requests_are_throttled_at_once(environments, tmp_path):
    release = tmp_path / "release"
    threads = hold(environments, release, 2)
    assert answered_by(environments(event({}), None))  # a third environment: held requests block no one
    threads += hold(environments, release, 1)
    with pytest.raises(Throttled, match="concurrency limit"):
        environments(event({}), None)  # all 3 busy: refused, not queued
    release.touch()
    for thread in threads:
        thread.join(timeout=30)
    assert environments.busy == 0 and len(environments.pids()) == 3
    assert answered_by(environments(event({}), None)) in environments.pids()  # warm again: no cold start


@pytest.mark.parametrize("environments", [{"max_starting": 1, "warm": 0, "wait_s": 0.2}], indirect=True)
def test_past_the_cold_starts_under_way_a_request_waits_for_one_then_is_throttled(environments, tmp_path, monkeypatch):
    init = tmp_path / "init"
    monkeypatch.setenv("INIT_HOLD", str(init))  # the environments' init waits for it
    first: list[dict[str, Any]] = []
    starting = threading.Thread(target=lambda: first.append(environments(event({}), None)), daemon=True)
    starting.start()
    wait_until(lambda: environments.busy == 1, timeout_s=30, every_s=0.01, what="a cold start under way")
    with pytest.raises(Throttled, match="no router environment came free or started within 0.2 s"):
        environments(event({}), None)
    init.touch()
    starting.join(timeout=30)
    assert answered_by(first[0]) == answered_by(environments(event({}), None))  # then warm, and reused


@pytest.mark.parametrize("environments", [{"max_starting": 1, "warm": 0, "wait_s": 30.0}], indirect=True)
def test_a_request_waiting_for_a_start_slot_is_served_once_the_start_ends(environments, tmp_path, monkeypatch):
    init = tmp_path / "init"
    monkeypatch.setenv("INIT_HOLD", str(init))
    answers: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: answers.append(environments(event({}), None)), daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: environments.busy == 1, timeout_s=30, every_s=0.01, what="one cold start, one request waiting")
    init.touch()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 2 and all(answered_by(answer) for answer in answers)


@pytest.mark.parametrize("environments", [{"timeout_s": 1.0}], indirect=True)
def test_an_invoke_past_the_function_timeout_is_ended_and_its_environment_replaced(environments, tmp_path):
    first = answered_by(environments(event({}), None))
    with pytest.raises(EnvironmentFailed, match="timeout"):
        environments(event({"hold": str(tmp_path / "never")}), None)
    assert exited(first) and answered_by(environments(event({}), None)) != first


def test_idle_environments_past_their_idle_time_are_stopped_keeping_the_warm_one(tmp_path):
    now = [0.0]
    pool = ExecutionEnvironments(TARGET, concurrency=3, warm=1, idle_s=60.0, clock=lambda: now[0])
    try:
        release = tmp_path / "release"
        threads = hold(pool, release, 3)
        release.touch()
        for thread in threads:
            thread.join(timeout=30)
        assert len(pool.pids()) == 3
        now[0] = 61.0
        kept = answered_by(pool(event({}), None))  # its release stops the two idle for 61 s
        assert pool.pids() == [kept]
    finally:
        pool.close()


@pytest.fixture
def gateway_over(environments) -> Iterator[tuple[Gateway, ExecutionEnvironments]]:
    started = Gateway(environments).start()
    yield started, environments
    started.stop()


def test_the_gateway_answers_429_throttled_at_the_limit_and_502_for_a_dead_environment(gateway_over, tmp_path):
    gateway, environments = gateway_over
    status, body = request(gateway, "POST", "/v1/jobs", json.dumps({"exit": 1}).encode())
    assert status == 502 and body["error"]["type"] == "DEFAULT_5XX"
    release = tmp_path / "release"
    threads = hold(environments, release, 3)
    status, body = request(gateway, "POST", "/v1/jobs", b"{}")
    assert status == 429 and body["error"]["type"] == "THROTTLED" and "concurrency limit (3" in body["error"]["message"]
    release.touch()
    for thread in threads:
        thread.join(timeout=30)
    status, body = request(gateway, "POST", "/v1/jobs", b"{}")
    assert status == 200 and body["pid"] in environments.pids()
