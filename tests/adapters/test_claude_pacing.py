"""The anthropic SDK under admission: no blind retries of a 429, and every answer's rate-limit headers reach the
pacer, which corrects the shared budget (a local HTTP stub answers as the API does, headers included)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from jobadapters.claude import AnthropicModel
from jobcore.capacity import Amount, CapacityConfig, RateLimits
from jobcore.capacity_pacer import PacedModel, Pacer, pacing
from jobcore.errors import CapacityWaitError, ModelUnavailableError
from local.listen import BurstHTTPServer
from tests.fakes import FakeClock, MemoryCapacityStore, text_response

LIMITS = RateLimits(rpm=120, itpm=40_000, otpm=16_000)
HELLO = {"model": "claude-sonnet-4-6", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}


class Stub:
    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.requests = 0


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length") or 0))
            state.requests += 1
            status, headers = state.answers.pop(0) if state.answers else (200, {})
            body = text_response("hi", input_tokens=3, output_tokens=2) if status == 200 else {
                "type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your rate limit"}}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = BurstHTTPServer(("127.0.0.1", 0), Handler)
    server.serve_in_thread("pacing-stub")
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.stop()


def limited(remaining_input: int) -> dict[str, str]:
    return {"anthropic-ratelimit-requests-limit": "120", "anthropic-ratelimit-requests-remaining": "100",
            "anthropic-ratelimit-input-tokens-limit": "40000", "anthropic-ratelimit-input-tokens-remaining": str(remaining_input),
            "anthropic-ratelimit-output-tokens-limit": "16000", "anthropic-ratelimit-output-tokens-remaining": "16000"}


def test_a_429_is_not_retried_by_the_sdk_and_blocks_every_process_until_its_retry_after(stub):
    """GIVEN admission on (the SDK's retries off, the pacer observing headers)
    WHEN the API answers 429 with retry-after: 20 and its remaining input tokens at 0
    THEN the SDK sent one request only, the job sees the 429 (a real one still counts toward the model wait),
    and the shared bucket now holds no input tokens and blocks every process for 20 s: the next call waits."""
    state, url = stub
    state.answers = [(429, {"retry-after": "20", **limited(0)})]
    clock, store = FakeClock(), MemoryCapacityStore()
    pacer = Pacer(store, CapacityConfig(limits={"sonnet-4": LIMITS}), clock.ms)
    llm = AnthropicModel(api_key=lambda: "k", base_url=url, timeout_s=5, max_retries=0, observer=pacer.observe)
    paced = PacedModel(llm, pacer, "claude-sonnet-4-6")

    with pacing("a", inline=False, max_wait_s=5), pytest.raises(ModelUnavailableError) as caught:
        paced.create(HELLO)
    assert caught.value.kind == "rate_limited" and state.requests == 1

    bucket = store.buckets["sonnet-4"]
    assert bucket.blocked_until_ms == clock.ms() + 20_000 and bucket.levels.input_tokens == 0
    with pacing("a", inline=False, max_wait_s=5), pytest.raises(CapacityWaitError) as waiting:
        paced.create(HELLO)
    assert waiting.value.expected_at_ms == clock.ms() + 20_000 and state.requests == 1
    assert waiting.value.describe() == "model capacity (rate-limited)"


def test_answers_headers_lower_the_shared_budget_when_the_api_has_less_left_than_we_think(stub):
    """GIVEN another client of the organisation spending the same budget (the API reports 1,000 input tokens left)
    WHEN a paced call is answered
    THEN the shared bucket is corrected down to what the API says, and the call is settled with its real use."""
    state, url = stub
    state.answers = [(200, limited(1_000))]
    clock, store = FakeClock(), MemoryCapacityStore()
    pacer = Pacer(store, CapacityConfig(limits={"sonnet-4": LIMITS}), clock.ms)
    llm = AnthropicModel(api_key=lambda: "k", base_url=url, timeout_s=5, max_retries=0, observer=pacer.observe)

    answer = PacedModel(llm, pacer, "claude-sonnet-4-6").create(HELLO)

    assert answer["content"][0]["text"] == "hi"
    family = pacer.families["sonnet-4"]
    assert store.buckets["sonnet-4"].levels.input_tokens <= 1_000
    # Estimated 2 input tokens and 50 output, used 3 and 2: the unused output is ours again, the extra input token owed.
    assert family.slice == Amount(0, -1, 48) and not family.waiters
