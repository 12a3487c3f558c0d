"""Every bad input gets a clear 4xx through the router handler (moto, the Claude stand-in), never a 5xx:
numbers DynamoDB cannot store, deep nesting, lone surrogates, webhook URLs and events, fields big
enough to burst a DynamoDB item, metadata limits, bodies too large for a Lambda event or not UTF-8,
and error messages that quote what the client sent only bounded."""

# ruff: noqa: F811  (the api fixture, imported, is a parameter here)

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest

from jobadapters.dynamo import DynamoJobStore
from jobcore.limits import (
    DYNAMODB_MAX_ITEM_BYTES,
    MAX_JSON_DEPTH,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    MAX_MODEL_ID_CHARS,
    MAX_REQUEST_EVENT_BYTES,
    MAX_WEBHOOK_URL_CHARS,
    SQS_MAX_RETENTION_S,
)
from jobcore.model import Job, JobStatus
from jobcore.service import INLINE_INPUT_LIMIT
from jobcore.tasks import CATALOGUE
from jobcore.tasks.messages import MAX_STOP_SEQUENCE_CHARS, MAX_STOP_SEQUENCES, MAX_USER_ID_CHARS
from local.gateway import to_event
from router import handler as router
from router import payload
from tests.adapters.test_router_handler import KEY, SHORT, Api, api, router_env  # noqa: F401  (fixtures)

HEADERS = {"x-api-key": KEY, "content-type": "application/json"}
ASYNC = {**SHORT, "mode": "async"}


def post_raw(api: Api, text: str | bytes) -> Any:
    return api.send(to_event("POST", "/v1/jobs", HEADERS, text))


def assert_error(reply: Any, status: int, error_type: str, field: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.body
    error = reply.body["error"]
    assert error["type"] == error_type and error["message"]
    if field is not None:
        assert error.get("field") == field, error
    return error


def nothing_stored(api: Api) -> bool:
    return api.clients.table.scan()["Count"] == 0 and api.standin.stats()["requests"] == 0


# --- 1. numbers DynamoDB cannot store, wherever they are -----------------------------------------

DEEP = "input.messages[0].content[1].x"


def with_number(number: str) -> str:
    return ('{"task": "claude.messages", "input": {"max_tokens": 10, "messages": [{"role": "user", "content": '
            '[{"type": "text", "text": "hi"}, {"type": "text", "text": "x", "x": ' + number + '}]}]}}')


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1e126", "1e-131", "1.2345678901234567890123456789012345678901",
                                    "123456789012345678901234567890123456789", "1" + "0" * 5000])
def test_a_number_dynamodb_cannot_store_is_422_naming_its_path_even_where_the_task_never_looks(api, number):
    error = assert_error(post_raw(api, with_number(number)), 422, "invalid_input", DEEP)
    assert "number" in error["message"]
    assert nothing_stored(api)


@pytest.mark.parametrize("task", sorted(CATALOGUE))
def test_every_task_is_covered_by_the_one_check(api, task):
    body = '{"task": "' + task + '", "input": {"anything": {"deep": [0, 1e999]}}}'
    assert_error(post_raw(api, body), 422, "invalid_input", "input.anything.deep[1]")


@pytest.mark.parametrize(("body", "field"), [
    ('{"task": "claude.messages", "input": {"max_tokens": 10, "messages": []}, "hints": {"expected_duration_s": 1e-300}}',
     "hints.expected_duration_s"),
    ('{"task": "claude.messages", "input": {}, "max_queue_s": 1e400}', "max_queue_s"),
    ('[1e400]', "body[0]"),
])
def test_numbers_are_checked_in_every_part_of_the_body(api, body, field):
    assert_error(post_raw(api, body), 422, "invalid_input", field)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_400_naming_the_field(api, constant):
    error = assert_error(post_raw(api, with_number(constant)), 400, "bad_request", DEEP)
    assert constant in error["message"]


# --- 2. nesting and text -------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 50_000])
def test_deep_nesting_is_400_at_any_depth(api, depth):
    body = '{"task": "claude.messages", "input": ' + "[" * depth + "]" * depth + "}"
    error = assert_error(post_raw(api, body), 400, "bad_request")
    assert f"deeper than {MAX_JSON_DEPTH} levels" in error["message"]
    assert nothing_stored(api)


@pytest.mark.parametrize(("body", "field"), [
    ('{"task": "claude.messages", "input": {"max_tokens": 10, "messages": [{"role": "user", "content": "a\\ud800"}]}}',
     "input.messages[0].content"),
    ('{"task": "claude.messages", "input": {"max_tokens": 10, "messages": [{"role": "user", "content": "a"}]}, '
     '"metadata": {"k\\udc00": "v"}}', 'metadata["k\\udc00"]'),
    ('{"task": "claude.messages", "input": {"x": {"\\ud800": 1}}}', 'input.x["\\ud800"]'),
    ('{"task\\ud800": 1}', 'body["task\\ud800"]'),
])
def test_a_lone_surrogate_in_a_value_or_key_is_400_naming_where(api, body, field):
    error = assert_error(post_raw(api, body), 400, "bad_request", field)
    assert "surrogate" in error["message"]
    assert nothing_stored(api)


# --- 3. webhooks ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "why"), [
    ("https://[::1", "not a valid URL"),
    ("https://[zz::1]/", "not a valid"),
    ("https://example.com:99999/h", "invalid port"),
    ("https://example.com:abc/h", "invalid port"),
    ("https://user:secret@example.com/h", "user name or password"),
    ("https:///h", "absolute"),
    ("https://example.com/" + "x" * MAX_WEBHOOK_URL_CHARS, "at most"),
    ("https://169.254.169.254/latest/meta-data", "cloud metadata"),
    ("https://[fd00:ec2::254]/", "cloud metadata"),
    ("https://[::ffff:169.254.169.254]/", "cloud metadata"),
    ("https://[64:ff9b::a9fe:a9fe]/", "NAT64"),
    ("https://[2002:a9fe:a9fe::]/", "6to4"),
    ("https://[2001::1]/", "Teredo"),
    ("https://10.0.0.1/h", "private"),
    ("https://100.64.0.1/h", "carrier-grade NAT"),
    ("https://167772161/h", "private"),  # 10.0.0.1 as one decimal number
    ("https://0xa9fea9fe/", "cloud metadata"),  # 169.254.169.254 in hex
    ("https://012.0.0.1/h", "private"),  # 10.0.0.1, its first part octal
    ("https://metadata.google.internal/", "does not resolve"),
    ("http://10.0.0.1/h", "never be delivered"),  # the local runtime allows http, and loopback only
])
def test_a_webhook_url_that_is_malformed_or_never_deliverable_is_422_naming_it(api, url, why):
    error = assert_error(api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": url}}), 422, "invalid_input", "webhook.url")
    assert why in error["message"] and len(error["message"]) < 300
    assert nothing_stored(api)


@pytest.mark.parametrize("url", ["https://127.0.0.1/h", "https://[::1]/h", "https://localhost/h", "https://2130706433/h",
                                 "https://0x7f.1/h", "https://017700000001/h", "https://[::ffff:127.0.0.1]/h", "http://example.com/h"])
def test_in_aws_loopback_and_plain_http_are_refused_too(api, monkeypatch, url):
    monkeypatch.delenv("WEBHOOK_ALLOW_LOOPBACK")
    router.service.cache_clear()

    reply = api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": url}})

    assert_error(reply, 422, "invalid_input", "webhook.url")
    assert nothing_stored(api)


def test_the_local_runtimes_loopback_receivers_are_still_accepted(api):
    reply = api.call("POST", "/v1/jobs", {**ASYNC, "webhook": {"url": "http://127.0.0.1:9/hooks", "events": ["job.failed"]}})
    assert reply.status == 202 and reply.body["webhook"]["events"] == ["failed"]


@pytest.mark.parametrize(("events", "field"), [
    ("completed", "webhook.events"), ([], "webhook.events"), (["failed", 3], "webhook.events[1]"),
    (["done"], "webhook.events[0]"), (["failed", "job.failed"], "webhook.events[1]"),
])
def test_wrong_webhook_events_are_422_naming_the_item(api, events, field):
    reply = api.call("POST", "/v1/jobs", {**SHORT, "webhook": {"url": "https://example.com/h", "events": events}})
    assert_error(reply, 422, "invalid_input", field)


# --- 4. and 5. nothing can burst the job item; metadata has limits --------------------------------

@pytest.mark.parametrize(("body", "field"), [
    ({**SHORT, "input": {**SHORT["input"], "model": "m" * 1_000_000}}, "input.model"),
    ({**SHORT, "metadata": {"k": "v" * 1_000_000}}, "metadata.k"),
    ({**SHORT, "metadata": {f"k{i}": "v" for i in range(1_000)}}, "metadata"),
    ({**SHORT, "metadata": {"k" * 1_000_000: "v"}}, None),
    ({**SHORT, "webhook": {"url": "https://example.com/" + "x" * 1_000_000}}, "webhook.url"),
    ({**SHORT, "input": {**SHORT["input"], "stop_sequences": ["x"] * 100_000}}, "input.stop_sequences"),
    ({**SHORT, "input": {**SHORT["input"], "metadata": {"user_id": "u" * 1_000_000}}}, "input.metadata.user_id"),
    ({"task": "documents.summarize", "input": {"documents": [{"id": "i" * 1_000_000, "text": "t"}]}}, "input.documents[0].id"),
])
def test_a_field_big_enough_to_burst_the_item_is_422_never_a_500(api, body, field):
    error = assert_error(api.call("POST", "/v1/jobs", body), 422, "invalid_input", field)
    assert len(error["message"]) < 400 and len(error["field"]) < 120
    assert nothing_stored(api)


def largest_body(input_json_chars: int, *, containers: bool = False) -> dict[str, Any]:
    """Every field of a claude.messages submit at its largest allowed value, the input's JSON filled up
    to ``input_json_chars`` (with text, or with empty lists: DynamoDB's costliest shape per JSON
    character). Metadata in 4-byte characters, the worst case for the item's size."""
    wide = "\U0001F600"
    body: dict[str, Any] = {
        "task": "claude.messages", "mode": "async", "max_queue_s": SQS_MAX_RETENTION_S,
        "hints": {"expected_duration_s": 123.456789012345, "memory_mb": 1024},  # any number is at most 21 bytes
        "webhook": {"url": "https://hooks.example.com/" + "p" * (MAX_WEBHOOK_URL_CHARS - 26),
                    "events": ["succeeded", "failed", "canceled", "expired", "timed_out"]},
        "metadata": {f"{i:02d}" + wide * (MAX_METADATA_KEY_CHARS - 2): wide * MAX_METADATA_VALUE_CHARS for i in range(MAX_METADATA_KEYS)},
        "input": {
            "model": "m" * MAX_MODEL_ID_CHARS, "max_tokens": 128_000,
            "system": "s" * 1_000, "messages": [{"role": "user", "content": "c"}],
            "stop_sequences": [f"{i:02d}" + "z" * (MAX_STOP_SEQUENCE_CHARS - 2) for i in range(MAX_STOP_SEQUENCES)],
            "metadata": {"user_id": "u" * MAX_USER_ID_CHARS},
            "tools": [{"name": "t" * 128, "description": "d", "input_schema": {"type": "object", "examples": []}}],
            "tool_choice": {"type": "tool", "name": "t" * 128},
        },
    }
    room = input_json_chars - len(json.dumps(body["input"]))
    if containers:
        body["input"]["tools"][0]["input_schema"]["examples"] = [[]] * ((room + 2) // 4)  # "[], " each
    else:
        body["input"]["messages"][0]["content"] = "c" * (room + 1)
    assert input_json_chars - 4 <= len(json.dumps(body["input"])) <= input_json_chars
    return body


def item_bytes(value: Any) -> int:
    """A DynamoDB item's size by AWS's rules: UTF-8 names and strings, numbers by significant digits,
    3 bytes for a list or map and 1 more per element."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, float, Decimal)):
        digits = len(Decimal(value).normalize().as_tuple().digits)
        return (digits + 1) // 2 + 1
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return 3 + sum(1 + item_bytes(item) for item in value)
    if isinstance(value, dict):
        return 3 + sum(1 + item_bytes(key) + item_bytes(item) for key, item in value.items())
    raise TypeError(type(value))


@pytest.mark.parametrize(("where", "containers"), [("in the item", False), ("in the item", True), ("in S3", False)])
def test_the_largest_allowed_value_of_every_field_at_once_is_accepted_and_reads_back(api, where, containers, monkeypatch):
    """The input either stays in the job item (just under INLINE_INPUT_LIMIT) or goes to S3 (a body
    near the event limit); either way the item stays far under DynamoDB's 400 KB."""
    # moto's in-process DynamoDB (de)serialises the ~50,000 nested values of the containers case in seconds per call
    # (DynamoDB: milliseconds): 5 s on an idle machine, and on a loaded one past the request's deadline (the gateway's
    # 29 s), where the router rightly answered 503. The deadline is not what this test is about (test_request_time is).
    monkeypatch.setattr("jobadapters.request_time.API_GATEWAY_TIMEOUT_S", 600)
    api.lambda_timeout_s = 600
    body = largest_body(INLINE_INPUT_LIMIT if where == "in the item" else 5 * 1024 * 1024, containers=containers)
    text = json.dumps(body)
    assert not payload.too_large(to_event("POST", "/v1/jobs", HEADERS, text))

    reply = post_raw(api, text)

    assert reply.status == 202, reply.body
    item = api.item(reply.body["id"])
    assert ("input" in item) == (where == "in the item") and ("input_ref" in item) == (where == "in S3")
    size = item_bytes(item)  # attribute names counted as a map's keys
    assert size < DYNAMODB_MAX_ITEM_BYTES * 0.6, size  # room for what a run adds (result refs, errors, deliveries)
    again = api.call("GET", f"/v1/jobs/{reply.body['id']}")
    assert again.status == 200 and again.body["metadata"] == body["metadata"]


def test_jobs_recorded_before_the_metadata_limits_still_read_back(api):
    """A job whose metadata predates today's limits (more keys, longer values, keys of any length) is
    shown as it is: the limits apply to submissions, never to reads."""
    job_id = api.call("POST", "/v1/jobs", ASYNC).body["id"]
    jobs = DynamoJobStore(api.clients.table)
    old = jobs.get(job_id)
    assert old is not None
    legacy = {f"key {i} " + "k" * 100: "v" * 2_000 for i in range(60)} | {"a\nb": "x"}
    from dataclasses import replace

    jobs.save(replace(old, metadata=legacy, version=old.version + 1), expected_version=old.version)

    reply = api.call("GET", f"/v1/jobs/{job_id}")
    listed = api.call("GET", "/v1/jobs")

    assert reply.status == 200 and reply.body["metadata"] == legacy
    assert listed.status == 200 and listed.body["jobs"][0]["metadata"] == legacy


# --- 6. what an error quotes is bounded -----------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/jobs", {"task": "t" * 100_000, "input": {}}),
    ("POST", "/v1/jobs", {**SHORT, "f" * 100_000: 1}),
    ("POST", "/v1/jobs", {**SHORT, "input": {**SHORT["input"], "g" * 100_000: 1}}),
    ("POST", "/v1/jobs", {**SHORT, "webhook": {"url": "https://example.com/h", "events": ["e" * 100_000]}}),
    ("GET", "/v1/jobs?" + "q" * 50_000 + "=1", None),
    ("GET", "/v1/jobs?cursor=" + "c" * 50_000, None),
    ("GET", "/v1/jobs/" + "j" * 50_000, None),
])
def test_errors_quote_what_the_client_sent_bounded(api, method, path, body):
    reply = api.call(method, path, body)
    assert 400 <= reply.status < 500, reply.body
    assert len(json.dumps(reply.body)) < 600


def test_an_unknown_route_names_its_path_bounded(api):
    event = to_event("GET", "/v1/tasks", HEADERS, None)
    event.update(path="/v1/" + "z" * 50_000, resource="/{proxy+}")
    reply = api.send(event)
    assert reply.status == 404 and len(reply.body["error"]["message"]) < 300


def test_a_cursor_with_a_number_dynamodb_cannot_take_is_422_not_500(api):
    forged = base64.urlsafe_b64encode(json.dumps([10**40, "job_x"]).encode()).decode().rstrip("=")
    assert_error(api.call("GET", f"/v1/jobs?cursor={forged}"), 422, "invalid_input", "cursor")


# --- 7. request bodies: too large for a Lambda event, or not UTF-8 -------------------------------

def test_an_event_over_six_megabytes_is_413_payload_too_large(api):
    text = json.dumps({**SHORT, "input": {**SHORT["input"], "system": "s" * MAX_REQUEST_EVENT_BYTES}})
    event = to_event("POST", "/v1/jobs", HEADERS, text)
    assert payload.event_bytes(event) > MAX_REQUEST_EVENT_BYTES

    reply = api.send(event)

    assert_error(reply, 413, "payload_too_large")
    assert nothing_stored(api)


def test_an_event_that_escaping_pushes_over_six_megabytes_is_413_too():
    """The body travels as a JSON string: quotes and backslashes double in the event."""
    text = json.dumps({"task": "claude.messages", "input": {"x": '"' * (MAX_REQUEST_EVENT_BYTES // 3)}})
    assert len(text.encode()) < MAX_REQUEST_EVENT_BYTES
    assert payload.too_large(to_event("POST", "/v1/jobs", HEADERS, text))


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00{", b'{"task": "claude.messages", "input": "\xe9t\xe9"}', b"\xc3("])
def test_a_body_that_is_not_utf8_is_400(api, raw):
    event = to_event("POST", "/v1/jobs", HEADERS, raw)
    assert event is not None and event["isBase64Encoded"] is True

    error = assert_error(api.send(event), 400, "bad_request")

    assert "not UTF-8" in error["message"]


def test_a_base64_body_is_decoded_and_a_broken_one_is_400(api):
    event = to_event("POST", "/v1/jobs", HEADERS, json.dumps(ASYNC))
    event.update(body=base64.b64encode(json.dumps(ASYNC).encode()).decode(), isBase64Encoded=True)
    assert api.send(event).status == 202
    event.update(body="*not base64*")
    assert_error(api.send(event), 400, "bad_request")


def test_lambda_event_size_is_what_the_router_measures():
    event: dict[str, Any] = {"body": "é" * 10, "headers": {"a": "b"}}
    assert payload.event_bytes(event) == len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())
    assert not payload.too_large(event)


def test_a_job_whose_item_was_written_by_hand_reads_back(api):
    """The view never re-validates what is stored (a job recorded by an older version)."""
    job_id = api.call("POST", "/v1/jobs", ASYNC).body["id"]
    job = DynamoJobStore(api.clients.table).get(job_id)
    assert isinstance(job, Job) and job.status is JobStatus.QUEUED
