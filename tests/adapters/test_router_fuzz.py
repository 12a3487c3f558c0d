"""Property: whatever a client sends, the router answers below 500, and every 4xx in the API's error shape.

Hypothesis generates arbitrary JSON (nested objects and lists, integers past 38 digits, floats with
inf and NaN, number literals Python would turn into infinity, text with lone surrogates and control
characters, long strings), deep nesting, bytes that are not UTF-8, and query strings, and feeds them
to the router handler over moto as API Gateway would: as the body of ``POST /v1/jobs``, as the input
of each task of the catalogue (with arbitrary envelope fields), and as ``GET /v1/jobs``'s query.

Deterministic (``derandomize``, no example database) and bounded, so CI is stable and quick.
"""

# ruff: noqa: F811  (the api fixture, imported, is a parameter here)

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jobcore.tasks import CATALOGUE
from local.gateway import to_event
from tests.adapters.test_router_handler import KEY, Api, Reply, api, router_env  # noqa: F401  (fixtures)

FUZZ = settings(
    derandomize=True, database=None, deadline=None, max_examples=200, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
HEADERS = {"x-api-key": KEY, "content-type": "application/json"}
ERROR_KEYS = {"type", "message", "field", "status"}


class Literal:
    """A number written as JSON text exactly (``1e400``, 60 digits): json.dumps could not produce it."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


any_text = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=12),  # surrogates and control characters too
    st.sampled_from(["", "task", "input", "messages", "role", "content", "user", "type", "text", "url", "events",
                     "https://example.com/h", "http://127.0.0.1:9/h", "\ud800", "claude.messages", "completed"]),
    st.builds(lambda c, n: c * n, st.characters(exclude_categories=()), st.integers(0, 70_000)),  # long strings
)
numbers = st.one_of(
    st.integers(min_value=-(10**45), max_value=10**45),
    st.floats(allow_nan=True, allow_infinity=True),
    st.from_regex(r"-?(0|[1-9][0-9]{0,45})(\.[0-9]{1,45})?([eE][+-]?[0-9]{1,3})?", fullmatch=True).map(Literal),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text)
documents = st.recursive(
    scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=25,
)


def dumps(value: Any) -> str:
    """JSON text, with NaN/Infinity as Python writes them, lone surrogates escaped, Literals verbatim."""
    if isinstance(value, Literal):
        return value.text
    if isinstance(value, list):
        return "[" + ", ".join(dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(key)}: {dumps(item)}" for key, item in value.items()) + "}"
    return json.dumps(value, allow_nan=True)


def nested(depth: int) -> str:
    return '{"task": "claude.messages", "input": ' + "[" * depth + "]" * depth + "}"


bodies = st.one_of(
    documents.map(dumps),
    st.integers(1, 60_000).map(nested),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=50),  # anything at all, JSON or not
)
envelopes = st.fixed_dictionaries({"task": st.sampled_from(sorted(CATALOGUE))}, optional={
    "mode": st.one_of(st.sampled_from(["auto", "sync", "async", "batch"]), documents),
    "hints": documents, "metadata": documents, "max_queue_s": st.one_of(numbers, documents),
    "input_upload": st.one_of(any_text, documents),
    "webhook": st.one_of(documents, st.fixed_dictionaries({"url": any_text}, optional={"events": documents})),
})


def assert_answered(reply: Reply) -> None:
    event(f"{reply.status} {reply.body['error']['type'] if reply.status >= 400 else 'ok'}")  # --hypothesis-show-statistics
    assert reply.status < 500, reply.body
    if reply.status >= 400:
        error = reply.body["error"]
        assert set(error) <= ERROR_KEYS, error
        assert isinstance(error["type"], str) and error["type"] and isinstance(error["message"], str) and error["message"]
        assert isinstance(error.get("field", ""), str)
        assert len(error["message"]) < 1_000, error  # nothing the client sent is echoed whole


def post(api: Api, body: str | bytes) -> Reply:
    return api.send(to_event("POST", "/v1/jobs", HEADERS, body))


@FUZZ
@given(body=bodies)
def test_any_body_for_post_jobs_is_answered_below_500(api, body):
    assert_answered(post(api, body))


@FUZZ
@given(envelope=envelopes, task_input=documents)
def test_any_input_for_every_task_is_answered_below_500(api, envelope, task_input):
    assert_answered(post(api, dumps({**envelope, "input": task_input})))


@FUZZ
@given(raw=st.binary(max_size=64))
def test_any_bytes_for_post_jobs_are_answered_below_500(api, raw):
    assert_answered(post(api, raw))


@FUZZ
@given(body=st.one_of(bodies, st.fixed_dictionaries({}, optional={
    "content_type": st.one_of(st.sampled_from(["application/json", "text/plain"]), documents),
    "size": st.one_of(numbers, documents)}).map(dumps)))
def test_any_body_for_post_uploads_is_answered_below_500(api, body):
    assert_answered(api.send(to_event("POST", "/v1/uploads", HEADERS, body)))


@FUZZ
@given(query=st.dictionaries(st.one_of(any_text, st.sampled_from(["status", "limit", "cursor", "source"])), any_text,
                             max_size=4), job_id=any_text)
def test_any_query_string_is_answered_below_500(api, query, job_id):
    listing = to_event("GET", "/v1/jobs", HEADERS, None)
    listing["queryStringParameters"] = query or None
    assert_answered(api.send(listing))
    one = to_event("GET", "/v1/jobs/job_1", HEADERS, None)
    one.update(queryStringParameters=query or None, pathParameters={"id": job_id})
    assert_answered(api.send(one))


# A valid input per task, and the places in it to put arbitrary JSON: near-valid requests get past the
# first checks, so they exercise each task's own validation and, when they pass, the run itself.
TEMPLATES: dict[str, tuple[dict[str, Any], list[tuple[str | int, ...]]]] = {
    "claude.messages": ({"max_tokens": 10, "messages": [{"role": "user", "content": "Name one AWS region."}]}, [
        ("model",), ("system",), ("stop_sequences",), ("tools",), ("tool_choice",), ("metadata",), ("metadata", "user_id"),
        ("max_tokens",), ("messages",), ("messages", 0, "content"), ("messages", 0, "role"), ("temperature",),
        ("messages", 0, "blocks"),
    ]),
    "invoice.extract": ({"text": "Invoice INV-1 from Acme, total 10 USD."}, [("text",)]),
    "documents.summarize": ({"documents": [{"id": "a", "text": "First."}]}, [
        ("documents",), ("max_words",), ("instructions",), ("documents", 0, "id"), ("documents", 0, "text"),
    ]),
    "embeddings.encode": ({"texts": ["one"]}, [("texts",), ("normalize",), ("max_length",), ("batch_size",), ("format",)]),
}


# Arbitrary JSON, and the shapes fields usually have (text, lists of text, small numbers), so that some
# of the strange values get past validation and run.
near_values = st.one_of(documents, any_text, st.lists(any_text, max_size=3), st.integers(-5, 200_000),
                        st.lists(st.fixed_dictionaries({"type": any_text, "text": any_text}), max_size=2))


def put(document: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    *parents, last = path
    target: Any = changed
    for step in parents:
        target = target.setdefault(step, {}) if isinstance(step, str) else target[step]
    if last == "blocks":  # the content as a list of blocks, one of them arbitrary
        target["content"] = [{"type": "text", "text": "hi"}, value]
    else:
        target[last] = value
    return changed


@FUZZ
@given(data=st.data(), mode=st.sampled_from(["auto", "async"]))
def test_a_near_valid_input_is_refused_at_submission_or_runs_without_the_model_refusing_it(api, data, mode):
    """What submission accepts must not fail later: an inline run (the anthropic SDK against the stand-in)
    never ends ``model_rejected`` because of a field the task let through (an answer the task finds
    wrong, ``invalid_output``, is the model's doing, not the request's)."""
    task = data.draw(st.sampled_from(sorted(TEMPLATES)), label="task")
    template, places = TEMPLATES[task]
    path = data.draw(st.sampled_from(places), label="path")
    task_input = put(template, path, data.draw(near_values, label="value"))

    reply = post(api, dumps({"task": task, "mode": mode, "input": task_input}))

    assert_answered(reply)
    if reply.status == 200 and reply.body["status"] == "failed":
        assert reply.body["error"]["type"] != "model_rejected", reply.body["error"]
