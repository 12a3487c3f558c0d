"""AnthropicModel and translate() through the real SDK against the offline stand-in.

The SDK's own retries are off (max_retries=0) so every injected failure reaches the adapter once.
"""

from __future__ import annotations

import json
import time

import anthropic
import pytest

from jobadapters.claude import AnthropicModel, translate
from jobcore.errors import ModelRequestError, ModelUnavailableError

HELLO = {
    "model": "claude-test",
    "max_tokens": 60,
    "messages": [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. It was not amused."}],
}


def model_for(standin, *, key=lambda: "test-key", timeout_s=5.0):
    return AnthropicModel(api_key=key, base_url=standin.base_url, timeout_s=timeout_s, max_retries=0)


def test_success_is_a_plain_json_dict_with_content_and_usage(standin):
    answer = model_for(standin).create(HELLO)

    assert type(answer) is dict
    assert json.loads(json.dumps(answer)) == answer
    assert answer["content"] == [{"type": "text", "text": "Summary: The quick brown fox jumps over the lazy dog."}]
    assert answer["usage"]["input_tokens"] > 0 and answer["usage"]["output_tokens"] > 0
    assert answer["stop_reason"] == "end_turn"
    assert "stop_sequence" not in answer  # None values are left out
    assert standin.stats()["last_request"]["max_tokens"] == 60


def test_rate_limit_429_is_unavailable_with_the_retry_after_header(standin):
    standin.configure(fail_status=429, fail_times=1)

    with pytest.raises(ModelUnavailableError) as caught:
        model_for(standin).create(HELLO)

    assert caught.value.retry_after_s == 1.0
    assert caught.value.retryable and caught.value.model_down
    assert (caught.value.kind, caught.value.status) == ("rate_limited", 429)
    assert str(caught.value) == "the model was rate-limited (429)"  # ours, not the SDK's text
    assert caught.value.describe() == "model rate-limited (429)"
    assert isinstance(caught.value.__cause__, anthropic.RateLimitError)


@pytest.mark.parametrize(("status", "kind", "message"), [
    (529, "overloaded", "the model was overloaded (529)"), (500, "server_error", "the model failed with a server error (500)"),
])
def test_overloaded_and_server_errors_are_unavailable(standin, status, kind, message, caplog):
    standin.configure(fail_status=status, fail_times=1)

    with caplog.at_level("WARNING", logger="jobadapters.claude"), pytest.raises(ModelUnavailableError) as caught:
        model_for(standin).create(HELLO)

    assert caught.value.retry_after_s is None and caught.value.model_down
    assert (caught.value.kind, str(caught.value)) == (kind, message)
    # The API's own words are logged, not passed on.
    assert any("Overloaded" in r.getMessage() or "Internal server error" in r.getMessage() for r in caplog.records)


def test_after_the_injected_failures_the_same_model_answers(standin):
    standin.configure(fail_status=529, fail_times=1)
    model = model_for(standin)
    with pytest.raises(ModelUnavailableError):
        model.create(HELLO)

    assert model.create(HELLO)["content"][0]["type"] == "text"
    assert standin.stats()["by_status"] == {"529": 1, "200": 1}


@pytest.mark.parametrize("change", [
    {"max_tokens": 0},
    {"messages": [{"role": "system", "content": "hi"}]},
    {"tool_choice": {"type": "tool", "name": "missing_tool"}},
])
def test_a_request_claude_refuses_400_is_a_request_error_not_retryable(standin, change):
    with pytest.raises(ModelRequestError, match="400") as caught:
        model_for(standin).create({**HELLO, **change})

    assert not caught.value.retryable
    assert standin.stats()["by_status"] == {"400": 1}


def test_a_model_that_hangs_past_the_timeout_is_unavailable(standin):
    standin.configure(hang_s=10)
    started = time.monotonic()

    with pytest.raises(ModelUnavailableError, match="in time") as caught:
        model_for(standin).create(HELLO, timeout_s=0.5)

    assert caught.value.kind == "timeout" and not caught.value.model_down  # may be the job's own doing: no model wait

    assert time.monotonic() - started < 3


def test_an_unreachable_model_is_unavailable():
    model = AnthropicModel(api_key=lambda: "k", base_url="http://127.0.0.1:9", timeout_s=2, max_retries=0)

    with pytest.raises(ModelUnavailableError) as caught:
        model.create(HELLO)

    assert str(caught.value) == "could not reach the model" and caught.value.kind == "unreachable" and caught.value.model_down


def test_the_client_is_built_once_and_rebuilt_when_the_key_rotates(standin, monkeypatch):
    built: list[str] = []

    class RecordingAnthropic(anthropic.Anthropic):
        def __init__(self, **kwargs):
            built.append(kwargs["api_key"])
            super().__init__(**kwargs)

    monkeypatch.setattr(anthropic, "Anthropic", RecordingAnthropic)
    keys = iter(["key-1", "key-1", "key-1", "key-2", "key-2"])
    model = model_for(standin, key=lambda: next(keys))

    for _ in range(5):
        model.create(HELLO)

    assert built == ["key-1", "key-2"]
    assert standin.stats()["requests"] == 5


def test_translate_returns_errors_that_are_not_the_sdks_unchanged():
    error = RuntimeError("not an SDK error")

    assert translate(error) is error


def test_a_request_the_sdk_refuses_before_sending_is_a_request_error(standin):
    """A missing max_tokens never reaches Claude: the SDK raises TypeError, which no retry fixes."""
    with pytest.raises(ModelRequestError, match=r"could not be sent to the model \(malformed\)$"):
        model_for(standin).create({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert standin.stats()["requests"] == 0
