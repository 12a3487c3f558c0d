"""Bedrock's own budget (bedrock_rate_limits): tokens per minute with input and output together, output burned down 5
times as Bedrock counts it, paced like Anthropic's budget but in its own shared bucket, so one provider's use never
spends the other's."""

from __future__ import annotations

import re

import pytest

from jobcore.capacity import (
    Amount,
    BedrockLimits,
    CapacityConfig,
    CapacityConfigError,
    RateLimits,
    SharedBucket,
    parse_bedrock_limits,
)
from jobcore.capacity_pacer import PacedModel, Pacer, pacing
from jobcore.errors import CapacityWaitError
from jobcore.providers import BEDROCK
from tests.fakes import MemoryCapacityStore, ScriptedModel, harness, text_response

MODEL = "claude-sonnet-4-6"
SONNET_ON_BEDROCK = BedrockLimits(tpm=20_000, rpm=50)
ANTHROPIC_LIMITS = RateLimits(rpm=120, itpm=40_000, otpm=16_000)
CALL = {"model": MODEL, "max_tokens": 1_000, "messages": [{"role": "user", "content": "x" * 400}]}  # ~100 input tokens


def world(model: ScriptedModel, *, bedrock: dict[str, BedrockLimits] | None = None):
    h = harness()
    store = MemoryCapacityStore()
    config = CapacityConfig(limits={"sonnet-4": ANTHROPIC_LIMITS}, bedrock=bedrock or {"sonnet-4": SONNET_ON_BEDROCK})
    pacer = Pacer(store, config, h.clock.ms, wait=lambda _c, s: h.clock.advance(s))
    return h, store, pacer, PacedModel(model, pacer, MODEL, provider=BEDROCK)


def test_a_call_counts_its_input_and_its_output_burned_down_five_times_before_and_after():
    limits = BedrockLimits(tpm=200_000)
    assert limits.demand(CALL) == Amount(1, 100 + 5 * 1_000, 0)  # Bedrock reserves max_tokens at the start
    answered = text_response("ok", input_tokens=120, output_tokens=30)
    answered["usage"].update(cache_read_input_tokens=500, cache_creation_input_tokens=7)
    assert limits.use(answered) == Amount(1, 120 + 7 + 5 * 30, 0)
    assert BedrockLimits(tpm=200_000, output_burndown=1).use(answered) == Amount(1, 157, 0)


def test_bedrock_calls_spend_bedrock_s_bucket_and_never_anthropic_s():
    """GIVEN budgets for both providers
    WHEN jobs' calls go through Bedrock
    THEN they are granted from the ``bedrock:sonnet-4`` bucket, settled with the real use, and Anthropic's bucket is
    never written; the capacity view names each budget's provider in its own terms."""
    model = ScriptedModel(default=lambda params: text_response("ok", input_tokens=100, output_tokens=20))
    h, store, pacer, paced = world(model)
    with pacing("tenant-a", inline=False):
        for _ in range(3):
            paced.create(CALL)
    assert len(model.calls) == 3
    assert set(store.buckets) == {"bedrock:sonnet-4"}
    views = {view["provider"]: view for view in pacer.snapshot([MODEL])}
    assert views["bedrock"]["limits"] == {"tpm": 20_000, "rpm": 50, "output_burndown": 5}
    assert set(views["bedrock"]["in_use"]) == {"tokens", "requests"}
    assert views["anthropic"]["limits"] == ANTHROPIC_LIMITS.to_dict()
    family = pacer.family_of(MODEL, BEDROCK)
    assert family is not None and family.in_flight.total() == 0  # each grant settled


def test_a_bedrock_call_whose_tokens_are_spent_waits_for_bedrock_s_refill_not_for_a_429():
    """GIVEN Bedrock's bucket with too few tokens for a call's input and burned-down max_tokens
    WHEN a queued job's call asks for a grant
    THEN the model is not called and the wait is for capacity ("input_tokens": the budget's token dimension), so the
    runner re-queues the job until then, spending no attempt."""
    model = ScriptedModel(default=lambda params: text_response("ok"))
    h, store, pacer, paced = world(model, bedrock={"*": BedrockLimits(tpm=6_000)})
    family = pacer.family_of(MODEL, BEDROCK)
    assert family is not None
    store.buckets[family.family] = SharedBucket(Amount(10**9, 1_000, 10**9), h.clock.ms(), version=1)
    with pacing("tenant-a", inline=False, max_wait_s=5), pytest.raises(CapacityWaitError) as raised:
        paced.create(CALL)
    assert not model.calls
    assert raised.value.dimension == "input_tokens" and raised.value.expected_at_ms > h.clock.ms()


def test_bedrock_rate_limits_are_validated_naming_the_key():
    assert parse_bedrock_limits({"*": {"tpm": 200_000, "rpm": 100, "output_burndown": 1}})["*"] == BedrockLimits(200_000, 100, 1)
    for bad, named in (({"sonnet-4": {"rpm": 100}}, "bedrock_rate_limits.sonnet-4.tpm"),
                       ({"sonnet-4": {"tpm": 1, "itpm": 5}}, "unknown key(s) ['itpm']"),
                       ({"sonnet-4": {"tpm": 10, "output_burndown": 0}}, "bedrock_rate_limits.sonnet-4.output_burndown"),
                       ({"Sonnet 4": {"tpm": 10}}, "'Sonnet 4' is not a model family")):
        with pytest.raises(CapacityConfigError, match=re.escape(named)):
            parse_bedrock_limits(bad)
