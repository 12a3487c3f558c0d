"""The stand-in's rate-limit mode: Anthropic's RPM/ITPM/OTPM buckets, its 429s and headers, on a fake clock."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from local.claude_standin import ClaudeStandIn, ModelLimits
from local.serve import parse_args
from local.standin.api import ApiError
from local.standin.limits import RateLimiter, TokenBucket, limits_argument
from tests.fakes import FakeClock

MODEL = "claude-test"
HELLO = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. It was not amused."}]
BIG_SYSTEM = "Background. " * 400  # 4,800 characters, 1,200 tokens: over Sonnet's 1,024-token cache minimum


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limited(clock) -> Iterator[ClaudeStandIn]:
    with ClaudeStandIn(clock=clock.monotonic, limits=ModelLimits(rpm=2, itpm=1_000, otpm=500)) as server:
        yield server


@pytest.fixture
def sdk(limited) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="test-key", base_url=limited.base_url, max_retries=0) as client:
        yield client


def hello(client: anthropic.Anthropic, max_tokens: int = 100, **extra: Any) -> Any:
    """The raw answer (headers and parsed message) of one call."""
    return client.messages.with_raw_response.create(model=MODEL, max_tokens=max_tokens, messages=HELLO, **extra)


def control(server: ClaudeStandIn, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.base_url + path, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def when(clock: FakeClock, seconds: float) -> str:
    return dt.datetime.fromtimestamp(clock.monotonic() + seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the bucket --------------------------------------------------------------------------------

def test_a_bucket_holds_a_minute_and_refills_continuously_at_a_sixtieth_of_it_a_second():
    bucket = TokenBucket(120, now=0.0)
    assert bucket.level(0.0) == 120

    bucket.take(120, now=0.0)

    assert bucket.seconds_until(1, now=0.0) == pytest.approx(0.5)
    assert bucket.level(0.25) == pytest.approx(0.5)
    assert bucket.level(30.0) == pytest.approx(60)
    assert bucket.level(600.0) == 120  # never above its capacity
    assert bucket.full_at(600.0) == 600.0


def test_more_than_a_whole_bucket_waits_for_a_full_one_and_leaves_it_in_debt():
    bucket = TokenBucket(60, now=0.0)
    bucket.take(30, now=0.0)
    assert bucket.seconds_until(100, now=0.0) == pytest.approx(30)  # until full, not forever

    bucket.take(100, now=30.0)

    assert bucket.level(30.0) == pytest.approx(-40)
    assert bucket.seconds_until(1, now=30.0) == pytest.approx(41)


# --- requests per minute ----------------------------------------------------------------------

def test_requests_beyond_the_rpm_get_a_429_rate_limit_error_with_retry_after_then_pass_once_refilled(limited, sdk, clock):
    assert hello(sdk).status_code == 200
    assert hello(sdk).status_code == 200

    with pytest.raises(anthropic.RateLimitError) as refused:
        hello(sdk)

    assert refused.value.body == {"type": "error", "error": {
        "type": "rate_limit_error",
        "message": "This request would exceed your organization's rate limit of 2 requests per minute. "
                   "Reduce the prompt length or the maximum tokens requested, or try again later.",
    }}
    headers = refused.value.response.headers
    assert headers["retry-after"] == "30"  # 2 a minute: one more request's room in 30 s
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-requests-reset"] == when(clock, 60)

    clock.advance(29)
    with pytest.raises(anthropic.RateLimitError):
        hello(sdk)
    clock.advance(1)
    assert hello(sdk).status_code == 200
    stats = limited.stats()
    assert (stats["by_status"], stats["limits"]["admitted"], stats["limits"]["refused"]) == ({"200": 3, "429": 2}, 3, 2)
    assert stats["limits"]["refused_by"] == {"requests": 2, "input_tokens": 0, "output_tokens": 0}


def test_every_answer_carries_the_limit_headers_in_rfc_3339(limited, sdk, clock):
    answer = hello(sdk)

    assert {name: value for name, value in answer.headers.items() if name.startswith("anthropic-ratelimit-")} == {
        "anthropic-ratelimit-requests-limit": "2",
        "anthropic-ratelimit-requests-remaining": "1",
        "anthropic-ratelimit-requests-reset": when(clock, 30),
        "anthropic-ratelimit-input-tokens-limit": "1000",
        "anthropic-ratelimit-input-tokens-remaining": "1000",  # 1000 less 16: tokens are rounded to the thousand
        "anthropic-ratelimit-input-tokens-reset": when(clock, 16 * 60 / 1000),
        "anthropic-ratelimit-output-tokens-limit": "500",
        "anthropic-ratelimit-output-tokens-remaining": "0",  # 500 less 14: rounded to the thousand
        "anthropic-ratelimit-output-tokens-reset": when(clock, 14 * 60 / 500),
    }


def test_a_bad_request_is_answered_with_the_headers_and_charged_nothing(limited):
    request = urllib.request.Request(limited.base_url + "/v1/messages", data=json.dumps({"model": MODEL, "messages": HELLO}).encode(),
                                     headers={"x-api-key": "k", "content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(request, timeout=5)

    assert bad.value.code == 400
    assert bad.value.headers["anthropic-ratelimit-requests-remaining"] == "2"
    assert limited.stats()["limits"]["admitted"] == 0


# --- tokens ---------------------------------------------------------------------------------------

def test_input_tokens_count_what_the_cache_did_not_serve(clock):
    system = [{"type": "text", "text": BIG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    with ClaudeStandIn(clock=clock.monotonic, limits=ModelLimits(itpm=2_000)) as server, \
            anthropic.Anthropic(api_key="k", base_url=server.base_url, max_retries=0) as client:
        first = hello(client, system=system).parse().usage
        second = hello(client, system=system).parse().usage

        assert (first.cache_creation_input_tokens, second.cache_read_input_tokens) == (1_200, 1_200)
        limits = server.stats()["limits"]
        # The write counts (1,200 + the question), the read does not (only the question).
        assert limits["input_tokens"] == first.input_tokens + 1_200 + second.input_tokens
        assert limits["remaining"]["input_tokens"] == 2_000 - limits["input_tokens"]
        # Uncached, the same prompt would not fit again: the cache is what lets the second call in.
        with pytest.raises(anthropic.RateLimitError) as refused:
            hello(client, system=BIG_SYSTEM)
        assert "2,000 input tokens per minute" in refused.value.message


def test_output_is_reserved_at_max_tokens_and_settled_to_the_real_count(limited, sdk, clock):
    answer = hello(sdk, max_tokens=400).parse()
    assert answer.usage.output_tokens == 14

    limits = limited.stats()["limits"]
    assert (limits["output_tokens"], limits["remaining"]["output_tokens"]) == (14, 486)  # 400 reserved, 386 given back

    with pytest.raises(anthropic.RateLimitError) as refused:
        hello(sdk, max_tokens=500)  # 500 reserved against 486: refused although only 14 would be used
    assert refused.value.response.headers["retry-after"] == "2"  # 14 tokens at 500 a minute: 1.68 s, whole seconds up
    assert limited.stats()["limits"]["refused_by"]["output_tokens"] == 1


def test_the_stats_timeline_counts_each_second_from_when_the_limits_were_set(limited, sdk, clock):
    hello(sdk)
    clock.advance(2.5)
    hello(sdk)
    with pytest.raises(anthropic.RateLimitError):
        hello(sdk)

    timeline = limited.stats()["limits"]["timeline"]

    assert timeline == [[0, 1, 0, 16, 14], [2, 1, 1, 16, 14]]  # second, admitted, refused, input, output


def test_batches_are_not_charged_to_the_messages_limits(limited, sdk):
    requests = [{"custom_id": f"r{i}", "params": {"model": MODEL, "max_tokens": 10, "messages": HELLO}} for i in range(5)]

    sdk.messages.batches.create(requests=requests)  # type: ignore[arg-type]

    assert limited.stats()["limits"]["admitted"] == 0


# --- configuration ----------------------------------------------------------------------------------

def test_the_http_control_sets_and_clears_the_limits_and_reset_restores_the_constructors(limited, sdk):
    status, config = control(limited, "/_standin/control", {"limits": {"rpm": 1}})
    assert (status, config["limits"]) == (200, {"rpm": 1, "itpm": None, "otpm": None})
    hello(sdk)
    with pytest.raises(anthropic.RateLimitError):
        hello(sdk)

    assert control(limited, "/_standin/control", {"limits": None})[1]["limits"] is None
    assert "anthropic-ratelimit-requests-limit" not in hello(sdk).headers
    assert control(limited, "/_standin/stats")[1]["limits"] is None

    assert control(limited, "/_standin/reset", {})[1]["limits"] == {"rpm": 2, "itpm": 1_000, "otpm": 500}
    assert hello(sdk).headers["anthropic-ratelimit-requests-remaining"] == "1"


@pytest.mark.parametrize("limits, message", [
    ({"rpm": 0}, "limits.rpm: must be a positive integer"),
    ({"rpm": "120"}, "limits.rpm: must be a positive integer"),
    ({"tpm": 5}, "limits: unknown keys ['tpm']"),
    ({}, "limits: give at least one of rpm, itpm, otpm"),
    ([120], "limits: must be an object"),
])
def test_bad_limits_over_the_control_are_a_400_naming_the_problem(limited, limits, message):
    status, body = control(limited, "/_standin/control", {"limits": limits})

    assert status == 400
    assert body["error"]["message"].startswith(message)


def test_model_limits_parse_the_flags_form():
    assert ModelLimits.parse("rpm=120,itpm=40000,otpm=8000") == ModelLimits(120, 40_000, 8_000)
    assert ModelLimits.parse(" itpm=40000 ") == ModelLimits(itpm=40_000)
    for bad in ("rpm=fast", "rpm", "rpm=-1", "rpm=0", "bogus=3", ""):
        with pytest.raises(ValueError):
            ModelLimits.parse(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="rpm=fast"):
        limits_argument("rpm=fast")


def test_local_serve_takes_the_model_limits_for_its_stand_in():
    assert parse_args(["--model-limits", "rpm=120,itpm=40000"]).model_limits == ModelLimits(rpm=120, itpm=40_000)
    assert parse_args([]).model_limits is None


def test_a_steady_stream_of_requests_gets_the_full_bucket_then_exactly_the_refill(clock):
    limiter = RateLimiter(ModelLimits(rpm=50), clock.monotonic)
    admitted = 0
    for _ in range(200):  # one try every 0.1 s, for 19.9 s
        try:
            limiter.admit(10, 10).settle(10, 5)
            admitted += 1
        except ApiError as refused:
            assert refused.status == 429
        clock.advance(0.1)

    # The full bucket's 50, then 50/60 a second for 19.9 s (16.58: 16 whole requests).
    assert admitted == 50 + 16
    assert limiter.stats()["refused"] == 200 - admitted
