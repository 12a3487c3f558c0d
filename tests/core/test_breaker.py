"""Circuit breakers per provider and failover between providers, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from jobcore.breaker import BreakerPolicy, Breakers, BreakerState, MemoryBreakerStore
from jobcore.errors import CapacityWaitError, ModelRequestError, ModelUnavailableError
from jobcore.failover import FailoverModel
from jobcore.model import Usage
from jobcore.tasks.base import usage_of
from tests.fakes import FakeClock

POLICY = BreakerPolicy(failures=3, window_ms=10_000, cool_down_ms=60_000, probe_timeout_ms=5_000, refresh_ms=0)


class Provider:
    """A provider that fails (with ``error``) while ``down``, and answers otherwise."""

    def __init__(self, name: str) -> None:
        self.name, self.down, self.calls = name, False, 0
        self.error: Exception = ModelUnavailableError("overloaded", status=529)

    def create(self, params: Any, *, timeout_s: float | None = None) -> dict[str, Any]:
        self.calls += 1
        if self.down:
            raise self.error
        return {"content": [{"type": "text", "text": self.name}], "usage": {"input_tokens": 10, "output_tokens": 2}}


def breakers(clock: FakeClock, store: MemoryBreakerStore | None = None) -> Breakers:
    return Breakers(store or MemoryBreakerStore(), POLICY, clock.ms)


def test_a_run_of_failures_within_the_window_opens_it_and_older_ones_expire() -> None:
    clock = FakeClock(start_ms=1_000_000)
    b = breakers(clock)
    b.record_failure("anthropic")
    clock.now_ms += 11_000  # out of the window: forgotten
    b.record_failure("anthropic")
    b.record_failure("anthropic")
    assert b.position("anthropic") == "closed"
    b.record_failure("anthropic")
    assert b.position("anthropic") == "open"
    permit = b.permit("anthropic")
    assert not permit.allowed and permit.retry_at == clock.now_ms + 60_000


def test_after_the_cool_down_one_probe_is_let_through_and_its_success_closes_it() -> None:
    clock, store = FakeClock(start_ms=1_000_000), MemoryBreakerStore()
    one, other = breakers(clock, store), breakers(clock, store)  # two processes sharing the store
    for _ in range(3):
        one.record_failure("anthropic")
    clock.now_ms += 60_000
    first = one.permit("anthropic")
    assert first.allowed and first.probe
    assert not other.permit("anthropic").allowed  # the probe is out: the other process does not probe too
    one.record_success("anthropic", probe=True)
    assert other.permit("anthropic").allowed and other.position("anthropic") == "closed"


def test_a_failed_probe_reopens_it_and_a_lost_probe_is_given_up() -> None:
    clock = FakeClock(start_ms=1_000_000)
    b = breakers(clock)
    for _ in range(3):
        b.record_failure("bedrock")
    clock.now_ms += 60_000
    assert b.permit("bedrock").probe
    b.record_failure("bedrock")
    assert b.position("bedrock") == "open"
    clock.now_ms += 60_000
    assert b.permit("bedrock").probe
    clock.now_ms += 5_000  # the prober died without reporting
    assert b.permit("bedrock").probe


def test_a_closed_clean_breaker_costs_no_write() -> None:
    clock, store = FakeClock(start_ms=1_000_000), MemoryBreakerStore()
    b = breakers(clock, store)
    b.record_success("anthropic")
    assert store.load("anthropic") == BreakerState()


class CountingStore(MemoryBreakerStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def load(self, provider: str) -> BreakerState:
        self.loads += 1
        return super().load(provider)


def test_an_open_breaker_is_served_from_the_local_copy_until_its_cool_down_ends() -> None:
    """An outage costs no store read per call: the copy of an open breaker stands until it half-opens; then the
    shared state is read again (another process may have reopened it, or closed it)."""
    clock, store = FakeClock(start_ms=1_000_000), CountingStore()
    b = breakers(clock, store)  # refresh_ms=0: a closed breaker's copy is never trusted
    for _ in range(3):
        b.record_failure("anthropic")
    loads = store.loads
    for _ in range(50):
        clock.now_ms += 1_000
        assert not b.permit("anthropic").allowed
    assert store.loads == loads  # 50 calls over 50 s of the 60 s cool-down: no read
    clock.now_ms += 10_000
    assert b.permit("anthropic").probe and store.loads == loads + 1  # cool-down over: read, then the probe claimed


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="failures"):
        BreakerPolicy(failures=0)


def test_failover_goes_to_the_next_provider_while_the_first_is_down_and_comes_back_after_the_cool_down() -> None:
    clock = FakeClock(start_ms=1_000_000)
    anthropic, bedrock = Provider("anthropic"), Provider("bedrock")
    model = FailoverModel([("anthropic", anthropic), ("bedrock", bedrock)], breakers(clock))
    anthropic.down = True
    answered = [model.create({"model": "m"})["provider"] for _ in range(10)]
    assert answered == ["bedrock"] * 10
    assert anthropic.calls == 3  # the breaker opened on the third refusal: no more calls during the cool-down
    anthropic.down = False
    clock.now_ms += 59_999
    assert model.create({})["provider"] == "bedrock"
    clock.now_ms += 1
    assert [model.create({})["provider"] for _ in range(3)] == ["anthropic"] * 3


def test_a_malformed_request_is_not_sent_elsewhere() -> None:
    anthropic, bedrock = Provider("anthropic"), Provider("bedrock")
    anthropic.down, anthropic.error = True, ModelRequestError("bad request")
    model = FailoverModel([("anthropic", anthropic), ("bedrock", bedrock)], breakers(FakeClock(start_ms=1_000_000)))
    with pytest.raises(ModelRequestError):
        model.create({})
    assert bedrock.calls == 0


def test_every_provider_down_raises_the_last_refusal_then_waits_for_the_cool_down() -> None:
    clock = FakeClock(start_ms=1_000_000)
    anthropic, bedrock = Provider("anthropic"), Provider("bedrock")
    anthropic.down = bedrock.down = True
    model = FailoverModel([("anthropic", anthropic), ("bedrock", bedrock)], breakers(clock))
    for _ in range(3):
        with pytest.raises(ModelUnavailableError, match="overloaded"):
            model.create({})
    with pytest.raises(ModelUnavailableError, match="every model provider") as raised:
        model.create({})
    assert raised.value.retry_after_s == 60.0 and raised.value.model_down


def test_a_wait_for_capacity_survives_the_next_provider_s_outage() -> None:
    """The first provider's pacer refuses (no grant yet) and the second is down: the runner must see the
    capacity wait (re-queued, no attempt spent), not the outage (counted toward the model-wait limit)."""
    anthropic, bedrock = Provider("anthropic"), Provider("bedrock")
    anthropic.down = bedrock.down = True
    anthropic.error = CapacityWaitError("no grant yet", expected_at_ms=5_000, now_ms=0, dimension="input_tokens")
    model = FailoverModel([("anthropic", anthropic), ("bedrock", bedrock)], breakers(FakeClock(start_ms=1_000_000)))
    with pytest.raises(CapacityWaitError) as raised:
        model.create({})
    assert raised.value.kind == "capacity" and bedrock.calls == 1


def test_one_provider_has_no_breaker_and_its_refusals_go_to_the_runner() -> None:
    anthropic = Provider("anthropic")
    anthropic.down = True
    model = FailoverModel([("anthropic", anthropic)], None)
    for _ in range(5):
        with pytest.raises(ModelUnavailableError):
            model.create({})
    assert anthropic.calls == 5


def test_usage_is_recorded_per_provider_and_round_trips() -> None:
    parts = [usage_of({"usage": {"input_tokens": 10, "output_tokens": 2}, "provider": name})
             for name in ("anthropic", "bedrock", "bedrock")]
    total = sum(parts, Usage())
    assert total.model_calls == 3 and total.input_tokens == 30
    assert total.by_provider["bedrock"].model_calls == 2 and total.by_provider["anthropic"].output_tokens == 2
    from dataclasses import asdict
    assert Usage.from_dict(asdict(total)) == total


def test_each_providers_calls_are_priced_at_its_price() -> None:
    from jobcore.costing import claude_cost
    from jobcore.pricing import default_prices

    prices = default_prices()
    one_m = Usage(input_tokens=1_000_000, model_calls=1)
    assert claude_cost(prices, "claude-sonnet-4-5", one_m) == pytest.approx(3.00)
    mixed = Usage(input_tokens=2_000_000, model_calls=2, by_provider={"anthropic": one_m, "bedrock": one_m})
    assert claude_cost(prices, "claude-sonnet-4-5", mixed, bedrock_scope="us") == pytest.approx(3.00 + 3.30)
    assert claude_cost(prices, "claude-sonnet-4-5", mixed, bedrock_scope="global") == pytest.approx(6.00)
