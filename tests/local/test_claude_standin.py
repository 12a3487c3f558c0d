"""The Claude stand-in, exercised through the real ``anthropic`` SDK (and raw HTTP where the SDK
would refuse to send the request), so the offline pipeline tests can trust what it imitates."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
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
        "requests": 0, "by_status": {}, "last_request": None, "batches": {"created": 0, "requests": {}}, "limits": None,
        "bedrock": {"requests": 0, "by_status": {}, "last_request": None},
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


def test_a_release_answers_the_calls_waiting_now_and_later_calls_wait_as_configured(standin):
    """``{"release": true}`` ends the waits of the calls in progress (a 30 s latency, a 30 s hang): both answer at
    once; a call arriving after it waits out the latency again."""
    http(standin, "/_standin/control", {"latency_s": 30})
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(hello, standin)
        deadline = time.monotonic() + 5
        while standin.stats()["requests"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        http(standin, "/_standin/control", {"latency_s": 0, "hang_s": 30})
        hung = pool.submit(hello, standin)
        while standin.stats()["requests"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        assert http(standin, "/_standin/control", {"hang_s": None, "latency_s": 0.3, "release": True})[0] == 200
        assert slow.result(timeout=10).stop_reason == "end_turn"
        assert hung.result(timeout=10).stop_reason == "end_turn"
    assert time.monotonic() - started < 5  # not the 30 s either waited for
    started = time.monotonic()
    hello(standin)
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("control", [
    {"fail": {"status": 418}}, {"latency_s": -1}, {"latncy_s": 1}, {"fail": {"status": 429, "times": "x"}},
    {"release": "yes"},
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
        # As from a terminal: pytest-xdist's workers ignore SIGINT, and an ignored signal stays ignored in a
        # child, so Python would install no KeyboardInterrupt handler there.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as process:
        try:
            base_url = process.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")
            assert client(base_url).messages.create(model=MODEL, max_tokens=10, messages=HELLO).type == "message"
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=5) == 0


# --- Message Batches ---------------------------------------------------------------------------

class Clock:
    """A wall clock a test moves by hand (the stand-in's ``clock``), so nothing has to sleep."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def clocked(clock):
    with ClaudeStandIn(clock=clock) as server:
        yield server


def params(text: str = "Batches are cheaper. They take longer.", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": text}], **extra}


def requests_for(*custom_ids: str) -> list[dict[str, Any]]:
    return [{"custom_id": custom_id, "params": params(f"Request {custom_id}. Ignored.")} for custom_id in custom_ids]


def results(server: ClaudeStandIn, batch_id: str) -> dict[str, Any]:
    return {line.custom_id: line.result for line in client(server).messages.batches.results(batch_id)}


def test_batch_is_in_progress_until_its_delay_then_ends_with_messages_like_direct_calls(clocked, clock):
    invoice = (SAMPLES / "invoice_acme.txt").read_text()
    tool_params = params(invoice, max_tokens=2048, tools=[RECORD_INVOICE], tool_choice={"type": "tool", "name": "record_invoice"})
    sdk = client(clocked)
    batch = sdk.messages.batches.create(requests=[
        {"custom_id": "text", "params": params()},
        {"custom_id": "invoice", "params": tool_params},
        {"custom_id": "bad", "params": params(max_tokens=0)},
    ])

    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert (batch.processing_status, batch.results_url, batch.ended_at, batch.cancel_initiated_at) == ("in_progress", None, None, None)
    assert batch.request_counts.model_dump() == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert batch.created_at.timestamp() == clock.now and (batch.expires_at - batch.created_at).total_seconds() == 24 * 3600
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        sdk.messages.batches.results(batch.id)

    clock.advance(0.9)
    assert sdk.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    clock.advance(0.1)
    ended = sdk.messages.batches.retrieve(batch.id)

    assert ended.processing_status == "ended" and ended.ended_at == batch.created_at + dt.timedelta(seconds=1)
    assert ended.request_counts.model_dump() == {"processing": 0, "succeeded": 2, "errored": 1, "canceled": 0, "expired": 0}
    assert ended.results_url == f"{clocked.base_url}/v1/messages/batches/{batch.id}/results"
    got = results(clocked, batch.id)
    assert list(got) == ["text", "invoice", "bad"]
    direct = sdk.messages.create(**params())
    assert got["text"].type == "succeeded"
    assert got["text"].message.content == direct.content and got["text"].message.stop_reason == "end_turn"
    usage = got["text"].message.usage
    assert (usage.input_tokens, usage.output_tokens, usage.service_tier) == (direct.usage.input_tokens, direct.usage.output_tokens, "batch")
    assert got["invoice"].message.content[0].input == ACME
    assert got["bad"].type == "errored" and got["bad"].error.type == "error"
    assert got["bad"].error.error.type == "invalid_request_error" and got["bad"].error.error.message.startswith("max_tokens:")


def test_batch_ends_by_itself_with_the_real_clock():
    with ClaudeStandIn(batch_delay_s=0.3) as server:
        sdk = client(server)
        started = time.monotonic()
        batch = sdk.messages.batches.create(requests=requests_for("a", "b"))
        assert batch.processing_status == "in_progress"
        while sdk.messages.batches.retrieve(batch.id).processing_status != "ended":
            assert time.monotonic() - started < 3
            time.sleep(0.05)
        assert time.monotonic() - started >= 0.3
        assert {r.type for r in results(server, batch.id).values()} == {"succeeded"}


def test_batch_fail_rules_make_requests_errored_or_expired(clocked, clock):
    clocked.configure(batch_fail=[
        {"custom_id": "^flaky", "error_type": "overloaded_error"},
        {"index": 1, "result": "expired"},
    ])
    batch = client(clocked).messages.batches.create(requests=requests_for("ok-0", "ok-1", "flaky-2", "ok-3"))
    clocked.configure(batch_fail=[])  # a batch keeps the rules it was made under
    clock.advance(1)

    got = results(clocked, batch.id)
    assert {custom_id: result.type for custom_id, result in got.items()} == {
        "ok-0": "succeeded", "ok-1": "expired", "flaky-2": "errored", "ok-3": "succeeded",
    }
    assert got["flaky-2"].error.model_dump() == {
        "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": None,
    }
    counts = client(clocked).messages.batches.retrieve(batch.id).request_counts
    assert (counts.succeeded, counts.errored, counts.expired) == (2, 1, 1)


def test_batch_fail_fraction_and_delay_over_the_http_control(standin):
    rule = {"fraction": 0.5, "error_type": "invalid_request_error", "message": "prompt too long"}
    status, config = http(standin, "/_standin/control", {"batch": {"delay_s": 0, "fail": [rule]}})
    assert (status, config["batch"]) == (200, {"delay_s": 0.0, "cancel_delay_s": 0.2, "fail": [{**rule, "result": "errored"}]})

    batch = client(standin).messages.batches.create(requests=requests_for("a", "b", "c", "d"))

    assert batch.processing_status == "ended"  # no delay: done as it is made
    got = results(standin, batch.id)
    assert [got[c].type for c in "abcd"] == ["succeeded", "errored", "succeeded", "errored"]
    assert got["b"].error.error.message == "prompt too long"
    assert http(standin, "/_standin/control", {"batch": {"fail": None}})[1]["batch"]["fail"] is None
    http(standin, "/_standin/reset", {})
    assert http(standin, "/_standin/control", {})[1]["batch"]["delay_s"] == 1.0


@pytest.mark.parametrize("control", [
    {"batch": {"delay_s": -1}}, {"batch": {"fail": [{"index": 0, "fraction": 0.5}]}}, {"batch": {"fail": [{"index": -1}]}},
    {"batch": {"fail": [{"custom_id": "("}]}}, {"batch": {"fail": [{"fraction": 2}]}},
    {"batch": {"fail": [{"index": 0, "result": "canceled"}]}},
    {"batch": {"fail": [{"index": 0, "error_type": "teapot_error"}]}}, {"batch": {"fail": {"index": 0}}}, {"batch": {"dealy_s": 1}},
])
def test_http_control_rejects_bad_batch_settings(standin, control):
    assert http(standin, "/_standin/control", control)[0] == 400


def test_cancel_makes_the_batch_canceling_then_ended_with_unprocessed_requests_canceled(clocked, clock):
    sdk = client(clocked)
    batch = sdk.messages.batches.create(requests=requests_for("r0", "r1", "r2", "r3"))
    clock.advance(0.5)  # r0 (due at 0.25 s) and r1 (0.5 s) are answered; r2 and r3 are not

    canceling = sdk.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at.timestamp() == clock.now
    assert canceling.request_counts.processing == 4 and canceling.results_url is None
    clock.advance(0.1)
    assert sdk.messages.batches.retrieve(batch.id).processing_status == "canceling"
    clock.advance(0.15)
    ended = sdk.messages.batches.retrieve(batch.id)

    assert ended.processing_status == "ended" and ended.ended_at == canceling.cancel_initiated_at + dt.timedelta(seconds=0.2)
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (2, 2)
    assert [r.type for r in results(clocked, batch.id).values()] == ["succeeded", "succeeded", "canceled", "canceled"]
    with pytest.raises(anthropic.BadRequestError, match="ended"):
        sdk.messages.batches.cancel(batch.id)


def test_list_pages_newest_first_with_after_and_before_cursors(clocked):
    sdk = client(clocked)
    ids = [sdk.messages.batches.create(requests=requests_for(f"b{i}")).id for i in range(5)]
    newest_first = ids[::-1]

    page = sdk.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2]
    assert (page.has_more, page.first_id, page.last_id) == (True, newest_first[0], newest_first[1])
    assert [b.id for b in sdk.messages.batches.list(limit=2)] == newest_first  # the SDK follows after_id
    last = sdk.messages.batches.list(limit=2, after_id=newest_first[3])
    assert ([b.id for b in last.data], last.has_more) == ([newest_first[4]], False)
    before = sdk.messages.batches.list(limit=2, before_id=newest_first[3])
    assert ([b.id for b in before.data], before.has_more) == (newest_first[1:3], True)
    assert [b.id for b in sdk.messages.batches.list()] == newest_first  # default limit 20

    for query in ("limit=0", "limit=1001", "limit=x", "after_id=msgbatch_nope", f"after_id={ids[0]}&before_id={ids[1]}"):
        status, payload = http(clocked, "/v1/messages/batches?" + query, headers={"x-api-key": "k"})
        assert (status, payload["error"]["type"]) == (400, "invalid_request_error"), query


def test_delete_needs_an_ended_batch_and_then_it_is_gone(clocked, clock):
    sdk = client(clocked)
    batch = sdk.messages.batches.create(requests=requests_for("a"))
    with pytest.raises(anthropic.BadRequestError, match="in_progress"):
        sdk.messages.batches.delete(batch.id)
    clock.advance(1)

    deleted = sdk.messages.batches.delete(batch.id)

    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk.messages.batches.retrieve(batch.id)
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert sdk.messages.batches.list().data == []


def test_results_are_json_lines_at_the_results_url(clocked, clock):
    batch = client(clocked).messages.batches.create(requests=requests_for("x", "y"))
    clock.advance(1)
    request = urllib.request.Request(f"{clocked.base_url}/v1/messages/batches/{batch.id}/results", headers={"x-api-key": "k"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body, content_type = response.read().decode(), response.headers["content-type"]

    assert content_type == "application/binary"
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["custom_id"] for line in lines] == ["x", "y"]
    assert lines[0]["result"]["type"] == "succeeded" and lines[0]["result"]["message"]["type"] == "message"


def test_results_before_the_end_are_a_400(clocked):
    batch = client(clocked).messages.batches.create(requests=requests_for("x"))
    status, payload = http(clocked, f"/v1/messages/batches/{batch.id}/results", headers={"x-api-key": "k"})
    assert (status, payload["error"]["type"]) == (400, "invalid_request_error")


LONG_ID = "x" * 65


@pytest.mark.parametrize("body, field", [
    ({"requests": []}, "requests"),
    ({}, "requests"),
    ([], "request body"),
    ({"requests": [{"custom_id": "a", "params": params()}, {"custom_id": "a", "params": params()}]}, "requests.1.custom_id"),
    ({"requests": [{"custom_id": "has space", "params": params()}]}, "requests.0.custom_id"),
    ({"requests": [{"custom_id": LONG_ID, "params": params()}]}, "requests.0.custom_id"),
    ({"requests": [{"custom_id": "", "params": params()}]}, "requests.0.custom_id"),
    ({"requests": [{"params": params()}]}, "requests.0.custom_id"),
    ({"requests": [{"custom_id": "a"}]}, "requests.0.params"),
    ({"requests": ["a"]}, "requests.0"),
    ({"requests": [{"custom_id": "a", "params": params(), "extra": 1}]}, "requests.0.extra"),
])
def test_malformed_batch_is_400_naming_the_field(standin, body, field):
    status, payload = http(standin, "/v1/messages/batches", body, {"x-api-key": "k"})

    assert status == 400
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"].startswith(field + ":")
    assert standin.stats()["batches"]["created"] == 0


def test_sdk_sees_a_duplicate_custom_id_as_bad_request(standin):
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id"):
        client(standin).messages.batches.create(requests=requests_for("same", "same"))


@pytest.mark.slow
def test_more_than_100000_requests_is_a_400(standin):
    tiny = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    body = {"requests": [{"custom_id": f"r{i}", "params": tiny} for i in range(100_001)]}
    status, payload = http(standin, "/v1/messages/batches", body, {"x-api-key": "k"})
    assert status == 400 and "100000" in payload["error"]["message"]


def test_a_batch_over_256_mb_is_refused_on_its_declared_size(standin):
    port = int(standin.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/messages/batches HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\ncontent-type: application/json\r\n"
            + f"content-length: {256 * 1024 * 1024 + 1}\r\n\r\n".encode() + b'{"requests": ['
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error"]["type"] == "request_too_large"


def test_batch_endpoints_need_a_key_and_a_known_id(standin):
    assert http(standin, "/v1/messages/batches", {"requests": requests_for("a")})[0] == 401
    assert http(standin, "/v1/messages/batches")[0] == 401
    with pytest.raises(anthropic.NotFoundError):
        client(standin).messages.batches.retrieve("msgbatch_nope")
    with pytest.raises(anthropic.NotFoundError):
        client(standin).messages.batches.cancel("msgbatch_nope")


def test_stats_count_batches_and_their_requests_and_batches_outlive_reset(clocked, clock):
    sdk = client(clocked)
    first = sdk.messages.batches.create(requests=requests_for("a", "b", "c"))
    second = sdk.messages.batches.create(requests=requests_for("d"))

    assert clocked.stats()["batches"] == {"created": 2, "requests": {first.id: 3, second.id: 1}}
    assert clocked.stats()["requests"] == 0  # batch requests are not /v1/messages calls
    clocked.reset()
    clock.advance(1)
    assert clocked.stats()["batches"] == {"created": 0, "requests": {}}
    assert sdk.messages.batches.retrieve(first.id).processing_status == "ended"


# --- prompt caching ----------------------------------------------------------------------------

BIG = "Background for the whole conversation. " * 110  # 4290 characters: 1073 tokens, over Sonnet's 1024
SONNET, HAIKU = "claude-sonnet-test", "claude-haiku-test"


def tokens(*texts: str) -> int:
    return math.ceil(len("".join(texts)) / 4)


def cached_system(text: str = BIG, **control: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral", **control}}]


def ask(server: ClaudeStandIn, model: str = SONNET, question: str = "What now?", **kwargs: Any) -> anthropic.types.Usage:
    kwargs.setdefault("system", cached_system())
    message = client(server).messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": question}], **kwargs)
    return message.usage


def cache(usage: anthropic.types.Usage) -> tuple[int, int, int]:
    return usage.cache_creation_input_tokens, usage.cache_read_input_tokens, usage.input_tokens


def test_first_call_writes_the_prefix_and_the_same_prefix_later_reads_it(clocked):
    first, second = ask(clocked), ask(clocked, question="And then?")

    assert cache(first) == (tokens(BIG), 0, tokens(BIG, "What now?") - tokens(BIG))
    assert first.cache_creation.model_dump() == {"ephemeral_5m_input_tokens": tokens(BIG), "ephemeral_1h_input_tokens": 0}
    assert cache(second) == (0, tokens(BIG), tokens(BIG, "And then?") - tokens(BIG))


def test_no_cache_control_means_no_cache_fields_but_zeros(clocked):
    usage = ask(clocked, system=BIG)
    assert cache(usage) == (0, 0, tokens(BIG, "What now?")) and usage.service_tier == "standard"
    assert cache(ask(clocked, system=BIG)) == (0, 0, tokens(BIG, "What now?"))


def test_a_prefix_below_the_models_minimum_is_not_cached(clocked):
    short = "Be brief. " * 300  # 750 tokens
    assert cache(ask(clocked, system=cached_system(short))) == (0, 0, tokens(short, "What now?"))
    assert cache(ask(clocked, system=cached_system(short))) == (0, 0, tokens(short, "What now?"))
    # Haiku needs 2048 tokens: BIG is enough for Sonnet, not for Haiku.
    assert cache(ask(clocked, model=HAIKU))[:2] == (0, 0)
    assert cache(ask(clocked, model=HAIKU, system=cached_system(BIG * 2)))[0] == tokens(BIG * 2)


def test_a_different_prefix_or_model_does_not_read(clocked):
    ask(clocked)
    assert cache(ask(clocked, system=cached_system(BIG + "!")))[:2] == (tokens(BIG + "!"), 0)
    assert cache(ask(clocked, model="claude-opus-test"))[:2] == (tokens(BIG), 0)


def test_the_5m_ttl_runs_from_the_last_use_and_then_the_prefix_is_written_again(clocked, clock):
    ask(clocked)
    clock.advance(299)
    assert cache(ask(clocked))[:2] == (0, tokens(BIG))  # a read keeps it for another 5 minutes
    clock.advance(299)
    assert cache(ask(clocked))[:2] == (0, tokens(BIG))
    clock.advance(300)
    assert cache(ask(clocked))[:2] == (tokens(BIG), 0)


def test_the_1h_ttl(clocked, clock):
    first = ask(clocked, system=cached_system(ttl="1h"))
    assert first.cache_creation.model_dump() == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": tokens(BIG)}
    clock.advance(3000)
    assert cache(ask(clocked, system=cached_system(ttl="1h")))[:2] == (0, tokens(BIG))
    clock.advance(3601)
    assert cache(ask(clocked, system=cached_system(ttl="1h")))[:2] == (tokens(BIG), 0)


def test_tools_come_first_and_each_breakpoint_caches_its_own_prefix(clocked):
    tool = {**RECORD_INVOICE, "description": BIG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    tools_tokens = tokens("[", json.dumps(tool, sort_keys=True), "]")
    system = cached_system("Rules. " * 200)

    first = ask(clocked, tools=[tool], system=system)
    assert first.cache_creation_input_tokens == tokens("[", json.dumps(tool, sort_keys=True), "]", "Rules. " * 200)
    assert first.cache_creation.ephemeral_1h_input_tokens == tools_tokens
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens - tools_tokens

    other_system = ask(clocked, tools=[tool], system=cached_system("Other rules. " * 200))
    assert other_system.cache_read_input_tokens == tools_tokens  # the tools' prefix is shared
    assert other_system.cache_creation.model_dump() == {
        "ephemeral_5m_input_tokens": tokens("[", json.dumps(tool, sort_keys=True), "]", "Other rules. " * 200) - tools_tokens,
        "ephemeral_1h_input_tokens": 0,
    }


def test_a_growing_conversation_reads_the_previous_turns_prefix(clocked):
    def turn(*texts: str) -> list[dict[str, Any]]:
        messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i, text in enumerate(texts)]
        messages[-1]["content"] = [{"type": "text", "text": texts[-1], "cache_control": {"type": "ephemeral"}}]
        return messages

    sdk = client(clocked)
    one = sdk.messages.create(model=SONNET, max_tokens=50, messages=turn(BIG)).usage
    three = sdk.messages.create(model=SONNET, max_tokens=50, messages=turn(BIG, "Noted.", "Now summarise it.")).usage

    assert cache(one) == (tokens(BIG), 0, 0)  # everything is the cached prefix
    assert cache(three) == (tokens(BIG, "Noted.", "Now summarise it.") - tokens(BIG), tokens(BIG), 0)


def test_top_level_cache_control_marks_the_last_block(clocked):
    first = ask(clocked, system=BIG, cache_control={"type": "ephemeral"})
    assert cache(first) == (tokens(BIG, "What now?"), 0, 0)
    assert cache(ask(clocked, system=BIG, cache_control={"type": "ephemeral"}))[:2] == (0, tokens(BIG, "What now?"))


def test_fully_cached_prompt_counts_the_same_tokens_as_uncached(clocked):
    tools = [{**RECORD_INVOICE, "description": "x" * 300}, {"name": "other", "input_schema": {"type": "object"}}]
    content = [{"type": "text", "text": BIG}, {"type": "text", "text": "tail", "cache_control": {"type": "ephemeral"}}]
    system = [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]
    sdk, common = client(clocked), {"model": SONNET, "max_tokens": 50, "tools": tools, "system": system}
    plain = sdk.messages.create(**common, messages=[{"role": "user", "content": BIG + "\ntail"}])
    cached = sdk.messages.create(**common, messages=[{"role": "user", "content": content}])

    assert cache(cached.usage) == (plain.usage.input_tokens, 0, 0)


@pytest.mark.parametrize("system, field", [
    (cached_system(ttl="2h"), "system.0.cache_control.ttl"),
    ([{"type": "text", "text": "x", "cache_control": {"type": "persistent"}}], "system.0.cache_control.type"),
    (cached_system() * 5, "cache_control"),
    (cached_system("a") + cached_system("b", ttl="1h"), "cache_control.ttl"),
])
def test_bad_cache_control_is_400(standin, system, field):
    body = {"model": MODEL, "max_tokens": 10, "system": system, "messages": HELLO}
    status, payload = http(standin, "/v1/messages", body, {"x-api-key": "k"})
    assert (status, payload["error"]["type"]) == (400, "invalid_request_error")
    assert payload["error"]["message"].startswith(field + ":")


def test_batch_requests_share_the_prompt_cache(clocked, clock):
    sdk = client(clocked)
    shared = {"model": SONNET, "max_tokens": 50, "system": cached_system()}
    batch = sdk.messages.batches.create(requests=[
        {"custom_id": f"q{i}", "params": {**shared, "messages": [{"role": "user", "content": f"Question {i}?"}]}} for i in range(3)
    ])
    clock.advance(1)

    usages = [result.message.usage for result in results(clocked, batch.id).values()]
    assert [cache(u)[:2] for u in usages] == [(tokens(BIG), 0), (0, tokens(BIG)), (0, tokens(BIG))]
    assert cache(ask(clocked))[:2] == (0, tokens(BIG))  # and with direct calls


def test_a_batch_still_processing_after_24_hours_ends_with_the_rest_expired(clock):
    with ClaudeStandIn(clock=clock, batch_delay_s=48 * 3600) as server:
        sdk = client(server)
        batch = sdk.messages.batches.create(requests=requests_for("early", "late"))  # due at 24 h and 48 h
        clock.advance(24 * 3600)

        ended = sdk.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended" and ended.ended_at == ended.expires_at
        assert {c: r.type for c, r in results(server, batch.id).items()} == {"early": "succeeded", "late": "expired"}
