"""The Claude stand-in, exercised through the real ``anthropic`` SDK (and raw HTTP where the SDK
would refuse to send the request), so the offline pipeline tests can trust what it imitates."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anthropic
import pytest

from local.claude_standin import ClaudeStandIn, extract_invoice, placeholder_input

SAMPLES = Path(__file__).resolve().parents[2] / "local" / "samples"
MODEL = "claude-test"
HELLO = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. It was not amused."}]
RECORD_INVOICE = {
    "name": "record_invoice",
    "description": "Record the invoice's fields.",
    "input_schema": {"type": "object", "properties": {}, "required": []},
}

ACME = {
    "vendor": "Acme Corporation",
    "invoice_number": "INV-2024-0042",
    "invoice_date": "2024-03-01",
    "due_date": "2024-03-31",
    "currency": "USD",
    "line_items": [
        {"description": "Anvil, heavy duty", "quantity": 2, "unit_price": 149.99, "amount": 299.98},
        {"description": "Rocket-powered roller skates", "quantity": 1, "unit_price": 299.0, "amount": 299.0},
        {"description": "Giant horseshoe magnet", "quantity": 3, "unit_price": 45.5, "amount": 136.5},
        {"description": "Portable hole (6 ft)", "quantity": 4, "unit_price": 12.25, "amount": 49.0},
    ],
    "subtotal": 784.48,
    "tax": 64.72,
    "total": 849.2,
}
GLOBEX = {
    "vendor": "Globex GmbH",
    "invoice_number": "GX-7781",
    "invoice_date": "2024-03-01",
    "due_date": "2024-03-31",
    "currency": "EUR",
    "line_items": [
        {"description": "Consulting services (hours)", "quantity": 12, "unit_price": 95.0, "amount": 1140.0},
        {"description": "Server rack rental (monthly)", "quantity": 1, "unit_price": 450.0, "amount": 450.0},
        {"description": "SSL certificate renewal", "quantity": 2, "unit_price": 79.9, "amount": 159.8},
        {"description": "On-site support visit", "quantity": 1, "unit_price": 250.0, "amount": 250.0},
    ],
    "subtotal": 1999.8,
    "tax": 379.96,
    "total": 2379.76,
}


_clients: list[anthropic.Anthropic] = []


@pytest.fixture
def standin():
    with ClaudeStandIn() as server:
        yield server


@pytest.fixture(autouse=True)
def close_clients():
    """Close every SDK client a test made, so no keep-alive socket outlives it."""
    yield
    while _clients:
        _clients.pop().close()


def client(server: ClaudeStandIn | str, **options: Any) -> anthropic.Anthropic:
    """An SDK client for the stand-in (or a base URL); no retries unless asked, so errors surface."""
    base_url = server if isinstance(server, str) else server.base_url
    _clients.append(anthropic.Anthropic(**{"api_key": "test-key", "base_url": base_url, "max_retries": 0, **options}))
    return _clients[-1]


def http(server: ClaudeStandIn, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """A raw request, for what the SDK will not send (no key, missing fields) and for the control API."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.base_url + path, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def hello(server: ClaudeStandIn, **options: Any) -> anthropic.types.Message:
    return client(server, **options).messages.create(model=MODEL, max_tokens=100, messages=HELLO)


# --- answers -----------------------------------------------------------------------------------

def test_text_reply_summarises_last_user_message_with_usage(standin):
    message = client(standin).messages.create(model=MODEL, max_tokens=100, system="Be brief.", messages=HELLO)

    text = "Summary: The quick brown fox jumps over the lazy dog."
    assert message.content[0].type == "text" and message.content[0].text == text
    assert (message.model, message.role, message.stop_reason) == (MODEL, "assistant", "end_turn")
    assert message.id.startswith("msg_")
    assert message.usage.input_tokens == math.ceil(len("Be brief." + HELLO[0]["content"]) / 4)
    assert message.usage.output_tokens == math.ceil(len(text) / 4)


def test_same_body_same_answer_other_body_other_id(standin):
    first, second = hello(standin), hello(standin)
    other = client(standin).messages.create(model=MODEL, max_tokens=101, messages=HELLO)

    assert first.model_dump() == second.model_dump()
    assert other.id != first.id


def test_text_reply_is_cut_to_max_tokens(standin):
    message = client(standin).messages.create(model=MODEL, max_tokens=2, messages=HELLO)

    assert message.content[0].text == "Summary:"
    assert (message.stop_reason, message.usage.output_tokens) == ("max_tokens", 2)


def test_summary_keeps_at_most_forty_words(standin):
    words = " ".join(f"w{i}" for i in range(60))
    message = client(standin).messages.create(model=MODEL, max_tokens=500, messages=[{"role": "user", "content": words}])

    assert message.content[0].text == "Summary: " + " ".join(f"w{i}" for i in range(40))


@pytest.mark.parametrize("sample, expected", [("invoice_acme.txt", ACME), ("invoice_globex.txt", GLOBEX)])
def test_forced_record_invoice_extracts_sample(standin, sample, expected):
    text = (SAMPLES / sample).read_text()
    message = client(standin).messages.create(
        model=MODEL, max_tokens=2048, tools=[RECORD_INVOICE], tool_choice={"type": "tool", "name": "record_invoice"},
        messages=[{"role": "user", "content": text}],
    )

    (block,) = message.content
    assert (block.type, block.name, message.stop_reason) == ("tool_use", "record_invoice", "tool_use")
    assert block.id.startswith("toolu_")
    assert block.input == expected
    assert message.usage.output_tokens == math.ceil(len(json.dumps(expected)) / 4)


def test_tool_choice_any_uses_first_tool_with_schema_placeholders(standin):
    tool = {
        "name": "classify",
        "input_schema": {
            "type": "object",
            "properties": {
                "label": {"type": "string"}, "score": {"type": "number"}, "tags": {"type": "array"},
                "meta": {"type": "object"}, "note": {"type": ["string", "null"]}, "kind": {"enum": ["a", "b"]},
                "optional": {"type": "string"},
            },
            "required": ["label", "score", "tags", "meta", "note", "kind"],
        },
    }
    message = client(standin).messages.create(
        model=MODEL, max_tokens=100, tools=[tool, RECORD_INVOICE], tool_choice={"type": "any"}, messages=HELLO,
    )

    assert message.content[0].name == "classify"
    assert message.content[0].input == {"label": "", "score": 0, "tags": [], "meta": {}, "note": None, "kind": "a"}


def test_auto_tool_choice_answers_in_text(standin):
    message = client(standin).messages.create(model=MODEL, max_tokens=100, tools=[RECORD_INVOICE], messages=HELLO)

    assert message.content[0].type == "text"


def test_invoice_parser_is_forgiving():
    text = """Please read this: <invoice>
TAX INVOICE
Vendor: Initrode Ltd
Invoice #1001    Date: 5th February 2024
| Item | Qty | Price | Total |
|------|-----|-------|-------|
| Tax consulting | 1.5 | £200.00 | £300.00 |
Filing fee    1 x 50
</invoice>"""

    assert extract_invoice(text) == {
        "vendor": "Initrode Ltd", "invoice_number": "1001", "invoice_date": "2024-02-05", "due_date": None,
        "currency": "GBP",
        "line_items": [
            {"description": "Tax consulting", "quantity": 1.5, "unit_price": 200.0, "amount": 300.0},
            {"description": "Filing fee", "quantity": 1, "unit_price": 50.0, "amount": 50.0},
        ],
        "subtotal": 350.0, "tax": 0.0, "total": 350.0,
    }


@pytest.mark.parametrize("currency, expected", [("USD", "2024-02-03"), ("EUR", "2024-03-02")])
def test_ambiguous_numeric_dates_follow_the_currency(currency, expected):
    assert extract_invoice(f"Hooli\nCurrency: {currency}\nDate: 02/03/2024")["invoice_date"] == expected


def test_placeholder_for_nullable_any_of():
    schema = {"properties": {"x": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}, "required": ["x"]}
    assert placeholder_input(schema) == {"x": None}


# --- errors --------------------------------------------------------------------------------------

def test_429_is_rate_limit_error_with_retry_after(standin):
    standin.configure(fail_status=429)

    with pytest.raises(anthropic.RateLimitError) as caught:
        hello(standin)

    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.body["error"]["type"] == "rate_limit_error"


def test_529_is_overloaded_error(standin):
    standin.configure(fail_status=529)

    with pytest.raises(anthropic.OverloadedError) as caught:
        hello(standin)

    assert caught.value.status_code == 529
    assert isinstance(caught.value, anthropic.InternalServerError)
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_500_is_internal_server_error(standin):
    standin.configure(fail_status=500)

    with pytest.raises(anthropic.InternalServerError) as caught:
        hello(standin)

    assert type(caught.value) is anthropic.InternalServerError
    assert caught.value.body["error"]["type"] == "api_error"


def test_fail_times_then_recovers_and_sdk_retry_succeeds(standin):
    standin.configure(fail_status=500, fail_times=1)

    assert hello(standin, max_retries=1).content[0].type == "text"
    stats = standin.stats()
    assert (stats["requests"], stats["by_status"]) == (2, {"500": 1, "200": 1})
    assert stats["last_request"]["messages"] == HELLO


def test_fail_without_times_lasts_until_reset(standin):
    standin.configure(fail_status=529)
    for _ in range(2):
        with pytest.raises(anthropic.OverloadedError):
            hello(standin)

    standin.reset()

    assert hello(standin).stop_reason == "end_turn"
    assert standin.stats()["requests"] == 1


def test_hang_times_out_client_and_stop_stays_fast():
    server = ClaudeStandIn().start()
    server.configure(hang_s=30)
    with pytest.raises(anthropic.APITimeoutError):
        hello(server, timeout=0.5)

    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0


def test_latency_delays_every_answer(standin):
    standin.configure(latency_s=0.3)

    started = time.monotonic()
    hello(standin)
    assert time.monotonic() - started >= 0.3


def test_latency_from_constructor_survives_reset():
    with ClaudeStandIn(latency_s=0.2) as server:
        server.reset()
        started = time.monotonic()
        hello(server)
        assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("body, field", [
    ({"max_tokens": 10, "messages": HELLO}, "model"),
    ({"model": MODEL, "messages": HELLO}, "max_tokens"),
    ({"model": MODEL, "max_tokens": 0, "messages": HELLO}, "max_tokens"),
    ({"model": MODEL, "max_tokens": 10, "messages": []}, "messages"),
    ({"model": MODEL, "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    ({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"model": MODEL, "max_tokens": 10, "messages": HELLO, "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
])
def test_invalid_request_is_400_naming_the_field(standin, body, field):
    status, payload = http(standin, "/v1/messages", body, {"x-api-key": "k"})

    assert status == 400
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"].startswith(field + ":")


def test_sdk_sees_400_as_bad_request(standin):
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client(standin).messages.create(model=MODEL, max_tokens=0, messages=HELLO)


def test_missing_key_is_401_and_bearer_token_is_accepted(standin):
    body = {"model": MODEL, "max_tokens": 10, "messages": HELLO}

    status, payload = http(standin, "/v1/messages", body)
    assert (status, payload["error"]["type"]) == (401, "authentication_error")
    assert http(standin, "/v1/messages", body, {"authorization": "Bearer t"})[0] == 200
    sdk = client(standin, api_key=None, auth_token="t")
    assert sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO).type == "message"


# --- HTTP control ----------------------------------------------------------------------------

def test_http_control_drives_failures_and_stats(standin):
    status, config = http(standin, "/_standin/control", {"fail": {"status": 529, "times": 1}})
    assert (status, config["fail"]) == (200, {"status": 529, "times": 1})

    with pytest.raises(anthropic.OverloadedError):
        hello(standin)
    assert hello(standin).stop_reason == "end_turn"

    status, stats = http(standin, "/_standin/stats")
    assert (status, stats["requests"], stats["by_status"]) == (200, 2, {"529": 1, "200": 1})
    assert stats["last_request"]["model"] == MODEL

    assert http(standin, "/_standin/reset", {})[0] == 200
    assert http(standin, "/_standin/stats")[1] == {
        "requests": 0, "by_status": {}, "last_request": None, "batches": {"created": 0, "requests": {}},
    }


def test_http_control_latency_and_hang(standin):
    http(standin, "/_standin/control", {"latency_s": 0.2})
    started = time.monotonic()
    hello(standin)
    assert time.monotonic() - started >= 0.2

    http(standin, "/_standin/control", {"latency_s": 0, "hang_s": 30})
    with pytest.raises(anthropic.APITimeoutError):
        hello(standin, timeout=0.5)

    http(standin, "/_standin/control", {"hang_s": None})
    assert hello(standin).stop_reason == "end_turn"


@pytest.mark.parametrize("control", [
    {"fail": {"status": 418}}, {"latency_s": -1}, {"latncy_s": 1}, {"fail": {"status": 429, "times": "x"}},
])
def test_http_control_rejects_bad_settings(standin, control):
    status, payload = http(standin, "/_standin/control", control)

    assert (status, payload["error"]["type"]) == (400, "invalid_request_error")


def test_configure_rejects_times_without_status(standin):
    with pytest.raises(ValueError, match="fail_times"):
        standin.configure(fail_times=1)
    with pytest.raises(ValueError, match="fail_for_s"):
        standin.configure(fail_for_s=1)


def test_a_failure_for_a_duration_fails_every_call_until_it_ends_with_the_retry_after_asked(standin):
    status, config = http(standin, "/_standin/control", {"fail": {"status": 429, "for_s": 0.6, "retry_after": 2}})
    assert status == 200 and config["fail"]["status"] == 429 and 0 < config["fail"]["for_s"] <= 0.6
    assert config["fail"]["retry_after"] == 2

    for _ in range(3):
        with pytest.raises(anthropic.RateLimitError) as caught:
            hello(standin)
        assert caught.value.response.headers["retry-after"] == "2"
    time.sleep(0.6)

    assert hello(standin).stop_reason == "end_turn"  # the storm is over
    assert http(standin, "/_standin/control", {})[1]["fail"] is None
    assert standin.stats()["by_status"] == {"429": 3, "200": 1}


def test_a_529_can_carry_a_retry_after_too(standin):
    standin.configure(fail_status=529, fail_times=1, retry_after=7)
    with pytest.raises(anthropic.OverloadedError) as caught:
        hello(standin)
    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize("fail", [{"status": 429, "for_s": -1}, {"status": 429, "retry_after": "soon"}, {"status": 429, "forever": True}])
def test_http_control_rejects_bad_failure_durations(standin, fail):
    assert http(standin, "/_standin/control", {"fail": fail})[0] == 400


# --- CLI -------------------------------------------------------------------------------------

def test_cli_prints_base_url_serves_and_stops_on_ctrl_c():
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-m", "local.claude_standin", "--port", "0", "--latency", "0.1"],
        cwd=root, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)},
    ) as process:
        try:
            base_url = process.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")
            assert client(base_url).messages.create(model=MODEL, max_tokens=10, messages=HELLO).type == "message"
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=5) == 0
