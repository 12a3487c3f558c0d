"""The POST /v1/jobs envelope: malformed bodies and invalid fields are named."""

import base64
import json

import pytest

from jobcore.errors import BadRequestError, InvalidInputError
from jobcore.limits import MAX_METADATA_KEY_CHARS, MAX_METADATA_KEYS, MAX_METADATA_VALUE_CHARS
from jobcore.model import Mode
from jobcore.queries import decode_cursor
from jobcore.requests import parse_json, parse_list_query, parse_submit
from jobcore.validation import field_path, quoted


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
    ({"task": "t", "input": {}, "webhook": {"url": "https://example.com/h", "events": ["done"]}}, "webhook.events[0]"),
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


# --- webhook URLs: malformed, or never deliverable, is 422 naming webhook.url ---------------------

def submit_with_webhook(webhook, **kwargs):
    return parse_submit({"task": "t", "input": {}, "webhook": webhook}, **kwargs)


@pytest.mark.parametrize(("url", "why"), [
    ("https://[::1", "not a valid URL"),
    ("https://[zz::1]/", "not a valid"),
    ("https://[example.com]/", "not a valid"),
    ("https://example.com:99999/h", "invalid port"),
    ("https://example.com:abc/h", "invalid port"),
    ("https://example.com:0/h", "invalid port"),
    ("https://example.com:+443/h", "invalid port"),
    ("https://user:pw@example.com/h", "user name or password"),
    ("https://user@example.com/h", "user name or password"),
    ("https:///h", "absolute https URL"),
    ("https://:443/h", "must name a host"),
    ("https://example.com/" + "a" * 2_048, "at most 2,048 characters"),
    ("https://exa mple.com/h", "printable ASCII"),
    ("https://bücher.example/h", "printable ASCII"),
    ("https://999.1.1.1/h", "not a valid IPv4"),
    ("https://a..b/h", "not a valid host name"),
    ("//example.com/h", "absolute https URL"),
])
def test_a_malformed_webhook_url_is_422_naming_it(url, why):
    with pytest.raises(InvalidInputError, match=why) as raised:
        submit_with_webhook({"url": url})
    assert raised.value.field == "webhook.url"
    assert len(str(raised.value)) < 300  # the URL is never echoed


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/h", "https://localhost:8443/h", "https://hooks.localhost/h", "https://[::1]/h",
    "https://169.254.169.254/latest/meta-data", "https://[fd00:ec2::254]/", "https://10.0.0.5/h", "https://192.168.1.1/h",
    "https://172.20.0.1/h", "https://100.64.0.1/h", "https://0.0.0.0/h", "https://[::]/h", "https://224.0.0.1/h",
    "https://[fe80::1%25eth0]/h", "https://[::ffff:127.0.0.1]/h", "https://[::ffff:169.254.169.254]/h", "https://[::127.0.0.1]/h",
    "https://[64:ff9b::7f00:1]/h", "https://[64:ff9b:1::1]/h", "https://[2002:a9fe:a9fe::]/h", "https://[2001::1]/h",
    "https://2130706433/h", "https://0x7f.1/h", "https://017700000001/h", "https://127.1/h",
    "https://metadata.google.internal/computeMetadata/v1/", "https://instance-data/latest", "https://printer.local/h",
    "https://receiver/h",
])
def test_a_webhook_url_that_can_never_be_delivered_in_aws_is_422(url):
    with pytest.raises(InvalidInputError, match="never be delivered") as raised:
        submit_with_webhook({"url": url})
    assert raised.value.field == "webhook.url"


@pytest.mark.parametrize("url", [
    "https://example.com/h", "https://hooks.example.com:8443/a/b?c=d", "https://8.8.8.8/h", "https://[2606:4700::1111]/h",
    "https://[::ffff:8.8.8.8]/h", "https://xn--bcher-kva.example.org/h", "https://example.com./h",
])
def test_public_https_webhook_urls_are_accepted(url):
    assert submit_with_webhook({"url": url}).webhook.url == url


def test_the_local_runtime_may_use_plain_http_on_loopback_and_nothing_more():
    assert submit_with_webhook({"url": "http://127.0.0.1:9/h"}, allow_http_webhooks=True).webhook.url == "http://127.0.0.1:9/h"
    assert submit_with_webhook({"url": "http://localhost:9/h"}, allow_http_webhooks=True).webhook.url == "http://localhost:9/h"
    for url in ("http://10.0.0.1:9/h", "http://169.254.169.254/", "https://[64:ff9b::7f00:1]/h"):
        with pytest.raises(InvalidInputError, match="never be delivered"):
            submit_with_webhook({"url": url}, allow_http_webhooks=True)


@pytest.mark.parametrize(("events", "field"), [
    ("completed", "webhook.events"),
    ({"completed": True}, "webhook.events"),
    ([], "webhook.events"),
    ([1], "webhook.events[0]"),
    (["failed", None], "webhook.events[1]"),
    (["failed", ["succeeded"]], "webhook.events[1]"),
    (["succeeded", "done"], "webhook.events[1]"),
    (["failed", "failed"], "webhook.events[1]"),
    (["failed", "job.failed"], "webhook.events[1]"),
    (["x" * 10_000], "webhook.events[0]"),
])
def test_wrong_webhook_events_are_422_naming_the_item(events, field):
    with pytest.raises(InvalidInputError) as raised:
        submit_with_webhook({"url": "https://example.com/h", "events": events})
    assert raised.value.field == field and len(str(raised.value)) < 300


def test_webhook_events_are_normalised():
    webhook = submit_with_webhook({"url": "https://example.com/h", "events": ["job.failed", "expired"]}).webhook
    assert webhook.events == ("failed", "expired")


# --- metadata: Stripe's limits, each wrong entry named --------------------------------------------

def submit_with_metadata(metadata):
    return parse_submit({"task": "t", "input": {}, "metadata": metadata})


@pytest.mark.parametrize(("metadata", "field"), [
    ({f"k{i}": "v" for i in range(MAX_METADATA_KEYS + 1)}, "metadata"),
    ({"k" * (MAX_METADATA_KEY_CHARS + 1): "v"}, "metadata.k" + "k" * MAX_METADATA_KEY_CHARS),
    ({"": "v"}, 'metadata[""]'),
    ({"a\nb": "v"}, 'metadata["a\\nb"]'),
    ({"a\x00b": "v"}, 'metadata["a\\u0000b"]'),
    ({"order": 42}, "metadata.order"),
    ({"order": None}, "metadata.order"),
    ({"order": ["a"]}, "metadata.order"),
    ({"order": "x" * (MAX_METADATA_VALUE_CHARS + 1)}, "metadata.order"),
    ({"a key": "x" * (MAX_METADATA_VALUE_CHARS + 1)}, 'metadata["a key"]'),
    ("order=42", "metadata"),
])
def test_metadata_beyond_its_limits_is_422_naming_the_key(metadata, field):
    with pytest.raises(InvalidInputError) as raised:
        submit_with_metadata(metadata)
    assert raised.value.field == field


def test_metadata_at_its_limits_is_accepted():
    metadata = {f"{i:02d}" + "k" * (MAX_METADATA_KEY_CHARS - 2): "\U0001F600" * MAX_METADATA_VALUE_CHARS for i in range(MAX_METADATA_KEYS)}
    assert submit_with_metadata(metadata).metadata == metadata


def test_a_huge_metadata_key_is_quoted_bounded_in_the_field_and_the_message():
    with pytest.raises(InvalidInputError) as raised:
        submit_with_metadata({"k" * 100_000: "v"})
    assert len(raised.value.field) < 120 and "(100000 characters)" in raised.value.field
    assert len(str(raised.value)) < 300


# --- what errors echo is bounded -----------------------------------------------------------------

@pytest.mark.parametrize("echoed", ["x" * 100_000, "\ud800" * 1_000, "a\nb" * 10_000])
def test_unknown_fields_and_query_parameters_are_named_bounded(echoed):
    for call in (lambda: parse_submit({"task": "t", "input": {}, echoed: 1}), lambda: parse_list_query({echoed: "1"})):
        with pytest.raises(InvalidInputError) as raised:
            call()
        assert len(str(raised.value)) < 400 and len(raised.value.field) < 120


def test_quoted_bounds_and_escapes():
    assert quoted("abc") == '"abc"'
    assert quoted("x" * 65) == '"' + "x" * 64 + '…" (65 characters)'
    assert quoted("\ud800") == '"\\ud800"' and quoted("é") == '"é"'
    assert field_path("metadata", "order_id") == "metadata.order_id"
    assert field_path("metadata", "a.b") == 'metadata["a.b"]' and field_path("", "x y") == 'body["x y"]'


@pytest.mark.parametrize("cursor", [
    "x" * 10_000,
    base64.urlsafe_b64encode(json.dumps([10**40, "job_1"]).encode()).decode(),
    base64.urlsafe_b64encode(json.dumps([-1, "job_1"]).encode()).decode(),
    base64.urlsafe_b64encode(json.dumps([1, "../etc"]).encode()).decode(),
    base64.urlsafe_b64encode(b"[" * 5_000).decode(),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    "é",
])
def test_a_cursor_this_api_did_not_make_is_422(cursor):
    with pytest.raises(InvalidInputError) as raised:
        decode_cursor(cursor)
    assert raised.value.field == "cursor"
