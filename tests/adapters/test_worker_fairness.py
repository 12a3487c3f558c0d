"""The worker's choice among the jobs it holds: deficit round robin over tenants, caps that give way to idle slots."""

from __future__ import annotations

from collections import Counter

import pytest

from jobcore.capacity import TenantShare
from worker.fairness import FairSlots


def _simulate(slots: FairSlots[str], *, concurrency: int, ticks: int, durations: dict[str, int]) -> Counter[str]:
    """Run on a fake clock: each tick the jobs due end, and free slots are filled in the scheduler's order."""
    started: Counter[str] = Counter()
    running: list[tuple[int, str]] = []  # (ends at tick, tenant)
    for now in range(ticks):
        for end, tenant in [r for r in running if r[0] <= now]:
            running.remove((end, tenant))
            slots.done(tenant)
        while len(running) < concurrency:
            taken = slots.take()
            if taken is None:
                break
            tenant, _ = taken
            started[str(tenant)] += 1
            running.append((now + durations[str(tenant)], str(tenant)))
    return started


def _backlog(slots: FairSlots[str], tenant: str, n: int) -> None:
    for i in range(n):
        slots.add(tenant, f"{tenant}-{i}")


@pytest.mark.parametrize(("weights", "durations"), [
    ({"A": 1, "B": 1}, {"A": 3, "B": 3}),
    ({"A": 1, "B": 3}, {"A": 3, "B": 3}),
    ({"A": 1, "B": 3}, {"A": 2, "B": 5}),  # slots are shared by starts, not by time: B's long jobs still start 3:1
])
def test_tenants_with_backlogs_start_jobs_in_their_weights_ratio(weights, durations):
    slots: FairSlots[str] = FairSlots({t: TenantShare(weight=w) for t, w in weights.items()})
    _backlog(slots, "A", 10_000)
    _backlog(slots, "B", 10_000)
    started = _simulate(slots, concurrency=8, ticks=600, durations=durations)
    want = weights["B"] / weights["A"]
    assert started["B"] / started["A"] == pytest.approx(want, rel=0.1)


def test_a_quiet_tenants_jobs_start_before_a_noisy_tenants_backlog():
    slots: FairSlots[str] = FairSlots()
    _backlog(slots, "A", 300)
    for _ in range(4):  # A has been running alone for a while
        slots.take()
    _backlog(slots, "B", 2)
    order = [slots.take() for _ in range(4)]
    assert [tenant for tenant, _ in order if tenant is not None][:4] in (["B", "A", "B", "A"], ["A", "B", "A", "B"])
    assert [item for _, item in order if item.startswith("B")] == ["B-0", "B-1"]


def test_within_a_tenant_jobs_start_in_the_order_received():
    slots: FairSlots[str] = FairSlots()
    _backlog(slots, "A", 3)
    assert [slots.take() for _ in range(4)] == [("A", "A-0"), ("A", "A-1"), ("A", "A-2"), None]


def test_a_capped_tenant_waits_while_another_has_work_waiting():
    slots: FairSlots[str] = FairSlots({"A": TenantShare(max_in_flight=2)})
    _backlog(slots, "A", 100)
    _backlog(slots, "B", 100)
    started = [slots.take() for _ in range(10)]
    assert Counter(t for t, _ in started if t) == {"A": 2, "B": 8}
    assert slots.running["A"] == 2
    slots.done("A")  # one of A's ends: A may start one more, no more
    assert Counter(t for t, _ in (slots.take() for _ in range(5)) if t) == {"A": 1, "B": 4}


def test_a_capped_tenant_alone_bursts_into_idle_slots():
    slots: FairSlots[str] = FairSlots({"A": TenantShare(max_in_flight=2)})
    _backlog(slots, "A", 10)
    assert sum(slots.take() is not None for _ in range(6)) == 6
    assert slots.running["A"] == 6
    _backlog(slots, "B", 1)  # someone else waits: the cap holds again, B goes first
    assert slots.take() == ("B", "B-0")
    assert slots.take() == ("A", "A-6")  # B has nothing waiting: A alone again, bursts


def test_caps_give_way_when_every_waiting_tenant_is_capped():
    slots: FairSlots[str] = FairSlots({"*": TenantShare(max_in_flight=1)})
    _backlog(slots, "A", 3)
    _backlog(slots, "B", 3)
    assert sum(slots.take() is not None for _ in range(6)) == 6  # no slot idles while a job waits


def test_a_tenant_gets_no_credit_for_its_idle_time():
    slots: FairSlots[str] = FairSlots({"A": TenantShare(weight=1), "B": TenantShare(weight=1)})
    _backlog(slots, "B", 1)
    assert slots.take() == ("B", "B-0")
    _backlog(slots, "A", 50)
    for _ in range(20):  # A alone for a while
        slots.take()
    _backlog(slots, "B", 50)
    tenants = [t for t, _ in (slots.take() for _ in range(10)) if t]
    assert Counter(tenants) == {"A": 5, "B": 5}  # B does not catch up on A's 20: 1:1 from now


def test_a_fractional_weight_still_gets_its_turns():
    slots: FairSlots[str] = FairSlots({"A": TenantShare(weight=0.25), "B": TenantShare(weight=1)})
    _backlog(slots, "A", 100)
    _backlog(slots, "B", 100)
    tenants = Counter(t for t, _ in (slots.take() for _ in range(50)) if t)
    assert tenants["B"] / tenants["A"] == pytest.approx(4, rel=0.1)


def test_drain_returns_what_waits_and_starts_nothing_more():
    slots: FairSlots[str] = FairSlots()
    _backlog(slots, "A", 2)
    _backlog(slots, "B", 1)
    first = slots.take()
    assert first is not None
    assert sorted(slots.drain() + [first[1]]) == ["A-0", "A-1", "B-0"]
    assert slots.take() is None
    assert slots.waiting() == {}


def test_a_tenant_alone_never_takes_a_slot_beyond_the_regular_ones():
    slots: FairSlots[str] = FairSlots()
    _backlog(slots, "A", 20)
    for _ in range(8):
        slots.take()
    assert slots.take_under_share(8) is None  # A runs 8 of 8: its whole share


def test_a_tenant_under_its_share_starts_beyond_the_regular_slots_until_it_has_its_share():
    slots: FairSlots[str] = FairSlots({"B": TenantShare(weight=3)})
    _backlog(slots, "A", 20)
    for _ in range(8):  # A fills every regular slot
        slots.take()
    _backlog(slots, "B", 10)
    extra = [slots.take_under_share(8) for _ in range(7)]
    # B's share of 8 slots at weight 3 against A's 1 is 6: six of B's jobs start at once, then none
    assert [item for _, item in filter(None, extra)] == [f"B-{i}" for i in range(6)]
    assert extra[6] is None
    assert slots.running == {"A": 8, "B": 6}
    # The regular turns are unchanged: the next regular start is still decided by deficit round robin
    assert slots.take() is not None


def test_a_slot_beyond_the_regular_ones_skips_a_tenant_with_its_share_for_one_without():
    slots: FairSlots[str] = FairSlots()
    _backlog(slots, "A", 20)
    for _ in range(4):
        slots.take()
    _backlog(slots, "B", 1)
    _backlog(slots, "C", 1)
    for _ in range(3):  # B and C run 1 each; A keeps the regular slots it has
        slots.take_under_share(4)
    assert slots.running == {"A": 4, "B": 1, "C": 1}
    assert slots.waiting() == {"A": 16}


def test_a_slot_beyond_the_regular_ones_respects_the_tenants_in_flight_cap():
    slots: FairSlots[str] = FairSlots({"B": TenantShare(max_in_flight=2)})
    _backlog(slots, "A", 20)
    for _ in range(8):
        slots.take()
    _backlog(slots, "B", 10)
    started = [slots.take_under_share(8) for _ in range(3)]
    assert [item for _, item in filter(None, started)] == ["B-0", "B-1"]  # under its share of 4, but capped at 2
    assert started[2] is None


def test_a_newcomer_is_under_its_share_only_beside_another_tenant_and_until_it_has_its_share():
    slots: FairSlots[str] = FairSlots()
    _backlog(slots, "a", 6)
    for _ in range(4):
        slots.take()
    assert not slots.newcomer_under_share("a", 4)  # a tenant alone is never under its share
    assert slots.newcomer_under_share("b", 4)  # a newcomer beside a busy tenant is
    slots.add("b", "b0")
    assert slots.newcomer_under_share("b", 4)  # one held of its share of 2
    slots.add("b", "b1")
    assert not slots.newcomer_under_share("b", 4)  # two held: its share
