"""DynamoCapacityStore against moto: a bucket per family, written only on its version; a lost race returns the winner."""

from __future__ import annotations

import dataclasses

from jobadapters.capacity_store import DynamoCapacityStore
from jobcore.capacity import Amount, CapacityConfig, RateLimits, SharedBucket
from jobcore.capacity_pacer import FamilyPacer

LIMITS = RateLimits(rpm=120, itpm=40_000, otpm=16_000)
T0 = 1_700_000_000_000


def test_a_bucket_is_created_once_then_written_only_on_its_version_and_a_lost_race_returns_the_winner(clients):
    store = DynamoCapacityStore(clients.table)
    assert store.load("sonnet-4") is None
    first = dataclasses.replace(SharedBucket(Amount(100, 30_000, 9_000.5), T0, usage={"a": 0.25}), version=1)
    assert store.swap("sonnet-4", first, expected_version=0) is None
    assert store.load("sonnet-4") == first
    # A second creator loses, and learns the stored bucket from the refused write.
    assert store.swap("sonnet-4", dataclasses.replace(first, at_ms=T0 + 1), expected_version=0) == first
    second = dataclasses.replace(first, levels=Amount(99, 29_000, 9_000), version=2)
    assert store.swap("sonnet-4", second, expected_version=1) is None
    assert store.swap("sonnet-4", dataclasses.replace(second, version=2), expected_version=1) == second
    assert store.load("haiku-4") is None


def test_two_processes_pacing_through_dynamodb_never_grant_more_than_the_bucket_holds(clients):
    """GIVEN two processes' pacers over the same table
    WHEN each asks for more calls than a minute's budget holds, at one instant
    THEN together they are granted exactly what the full bucket holds above the inline reserve, no more."""
    config = CapacityConfig(limits={"*": LIMITS}, inline_reserved_share=0.1)
    pacers = [FamilyPacer("sonnet-4", LIMITS, DynamoCapacityStore(clients.table), config, slice_ms=60_000) for _ in range(2)]
    waiters = [p.enqueue(f"t{i}", Amount(1, 100, 100), inline=False, now_ms=T0) for p in pacers for i in range(80)]
    for _ in range(3):
        for pacer in pacers:
            pacer.next_try_ms = 0
            pacer.pump(T0)
    granted = sum(1 for w in waiters if w.grant is not None)
    assert granted == 108  # 120 requests less the inline reserve's 12
