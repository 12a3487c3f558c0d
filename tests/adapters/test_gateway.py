"""The local API Gateway stand-in over real HTTP, in front of the router handler (moto, the Claude
stand-in): it enforces the real request limit (a 6 MB Lambda event) with the router's 413, and every
request gets an answer, a body that is not UTF-8 included."""

# ruff: noqa: F811  (the api fixture, imported, is a parameter here)

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

import pytest

from jobcore.limits import MAX_REQUEST_EVENT_BYTES
from local.gateway import Gateway
from router import handler as router
from tests.adapters.test_router_handler import KEY, SHORT, api, router_env  # noqa: F401  (fixtures)

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
