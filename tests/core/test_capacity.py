"""The model's shared budget (jobcore.capacity) and the admission that paces calls by it (jobcore.capacity_pacer).

The simulations below run many processes, each a FamilyPacer over one shared MemoryCapacityStore, against a fake
API that enforces the limits as Anthropic does (a token bucket per dimension, refilled continuously up to the
per-minute limit; output reserved at max_tokens when a call starts, corrected when it ends), on a fake clock.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobcore.capacity import (
    Amount,
    CapacityConfig,
    CapacityConfigError,
    RateLimits,
    SharedBucket,
    TenantShare,
    actual_use,
    corrected,
    estimate_demand,
    lease,
    limits_for,
    model_family,
    parse_rate_limits,
    parse_tenant_shares,
    ready_at,
    report_from_headers,
)
from jobcore.capacity_pacer import SLICE_MS, FamilyPacer, Waiter
from tests.fakes import MemoryCapacityStore

LIMITS = RateLimits(rpm=120, itpm=40_000, otpm=16_000)
T0 = 1_700_000_000_000


# --- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model_id", "family"), [
    ("claude-sonnet-4-5", "sonnet-4"),
    ("claude-sonnet-4-5-20250929", "sonnet-4"),
    ("claude-opus-4-1-20250805", "opus-4"),
    ("claude-haiku-4-5", "haiku-4"),
    ("claude-3-5-haiku-20241022", "haiku-3.5"),
    ("claude-3-7-sonnet-latest", "sonnet-3.7"),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "sonnet-4"),
    ("claude-test", "claude-test"),
])
def test_a_model_id_counts_against_its_family(model_id, family):
    assert model_family(model_id) == family


def test_limits_are_looked_up_by_family_with_a_default_for_every_other():
    table = parse_rate_limits({"sonnet-4": {"rpm": 50, "itpm": 30_000, "otpm": 8_000}, "*": {"rpm": 5, "itpm": 10, "otpm": 10}})
    assert limits_for("claude-sonnet-4-5", table) == ("sonnet-4", RateLimits(50, 30_000, 8_000))
    assert limits_for("claude-haiku-4-5", table) == ("haiku-4", RateLimits(5, 10, 10))
    assert limits_for("claude-haiku-4-5", {}) is None


@pytest.mark.parametrize(("config", "names"), [
    ([], "model_rate_limits: must be an object"),
    ({"Sonnet 4": {"rpm": 1, "itpm": 1, "otpm": 1}}, "'Sonnet 4' is not a model family"),
    ({"sonnet-4": {"rpm": 1, "itpm": 1}}, "model_rate_limits.sonnet-4.otpm: must be a positive integer"),
    ({"sonnet-4": {"rpm": 0, "itpm": 1, "otpm": 1}}, "model_rate_limits.sonnet-4.rpm"),
    ({"sonnet-4": {"rpm": 1, "itpm": 1, "otpm": 1, "tpm": 3}}, "unknown key(s) ['tpm']"),
])
def test_malformed_rate_limits_are_refused_naming_the_key(config, names):
    with pytest.raises(CapacityConfigError) as error:
        parse_rate_limits(config)
    assert names in str(error.value)


def test_tenant_shares_are_validated_and_default_to_weight_one():
    shares = parse_tenant_shares({"a": {"weight": 3, "max_in_flight": 50, "max_share": 0.5}, "b": {}})
    assert shares == {"a": TenantShare(3.0, 50, 0.5), "b": TenantShare()}
    for bad, names in [({"a": {"weight": 0}}, "tenant_shares.a.weight"), ({"a": {"max_share": 1.5}}, "tenant_shares.a.max_share"),
                       ({"a": {"max_in_flight": 0}}, "tenant_shares.a.max_in_flight"), ({"a": {"share": 1}}, "unknown key")]:
        with pytest.raises(CapacityConfigError, match=names):
            parse_tenant_shares(bad)


# --- a call's demand and the API's reports --------------------------------------------------------------


def test_a_calls_demand_is_one_request_its_text_in_tokens_and_max_tokens_of_output():
    params = {"max_tokens": 300, "system": "s" * 400, "messages": [{"role": "user", "content": "u" * 800}]}
    assert estimate_demand(params) == Amount(1, 300, 300)
    assert estimate_demand(params, cached_prefix_tokens=100) == Amount(1, 200, 300)  # cache reads are free of ITPM


def test_what_an_answer_used_counts_cache_writes_but_not_cache_reads():
    response = {"usage": {"input_tokens": 50, "output_tokens": 20, "cache_creation_input_tokens": 1000,
                          "cache_read_input_tokens": 5000}}
    assert actual_use(response) == Amount(1, 1050, 20)


def test_headers_report_the_apis_limits_and_levels_and_a_429s_retry_after():
    headers = {"anthropic-ratelimit-requests-limit": "120", "anthropic-ratelimit-requests-remaining": "7",
               "anthropic-ratelimit-input-tokens-limit": "40000", "anthropic-ratelimit-input-tokens-remaining": "100",
               "anthropic-ratelimit-output-tokens-limit": "16000", "anthropic-ratelimit-output-tokens-remaining": "9000",
               "Retry-After": "3"}
    report = report_from_headers(headers, now_ms=T0)
    assert report.limits == LIMITS and report.remaining == Amount(7, 100, 9000) and report.retry_after_ms == 3000
    assert report_from_headers({"content-type": "application/json"}, now_ms=T0) is None

    bucket = corrected(SharedBucket.full(LIMITS, T0), LIMITS, report)
    assert bucket.levels == Amount(7, 100, 9000) and bucket.blocked_until_ms == T0 + 3000 and bucket.limits is None
    # Nothing is granted while a 429's Retry-After blocks, even with room in the bucket.
    assert lease(bucket, LIMITS, want=Amount(1, 10, 10), need=Amount(1, 10, 10), floor=Amount(), now_ms=T0 + 2999).slice.empty
    assert not lease(bucket, LIMITS, want=Amount(1, 10, 10), need=Amount(1, 10, 10), floor=Amount(), now_ms=T0 + 3000).slice.empty


def test_limits_the_api_reports_replace_the_configured_ones_when_they_differ():
    tier_up = RateLimits(1000, 450_000, 90_000)
    headers = {"anthropic-ratelimit-requests-limit": "1000", "anthropic-ratelimit-input-tokens-limit": "450000",
               "anthropic-ratelimit-output-tokens-limit": "90000"}
    bucket = corrected(SharedBucket.full(LIMITS, T0), LIMITS, report_from_headers(headers, now_ms=T0))
    assert bucket.limits == tier_up


# --- the bucket --------------------------------------------------------------------------------------------


def test_a_lease_keeps_the_floor_takes_in_proportion_and_nothing_when_the_next_call_does_not_fit():
    bucket = SharedBucket(Amount(40, 4_000, 16_000), T0)
    floor = Amount(2, 800, 0)
    taken = lease(bucket, LIMITS, want=Amount(16, 6_400, 8_000), need=Amount(1, 200, 500), floor=floor, now_ms=T0)
    # Input tokens bind: 3,200 of the 6,400 wanted are above the floor, so half of everything wanted is taken.
    assert taken.slice == Amount(8, 3_200, 4_000)
    assert taken.bucket.levels == Amount(32, 800, 12_000)
    refused = lease(taken.bucket, LIMITS, want=Amount(1, 100, 10), need=Amount(1, 100, 10), floor=floor, now_ms=T0)
    assert refused.slice.empty and refused.bucket.levels == taken.bucket.levels
    # ... until refill covers it: 100 input tokens short at 40,000 a minute: 150 ms.
    at, binding = ready_at(taken.bucket, LIMITS, need=Amount(1, 100, 10), floor=floor, now_ms=T0)
    assert (at, binding) == (T0 + 150, "input_tokens")
    assert not lease(taken.bucket, LIMITS, want=Amount(1, 100, 10), need=Amount(1, 100, 10), floor=floor,
                     now_ms=at).slice.empty


@given(st.lists(st.tuples(st.integers(0, 5_000), st.integers(1, 3), st.integers(1, 9_000), st.integers(1, 4_000)),
                min_size=1, max_size=60))
@settings(max_examples=60, deadline=None)
def test_leases_never_take_more_than_the_limit_allows(steps):
    """Property: whatever leases are asked for, whenever, what is taken over any run never exceeds the bucket's
    capacity plus its refill since the start, in every dimension."""
    bucket, now, taken = SharedBucket.full(LIMITS, T0), T0, Amount()
    for gap_ms, requests, input_tokens, output_tokens in steps:
        now += gap_ms
        want = Amount(requests, input_tokens, output_tokens)
        outcome = lease(bucket, LIMITS, want=want, need=Amount(1, 1, 1), floor=Amount(), now_ms=now)
        bucket, taken = outcome.bucket, taken + outcome.slice
        assert (LIMITS.capacity + LIMITS.per_ms.scaled(now - T0)).covers(taken)
        assert all(level >= -1e-6 for level in bucket.levels.values())


# --- the simulation ------------------------------------------------------------------------------------------


@dataclass
class FakeApi:
    """The Messages API's rate limiter, as Anthropic describes it."""

    limits: RateLimits
    now: int = T0
    levels: Amount = field(init=False)
    refused: int = 0
    started: int = 0

    def __post_init__(self) -> None:
        self.levels = self.limits.capacity

    def _refill(self, now: int) -> None:
        self.levels = (self.levels + self.limits.per_ms.scaled(now - self.now)).clipped(Amount(-1e18, -1e18, -1e18),
                                                                                         self.limits.capacity)
        self.now = now

    def start(self, demand: Amount, now: int) -> bool:
        self._refill(now)
        if not self.levels.covers(demand):
            self.refused += 1
            return False
        self.levels = self.levels - demand
        self.started += 1
        return True

    def finish(self, reserved_output: float, output: float, now: int) -> None:
        self._refill(now)
        self.levels = self.levels + Amount(0, 0, reserved_output - output)


@dataclass(order=True)
class Call:
    ends_at: int
    seq: int
    waiter: Waiter = field(compare=False)
    process: int = field(compare=False)


@dataclass
class Sim:
    """``processes`` pacers, each with slots that always have a call waiting (a backlog) for the tenant given."""

    slots: list[list[str]]  # per process, each slot's tenant
    config: CapacityConfig
    limits: RateLimits = LIMITS
    demand: Amount = Amount(1, 300, 200)
    output: int = 120
    duration_ms: int = 2_000
    step_ms: int = 20
    now: int = T0
    store: MemoryCapacityStore = field(default_factory=MemoryCapacityStore)
    api: FakeApi = field(init=False)
    pacers: list[FamilyPacer] = field(init=False)
    waiting: list[list[Waiter]] = field(init=False)
    running: list[Call] = field(default_factory=list)  # a heap, by end
    granted: dict[str, float] = field(default_factory=dict)
    granted_at: dict[str, list[int]] = field(default_factory=dict)
    started: int = 0

    def __post_init__(self) -> None:
        self.api = FakeApi(self.limits, self.now)
        self.pacers = [FamilyPacer("sonnet-4", self.limits, self.store, self.config) for _ in self.slots]
        self.waiting = [[] for _ in self.slots]
        for p, tenants in enumerate(self.slots):
            for tenant in tenants:
                self._wait(p, tenant)

    def _wait(self, p: int, tenant: str) -> None:
        self.waiting[p].append(self.pacers[p].enqueue(tenant, self.demand, inline=False, now_ms=self.now))

    def run(self, seconds: float, *, record_from_ms: int = 0) -> None:
        end = self.now + int(seconds * 1000)
        while self.now < end:
            self.now += self.step_ms
            while self.running and self.running[0].ends_at <= self.now:
                call = heapq.heappop(self.running)
                if call.process >= len(self.slots) or call.waiter.grant is None:
                    continue  # its process crashed
                self.api.finish(self.demand.output_tokens, self.output, self.now)
                self.pacers[call.process].settle(call.waiter, Amount(1, self.demand.input_tokens, self.output), now_ms=self.now)
                self._wait(call.process, call.waiter.tenant)
            for p, pacer in enumerate(self.pacers):
                if not self.waiting[p]:
                    continue
                pacer.pump(self.now)
                granted = [w for w in self.waiting[p] if w.grant is not None]
                self.waiting[p] = [w for w in self.waiting[p] if w.grant is None]
                for waiter in granted:
                    assert self.api.start(waiter.grant, self.now), "the API refused a granted call: a limit was exceeded"
                    self.started += 1
                    heapq.heappush(self.running, Call(self.now + self.duration_ms, self.started, waiter, p))
                    if self.now - T0 >= record_from_ms:
                        self.granted[waiter.tenant] = self.granted.get(waiter.tenant, 0) + 1
                        self.granted_at.setdefault(waiter.tenant, []).append(self.now)

    def crash(self, p: int) -> None:
        """Process ``p`` dies: its pacer, its slice and its calls are gone, nothing returned."""
        for call in self.running:
            if call.process == p:
                call.waiter.grant = None
        self.waiting[p] = []
        self.pacers[p] = FamilyPacer("sonnet-4", self.limits, self.store, self.config)


CONFIG = CapacityConfig(limits={"*": LIMITS}, inline_reserved_share=0.1, fair_reserve_share=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_grants_across_many_processes_never_exceed_the_limits_and_use_them_fully(seed):
    """GIVEN 2 to 12 processes with 6 to 12 slots each, every slot always with a call waiting, calls of random size
    WHEN they run for three simulated minutes against an API enforcing 120 RPM / 40,000 ITPM / 16,000 OTPM
    THEN the API never refuses a call (no 429), and once the initial burst is spent the calls started use at
    least 95 % of the binding limit (requests here)."""
    rng = random.Random(seed)
    slots = [["t"] * rng.randint(6, 12) for _ in range(rng.randint(2, 12))]  # enough to saturate the limit
    sim = Sim(slots, CONFIG, demand=Amount(1, rng.randint(50, 300), rng.randint(100, 130)), output=rng.randint(10, 100),
              duration_ms=rng.randint(200, 4_000))
    sim.run(180, record_from_ms=60_000)
    assert sim.api.refused == 0
    assert sim.granted["t"] / 2 >= 0.95 * LIMITS.rpm  # 2 recorded minutes
    # One conditional write per slice, not per call: fewer writes than calls.
    assert sim.store.writes < sim.api.started


def test_a_crashed_holders_slice_comes_back_by_refill_within_a_second():
    """GIVEN a busy process holding a leased slice when it dies
    THEN the slice was at most a second of the limit, and a second later the shared bucket holds at least what it
    held before that lease: nothing is lost for good, nobody has to notice the crash."""
    sim = Sim([["a"] * 8, ["b"] * 8], CONFIG)
    sim.run(90)
    holder = sim.pacers[0]
    holder.pump(sim.now)
    before = sim.store.buckets["sonnet-4"].refilled(LIMITS, sim.now)
    holder.waiters.append(Waiter("a", Amount(1, 300, 200), False, 99, sim.now))
    holder.next_try_ms = 0
    holder.pump(sim.now)  # leases a slice for its waiters
    taken = before.levels - sim.store.buckets["sonnet-4"].refilled(LIMITS, sim.now).levels
    assert not taken.empty and LIMITS.capacity.scaled(SLICE_MS / 60_000).covers(taken)
    sim.crash(0)
    after = sim.store.buckets["sonnet-4"].refilled(LIMITS, sim.now + SLICE_MS)
    assert after.levels.covers(before.levels)


@pytest.mark.slow
@pytest.mark.parametrize(("weights", "expected"), [((1, 1), 0.5), ((1, 3), 0.25)])
def test_tenants_waiting_in_one_process_share_the_budget_by_weight_within_ten_percent(weights, expected):
    """GIVEN tenants a and b each with 10 calls always waiting in each of 3 processes, weights 1:1 or 1:3
    WHEN the budget binds
    THEN a's share of the calls started is its weight's share, within 10 %."""
    config = CapacityConfig(limits={"*": LIMITS}, tenants={"a": TenantShare(weights[0]), "b": TenantShare(weights[1])})
    sim = Sim([["a"] * 10 + ["b"] * 10 for _ in range(3)], config)
    sim.run(240, record_from_ms=60_000)
    share = sim.granted["a"] / (sim.granted["a"] + sim.granted["b"])
    assert abs(share - expected) <= 0.1 * expected, sim.granted
    assert sim.api.refused == 0


@pytest.mark.slow
def test_a_quiet_tenant_starts_at_once_during_another_tenants_burst_in_another_process():
    """GIVEN tenant a saturating the budget from 4 processes for two minutes (it is far above its fair share)
    WHEN tenant b's 5 calls arrive in a fifth process
    THEN they are all granted within a second, from the fair reserve a may not take, with no 429."""
    sim = Sim([["a"] * 12 for _ in range(4)] + [[]], CONFIG)
    sim.run(120)
    arrived = sim.now
    for _ in range(5):
        sim._wait(4, "b")
    sim.run(1)
    assert len(sim.granted_at.get("b", [])) == 5
    assert max(sim.granted_at["b"]) - arrived <= 1_000
    assert sim.api.refused == 0


@pytest.mark.slow
def test_a_tenant_share_cap_holds_while_another_waits_and_gives_way_to_idle_capacity():
    """GIVEN tenant a capped at 25 % of the budget (max_share) and b waiting in the same process
    THEN a gets about a quarter; alone, it takes everything."""
    config = CapacityConfig(limits={"*": LIMITS}, tenants={"a": TenantShare(max_share=0.25)})
    sim = Sim([["a"] * 10 + ["b"] * 10], config)
    sim.run(240, record_from_ms=60_000)
    assert sim.granted["a"] / (sim.granted["a"] + sim.granted["b"]) <= 0.3
    alone = Sim([["a"] * 10], config)
    alone.run(240, record_from_ms=60_000)
    assert alone.granted["a"] / 3 >= 0.95 * LIMITS.rpm


def test_inline_calls_go_first_and_may_use_the_reserve_queued_work_cannot():
    """GIVEN queued work that has drained the bucket down to its floor (the inline reserve)
    WHEN an inline call arrives
    THEN it is granted at once, ahead of the queued waiters."""
    sim = Sim([["a"] * 12, ["a"] * 12], CONFIG)
    sim.run(90)
    pacer = sim.pacers[1]
    inline = pacer.enqueue("c", Amount(1, 300, 200), inline=True, now_ms=sim.now)
    pacer.next_try_ms = 0
    pacer.pump(sim.now)
    assert inline.grant is not None
    assert sim.api.start(inline.grant, sim.now)


def test_an_idle_processs_unused_slice_goes_back_to_the_shared_bucket():
    store = MemoryCapacityStore()
    pacer = FamilyPacer("sonnet-4", LIMITS, store, CONFIG)
    waiter = pacer.enqueue("a", Amount(1, 300, 200), inline=False, now_ms=T0)
    pacer.pump(T0)
    assert waiter.grant is not None
    pacer.settle(waiter, Amount(1, 300, 50), now_ms=T0 + 100)
    pacer.pump(T0 + 100)
    assert pacer.slice == Amount(0, 0, 150)  # the reservation it did not use, not yet idle long enough to return
    pacer.pump(T0 + 1_200)
    assert pacer.slice.empty
    level = store.buckets["sonnet-4"].levels
    # Everything but the call's real use came back (and a little refill): 1 request, 300 input, 50 output used.
    assert level.covers(LIMITS.capacity - Amount(1, 300, 50))


@pytest.mark.slow
def test_ten_times_tier_4_is_far_from_the_shared_items_write_ceiling():
    """GIVEN 10x Tier 4's Sonnet limits (40,000 RPM, 20M ITPM, 4M OTPM) and 40 worker processes of 40 slots each,
    calls of 2 s, so that the request limit binds, from a bucket spent down to its floor
    WHEN they run for 20 simulated seconds (after 5 to settle)
    THEN no call is refused, the request limit is used (667 calls a second), and the shared item is written
    (conditional writes tried, lost races included) a few times per process per second: far below DynamoDB's
    1,000 writes a second per partition, and far fewer writes than calls."""
    tier4x10 = RateLimits(rpm=40_000, itpm=20_000_000, otpm=4_000_000)
    config = CapacityConfig(limits={"*": tier4x10})
    sim = Sim([["t"] * 40 for _ in range(40)], config, limits=tier4x10, step_ms=50, demand=Amount(1, 300, 60), output=40)
    floor = tier4x10.capacity.scaled(config.inline_reserved_share + config.fair_reserve_share)
    sim.store.buckets["sonnet-4"] = SharedBucket(floor, sim.now)
    sim.api.levels = floor
    sim.run(5)
    calls, attempts = sim.started, sum(p.writes for p in sim.pacers)
    sim.run(20)
    calls, attempts = sim.started - calls, sum(p.writes for p in sim.pacers) - attempts
    assert sim.api.refused == 0
    assert calls / 20 >= 0.99 * tier4x10.rpm / 60
    assert attempts / 20 <= 200  # measured: about 140 a second, against a ceiling of 1,000
    assert attempts * 4 < calls


class AlwaysBeatenStore(MemoryCapacityStore):
    """Another process wins every race: each conditional write finds a newer version (the same levels)."""

    def swap(self, family, bucket, *, expected_version):
        self.lost += 1
        current = self.buckets.get(family) or SharedBucket.full(LIMITS, T0)
        self.buckets[family] = replace(current, version=expected_version + 1)
        return self.buckets[family]


def test_a_lease_whose_every_race_is_lost_grants_nothing():
    """What a lost race computed was never written: granting it would spend budget no one reserved."""
    store = AlwaysBeatenStore()
    pacer = FamilyPacer("sonnet-4", LIMITS, store, CONFIG)
    waiter = pacer.enqueue("a", Amount(1, 300, 200), inline=False, now_ms=T0)
    pacer.pump(T0)
    assert waiter.grant is None and pacer.slice.empty
    assert store.lost >= 5 and pacer.next_try_ms > T0


def test_a_waiter_is_not_counted_behind_waiters_that_will_give_up_before_their_grant():
    """GIVEN a deep queue in one process, the bucket at its floor, calls that wait at most 30 s
    WHEN the last waiter asks when its grant is expected
    THEN the waiters ahead whose own grant is past their deadline (their jobs are re-queued) do not count, so the
    last one's job is re-queued for about when the budget can serve it, not for the whole queue's time."""
    store = MemoryCapacityStore()
    pacer = FamilyPacer("sonnet-4", LIMITS, store, CONFIG)
    floor = pacer.limits.capacity.scaled(CONFIG.inline_reserved_share + CONFIG.fair_reserve_share)
    store.buckets["sonnet-4"] = SharedBucket.full(LIMITS, T0)
    pacer.bucket = replace(store.buckets["sonnet-4"], levels=floor)
    demand = Amount(1, 400, 0)  # 40,000 ITPM refill 400 tokens in 0.6 s: 50 calls a 30 s wait
    deadline = T0 + 30_000
    waiters = [pacer.enqueue("a", demand, inline=False, now_ms=T0, deadline_ms=deadline) for _ in range(80)]
    pacer.used["a"] = 1.0  # tenant a has used the budget lately: it keeps the fair reserve
    at_50, _ = pacer.expected(waiters[49], T0)
    at_51, _ = pacer.expected(waiters[50], T0)
    last, _ = pacer.expected(waiters[-1], T0)
    assert at_50 <= deadline < at_51  # the 51st is the first to give up
    # The last counts only the 50 that stay ahead of it: about 51 calls' refill, not 80
    assert last == pytest.approx(at_51, abs=1)
    assert last < T0 + 80 * 600


def test_a_lone_tenants_first_burst_leaves_the_fair_reserve_too():
    """A tenant alone is over its fair share from its first call: its burst stops at both reserves, so the budget
    does not stand still afterwards while the fair reserve refills."""
    store = MemoryCapacityStore()
    pacer = FamilyPacer("sonnet-4", LIMITS, store, CONFIG)
    for _ in range(200):
        pacer.enqueue("a", Amount(1, 400, 0), inline=False, now_ms=T0)
    pacer.pump(T0)
    level = store.buckets["sonnet-4"].levels
    floor = LIMITS.capacity.scaled(CONFIG.inline_reserved_share + CONFIG.fair_reserve_share)
    assert level.values()[1] >= floor.values()[1] - 1e-6  # input tokens kept: both reserves
    assert level.values()[1] < floor.values()[1] + 400 + 1e-6  # and no more than one call above them


def test_a_quiet_tenant_in_the_same_process_takes_the_fair_reserve_out_of_turn_in_one_lease_and_only_its_calls():
    """GIVEN tenant a's backlog waiting in a process, the bucket down to a's floor (both reserves), a over its share
    WHEN tenant b's three calls arrive
    THEN b's calls are granted at once from the fair reserve, ahead of a's turn, leased in one write of the shared
    bucket for just their worth (a gets nothing of the reserve); a still waits."""
    store = MemoryCapacityStore()
    pacer = FamilyPacer("sonnet-4", LIMITS, store, CONFIG)
    reserves = LIMITS.capacity.scaled(CONFIG.inline_reserved_share + CONFIG.fair_reserve_share)
    store.buckets["sonnet-4"] = SharedBucket(reserves, T0, version=1, usage={"a": 5.0})
    a_waiters = [pacer.enqueue("a", Amount(1, 400, 0), inline=False, now_ms=T0) for _ in range(10)]
    b_waiters = [pacer.enqueue("b", Amount(1, 400, 0), inline=False, now_ms=T0) for _ in range(3)]
    pacer.pump(T0)
    assert [b.grant for b in b_waiters] == [Amount(1, 400, 0)] * 3
    assert all(w.grant is None for w in a_waiters)
    assert pacer.slice.empty  # leased exactly b's calls
    assert store.buckets["sonnet-4"].version == 2  # in one write
    assert store.buckets["sonnet-4"].levels.values()[1] == pytest.approx(reserves.values()[1] - 3 * 400)
