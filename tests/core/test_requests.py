"""The POST /v1/jobs envelope: malformed bodies and invalid fields are named."""

import pytest

from jobcore.errors import BadRequestError, InvalidInputError
from jobcore.model import Mode
from jobcore.requests import parse_json, parse_submit


@pytest.mark.parametrize("body", [None, "", "{bad", "[1,"])
def test_malformed_json_is_a_bad_request(body):
    with pytest.raises(BadRequestError):
        parse_json(body)


@pytest.mark.parametrize(("body", "field"), [
    ([], "body"),
    ({"input": {}}, "task"),
    ({"task": 3, "input": {}}, "task"),
    ({"task": "t"}, "input"),
    ({"task": "t", "input": {}, "mode": "later"}, "mode"),
    ({"task": "t", "input": {}, "colour": "red"}, "colour"),
    ({"task": "t", "input": {}, "hints": {"expected_duration_s": -1}}, "hints.expected_duration_s"),
    ({"task": "t", "input": {}, "hints": {"memory_mb": 64}}, "hints.memory_mb"),
    ({"task": "t", "input": {}, "hints": {"gpu": True}}, "hints.gpu"),
    ({"task": "t", "input": {}, "webhook": {"url": "http://example.com/h"}}, "webhook.url"),
    ({"task": "t", "input": {}, "webhook": {"url": "ftp://example.com/h"}}, "webhook.url"),
    ({"task": "t", "input": {}, "webhook": {"url": "https://example.com/h", "events": ["done"]}}, "webhook.events"),
    ({"task": "t", "input": {}, "metadata": {"k": 1}}, "metadata.k"),
])
def test_invalid_fields_are_named(body, field):
    with pytest.raises(InvalidInputError) as caught:
        parse_submit(body)
    assert caught.value.field == field


def test_a_full_request_parses():
    request = parse_submit({
        "task": "invoice.extract", "input": {"text": "x"}, "mode": "async",
        "hints": {"expected_duration_s": 3, "memory_mb": 512},
        "webhook": {"url": "https://example.com/h", "events": ["failed"]}, "metadata": {"order": "42"},
    })
    assert request.mode is Mode.ASYNC and request.hints.memory_mb == 512
    assert request.webhook.events == ("failed",) and request.metadata == {"order": "42"}


def test_plain_http_webhooks_only_when_allowed():
    request = parse_submit({"task": "t", "input": {}, "webhook": {"url": "http://127.0.0.1:9/h"}}, allow_http_webhooks=True)
    assert request.webhook.url == "http://127.0.0.1:9/h"
