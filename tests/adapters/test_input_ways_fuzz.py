"""Property: whatever JSON arrives, by whichever way an input arrives (the request body, an upload a job names,
an S3 intake object), the router never answers 5xx, neither then nor for any job it stored: each renders in
``GET /v1/jobs/{id}`` and in the ``GET /v1/jobs`` page that holds it, as strict JSON.

Hostile values go where a task passes them through unread (a tool's input schema, metadata, extra fields) as
well as anywhere at all: lone surrogates, number literals Python would turn into infinity or 0 (``1e400``,
``5e-324``), NaN and Infinity, integers past 38 digits, empty keys, deep nesting, long strings. Every way
goes through the one parser (:mod:`jobcore.jsonbody`), so what the body refuses, an upload and an intake
object are refused too (a 422 naming ``input_upload``; a failed intake job saying why).

In process (the router and the intake handlers over moto, the Claude stand-in); deterministic
(``derandomize``, no example database) and bounded.
"""

# ruff: noqa: F811  (the api fixture, imported, is a parameter here)

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from intake import handler as intake_handler

from jobcore.intake import TEXT_TASKS
from jobcore.service import INLINE_INPUT_LIMIT
from local.gateway import LambdaContext, api_key_id, response_headers, to_event
from router import handler as router
from tests.adapters.test_router_fuzz import FUZZ, Literal, any_text, documents, dumps, numbers, put
from tests.adapters.test_router_handler import KEY, Api, _uploaded, api, router_env  # noqa: F401  (fixtures)

HEADERS = {"x-api-key": KEY, "content-type": "application/json"}
WAYS = ("body", "upload", "intake")

# Valid inputs, each with the places a task passes through unread or reads, for hostile values to go.
TOOL = {"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object", "properties": {}}}
TEMPLATES: dict[str, tuple[dict[str, Any], list[tuple[str | int, ...]]]] = {
    "claude.messages": ({"max_tokens": 10, "messages": [{"role": "user", "content": "Name one AWS region."}],
                         "tools": [TOOL]}, [
        ("tools", 0, "input_schema", "properties"), ("tools", 0, "input_schema", "x"),
        ("tools", 0, "input_schema", "properties", "word"), ("tools", 0, "description"), ("metadata", "user_id"),
        ("messages", 0, "content"), ("tools", 0, "input_schema"),
    ]),
    "invoice.extract": ({"text": "Invoice INV-1 from Acme, total 10 USD."}, [("text",)]),
    "documents.summarize": ({"documents": [{"id": "a", "text": "First."}]}, [
        ("documents", 0, "text"), ("documents", 0, "id"), ("instructions",)]),
}

# Odd values the pipeline keeps (they must be stored, and render), then values it must refuse.
odd_text = st.sampled_from(["", "\x00", "\u2028\u2029", "\x7f\x9f", "ключ", "x" * 70_000, "\U0001F600" * 20_000])
odd_numbers = st.sampled_from(["0.0", "-0", "1e-130", "-9.9999999999999999999999999999999999999E+125", "1e38",
                               "12345678901234567890123456789012345678", "0.1e-129"]).map(Literal)
hostile_numbers = st.sampled_from(["1e400", "-1e400", "5e-324", "1e-131", "1e126", "NaN", "Infinity", "-Infinity",
                                   "1" + "0" * 40, "12345678901234567890123456789012345678901"]).map(Literal)
hostile_text = st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud800"])


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """Nesting near DynamoDB's limit of 32 levels (the input's own levels come on top), and far past it."""
    depth = draw(st.sampled_from([20, 24, 26, 27, 28, 31, 40, 200]))
    value: Any = draw(st.one_of(st.none(), odd_text, odd_numbers, hostile_numbers, hostile_text))
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


odd = st.one_of(odd_text, odd_numbers, st.dictionaries(st.one_of(odd_text.filter(bool), any_text),
                                                       st.one_of(odd_text, odd_numbers, st.integers()), max_size=3))
hostile = st.one_of(
    odd, deep(), hostile_numbers, hostile_text, numbers, documents,
    st.dictionaries(st.one_of(hostile_text, st.just("")), st.one_of(odd_text, hostile_numbers), min_size=1, max_size=2),
)


def strict_json(text: str) -> Any:
    """The answer's body as a strict client reads it: no NaN or Infinity, text UTF-8 can encode."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in an answer: not JSON")
    text.encode("utf-8")  # a lone surrogate written raw would fail here
    return json.loads(text, parse_constant=refuse)


def answered(event: dict[str, Any]) -> tuple[int, Any]:
    answer = router.handler(event, LambdaContext(30))
    status, body = answer["statusCode"], strict_json(answer["body"])
    assert status < 500, (status, body)
    if status >= 400:
        assert body["error"]["type"] and body["error"]["message"]
    assert "Retry-After" not in response_headers(answer) or status in (429, 503)
    return status, body


@pytest.fixture
def intake_env(router_env, monkeypatch):
    """The intake submits as the API's own tenant, so its jobs are listed with the others."""
    monkeypatch.setenv("INTAKE_TENANT", api_key_id(KEY))
    intake_handler.intake.cache_clear()
    yield
    intake_handler.intake.cache_clear()


def arrive(api: Api, way: str, task: str, mode: str, document: str, n: int) -> list[str]:
    """``document`` (JSON text: the task's input) sent the ``way``; the ids of the jobs it made."""
    if way == "body":
        status, body = answered(to_event("POST", "/v1/jobs", HEADERS,
                                         '{"task": "' + task + '", "mode": "' + mode + '", "input": ' + document + "}"))
        return [body["id"]] if status < 300 else []
    data = document.encode("utf-8", "surrogatepass")
    if way == "upload":
        upload_id = _uploaded(api, data)
        status, body = answered(to_event("POST", "/v1/jobs", HEADERS, json.dumps(
            {"task": task, "mode": mode, "input_upload": upload_id})))
        return [body["id"]] if status < 300 else []
    key = f"intake/{task}/object-{n}.json"
    etag = api.clients.s3.put_object(Bucket=api.aws.bucket, Key=key, Body=data)["ETag"]
    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": api.aws.bucket}, "object": {
        "key": quote_plus(key, safe="/"), "size": len(data), "eTag": etag, "sequencer": f"{n:04d}"}}}
    message = {"messageId": f"m{n}", "receiptHandle": f"r{n}", "body": json.dumps({"Records": [record]}), "attributes": {},
               "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": "us-east-1",
               "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:intake"}
    answer = intake_handler.handler({"Records": [message]}, LambdaContext(60))
    assert answer == {"batchItemFailures": []}  # an object that cannot run is a failed job, never a retried message
    source = f"s3://{api.aws.bucket}/{key}"
    status, page = answered(listing({"source": source}))
    assert [job["source"] for job in page["jobs"]] == [source], page
    return [job["id"] for job in page["jobs"]]


def listing(query: dict[str, str]) -> dict[str, Any]:
    event = to_event("GET", "/v1/jobs", HEADERS, None)
    event["queryStringParameters"] = query
    return event


_objects = itertools.count()  # each example's intake object is a new one (its key, sequencer, message)


@settings(FUZZ, max_examples=25)  # each example is three submits, their GETs and pages: kept short for CI
@given(data=st.data(), task=st.sampled_from(sorted(TEMPLATES)), mode=st.sampled_from(["async", "auto"]))
def test_every_way_an_input_arrives_stores_only_jobs_that_render_and_refuses_alike(api, intake_env, data, task, mode):
    template, places = TEMPLATES[task]
    if data.draw(st.integers(0, 4), label="anywhere") == 4:  # a fifth: the whole input arbitrary (not 0: the
        # simplest draw, which Hypothesis favours)
        document = dumps(data.draw(documents, label="input"))
    else:
        path = data.draw(st.sampled_from(places), label="path")
        # Three in four values odd but storable (so that most examples store jobs to render), the rest hostile.
        value = data.draw(st.one_of(odd, odd, odd, hostile), label="value")
        document = dumps(put(template, path, value))

    n = next(_objects)
    made = {way: arrive(api, way, task, mode, document, n) for way in WAYS}

    for job_id in [job_id for ids in made.values() for job_id in ids]:
        status, view = answered(to_event("GET", f"/v1/jobs/{job_id}", HEADERS, None))
        assert status == 200 and view["id"] == job_id
        status, _ = answered(to_event("GET", f"/v1/jobs/{job_id}/deliveries", HEADERS, None))
        assert status == 200
    # The newest page renders with this example's jobs on it (newest first). A short page: moto copies every item
    # of a page in full, and the examples' stored inputs are up to 70 KB each (a page of 100 was 60 % of this test).
    status, page = answered(listing({"limit": "10"}))
    assert status == 200 and {job_id for ids in made.values() for job_id in ids} <= {job["id"] for job in page["jobs"]}

    # One parser, one verdict: a body refused is an upload refused (one the router reads: a large one is read by
    # a worker) and an intake object (of a task that takes JSON) that becomes a failed job, saying why.
    accepted = bool(made["body"])
    event(f"body {'accepted' if accepted else 'refused'}")  # --hypothesis-show-statistics
    if len(document.encode("utf-8", "surrogatepass")) <= INLINE_INPUT_LIMIT:
        assert bool(made["upload"]) == accepted, document[:300]
    [intake_job] = made["intake"]
    if task in TEXT_TASKS:  # the object's bytes are the invoice's text, not a JSON document
        return
    status, view = answered(to_event("GET", f"/v1/jobs/{intake_job}", HEADERS, None))
    assert (view.get("error", {}).get("type") == "intake_rejected") == (not accepted), (view, document[:300])


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(("value", "where"), [
    ('{"": 1}', 'input.tools[0].input_schema[""]'),
    ('"\\ud800"', "input.tools[0].input_schema"),
    ("1e400", "input.tools[0].input_schema"),
    ("5e-324", "input.tools[0].input_schema"),
    ("12345678901234567890123456789012345678901", "input.tools[0].input_schema"),
    ("NaN", "input.tools[0].input_schema"),
])
def test_what_a_body_may_not_carry_an_upload_and_an_intake_object_may_not_either(api, intake_env, way, value, where):
    document = ('{"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], '
                '"tools": [{"name": "t", "input_schema": ' + value + "}]}")
    if way == "intake":
        [job_id] = arrive(api, way, "claude.messages", "async", document, 10_000 + len(value))
        status, job = answered(to_event("GET", f"/v1/jobs/{job_id}", HEADERS, None))
        assert job["status"] == "failed" and job["error"]["type"] == "intake_rejected"
        assert where in job["error"]["message"], job["error"]  # the one parser's words, the place named
        return
    if way == "body":
        event = to_event("POST", "/v1/jobs", HEADERS, '{"task": "claude.messages", "input": ' + document + "}")
    else:
        event = to_event("POST", "/v1/jobs", HEADERS, json.dumps(
            {"task": "claude.messages", "input_upload": _uploaded(api, document.encode())}))
    status, body = answered(event)
    assert status in (400, 422), body
    error = body["error"]
    assert error["field"] == ("input_upload" if way == "upload" else where) and where in error["message"], error
    assert api.clients.table.scan(Select="COUNT")["Count"] == 0  # refused whole: nothing recorded
