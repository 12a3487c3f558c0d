"""Waiting for the model's shared budget is not failing: a queued job without a grant is re-queued until the next
grant is expected (no receive, no attempt, no error), its view says why, and the time does not count toward the
model-wait limit; a real 429 storm still ends as model_unavailable after the limit, as documented; the expected
grants a waiter is told are those computed afresh."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from jobcore.capacity import Amount, CapacityConfig, RateLimits, SharedBucket, TenantShare, ready_at
from jobcore.capacity_pacer import FamilyPacer, PacedModel, Pacer
from jobcore.errors import ModelUnavailableError
from jobcore.limits import MODEL_WAIT_LIMIT_S
from jobcore.model import Job, JobStatus, ModelWait
from jobcore.tasks import RunContext
from jobcore.views import iso, job_view
from tests.fakes import MemoryCapacityStore, ScriptedModel, harness, text_response

LIMITS = RateLimits(rpm=120, itpm=40_000, otpm=16_000)
MODEL = "claude-sonnet-4-5"
MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def world(model: ScriptedModel):
    h = harness()
    store = MemoryCapacityStore()
    pacer = Pacer(store, CapacityConfig(limits={"sonnet-4": LIMITS}), h.clock.ms, wait=lambda _c, s: h.clock.advance(s))
    job = Job(job_id="job_1", tenant_id="t", task="claude.messages", status=JobStatus.QUEUED, lane="cpu",
              route_reason="cpu: test", created_at=h.clock.ms(), updated_at=h.clock.ms(), input=MESSAGES)
    h.store.create(job)
    ctx = RunContext(llm=PacedModel(model, pacer, MODEL), model_id=MODEL)
    return h, store, pacer, ctx


def test_a_job_waits_two_hours_for_the_budget_without_spending_attempts_and_then_succeeds():
    """GIVEN a budget two hours in debt on input tokens (other work used far more than it reserved)
    WHEN a worker handles the job's messages as they come
    THEN each is re-queued, delayed until the next grant is expected (at most SQS's 15 minutes), its view saying
    so; the model is not called until then; the job succeeds on its first attempt, two hours later, not failed
    by the one-hour model-wait limit, and its view shows how long it waited for capacity."""
    model = ScriptedModel([text_response("at last")])
    h, store, _, ctx = world(model)
    store.buckets["sonnet-4"] = SharedBucket(Amount(120, -40_000 * 120, 16_000), h.clock.ms(), version=1)
    start = h.clock.ms()
    delays = []
    while (outcome := h.runner.process("job_1", ctx=ctx, receive_count=1, max_receives=5)).requeue:
        job = h.store.get("job_1")
        assert job.status is JobStatus.QUEUED and job.attempts == 0 and job.error is None and not job.attempt_errors
        view = job_view(job)
        assert view["waiting"].startswith(f"model capacity (input tokens); next grant expected at {iso(job.model_wait.next_attempt_at)}")
        delays.append(outcome.retry_in_s)
        h.clock.advance(outcome.retry_in_s)
    done = h.store.get("job_1")

    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1 and len(model.calls) == 1
    assert max(delays) == 900 and h.clock.ms() - start >= 2 * 3600_000 > MODEL_WAIT_LIMIT_S * 1000
    assert job_view(done)["capacity_wait_ms"] == done.capacity_wait_ms >= 2 * 3600_000


def test_a_429_storm_longer_than_the_model_wait_limit_still_ends_as_model_unavailable():
    """GIVEN a model that answers every call 429 (retry-after: 1), its headers reaching the pacer
    WHEN the job is handled for as long as it keeps coming back
    THEN it waits as for any rate-limited model (the pacer's block counts toward the limit too) and fails as
    model_unavailable once it has waited the limit, about an hour."""
    pacer_box: list[Pacer] = []

    def refuse(params):
        pacer_box[0].observe(MODEL, {"retry-after": "1"})
        raise ModelUnavailableError("the model was rate-limited (429)", retry_after_s=1, status=429)

    model = ScriptedModel(default=refuse)
    h, _, pacer, ctx = world(model)
    pacer_box.append(pacer)
    start = h.clock.ms()
    while (outcome := h.runner.process("job_1", ctx=ctx, receive_count=1, max_receives=5)).requeue:
        h.clock.advance(outcome.retry_in_s)
    failed = h.store.get("job_1")

    assert failed.status is JobStatus.FAILED and failed.error["type"] == "model_unavailable"
    assert "gave up after waiting 60 min (the limit is 60 min)" in failed.error["message"]
    assert MODEL_WAIT_LIMIT_S * 1000 <= h.clock.ms() - start < (MODEL_WAIT_LIMIT_S + 60) * 1000
    assert len(model.calls) > 5


def test_time_waited_for_the_budget_does_not_count_toward_the_model_wait_limit():
    """GIVEN a job that waited 50 minutes for the budget, then meets a rate-limited model
    THEN its model-wait limit ends an hour after its first wait plus those 50 minutes."""
    h, _, _, _ = world(ScriptedModel())
    job = h.store.get("job_1")
    waited = replace(job, model_wait=ModelWait(since=h.clock.ms(), waits=4, reason="model capacity (input tokens)",
                                               capacity=True, excluded_ms=50 * 60_000))
    h.clock.advance(100 * 60)  # 100 minutes later: 50 of them counted
    error = ModelUnavailableError("the model was rate-limited (429)", retry_after_s=1, status=429)
    assert h.runner.model_wait(waited, error, now_ms=h.clock.ms()) is not None
    h.clock.advance(10 * 60)
    assert h.runner.model_wait(waited, error, now_ms=h.clock.ms()) is None


def test_a_grant_is_not_expected_before_the_next_lease_try_and_a_wait_past_it_is_a_capacity_wait():
    """GIVEN a process that tries no lease before a whole slice has refilled (next_try_ms), while the bucket would
    fit one more call now
    WHEN a queued call's grant is expected
    THEN it is expected at that try, not now; and when that is past the call's wait, the error names the
    dimension, so the runner re-queues the job for capacity (no attempt spent) instead of backing off as if the
    model had failed (that cost a job an attempt and 40 s at the end of a backlog)."""
    h, _, pacer, _ = world(ScriptedModel())
    family = pacer.family_of(MODEL)
    assert family is not None
    now = h.clock.ms()
    family.bucket = SharedBucket.full(LIMITS, now)
    family.next_try_ms, family.next_try_binding = now + 45_000, "input_tokens"
    waiter = family.enqueue("t", Amount(1, 100, 100), inline=False, now_ms=now)
    assert family.expected(waiter, now) == (now + 45_000, "input_tokens")
    family.cancel(waiter, now_ms=now)
    with pytest.raises(ModelUnavailableError) as raised:
        pacer.acquire(MODEL, "t", Amount(1, 100, 100), inline=False, max_wait_s=30)
    assert raised.value.dimension == "input_tokens" and raised.value.expected_at_ms == now + 45_000


class GatedCapacityStore(MemoryCapacityStore):
    """A shared bucket whose writes, once ``armed``, hang until ``opened`` (a slow or stalled DynamoDB)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.entered, self.opened = threading.Event(), threading.Event()

    def swap(self, family: str, bucket: Any, *, expected_version: int) -> Any:
        if self.armed:
            self.entered.set()
            self.opened.wait(30)
        return super().swap(family, bucket, expected_version=expected_version)


def test_a_hung_write_of_the_shared_bucket_stalls_only_the_lease_it_is_for():
    """GIVEN a worker's pacer holding a slice that covers one more small call
    WHEN one thread's big call needs a new lease and the shared bucket's write hangs
    THEN another thread's call is granted from the slice, and a finished call settles, meanwhile (the pacer's lock is
    not held across the write); once the write completes the big call is granted too."""
    store = GatedCapacityStore()
    pacer = Pacer(store, CapacityConfig(limits={"sonnet-4": LIMITS}), lambda: int(time.time() * 1000))
    small = Amount(1, 10, 100)
    first = pacer.acquire(MODEL, "t", small, inline=False, max_wait_s=5)
    assert first is not None
    pacer.settle(first, Amount())  # it used nothing: the slice holds a small call's reservation again
    store.armed = True
    granted: dict[str, Any] = {}

    def big_call() -> None:
        granted["big"] = pacer.acquire(MODEL, "t", Amount(1, 5_000, 100), inline=False, max_wait_s=20)

    def small_call() -> None:
        grant = pacer.acquire(MODEL, "t", small, inline=True, max_wait_s=5)
        assert grant is not None
        pacer.settle(grant, small)
        granted["small"] = grant

    big, during = threading.Thread(target=big_call), threading.Thread(target=small_call)
    try:
        big.start()
        assert store.entered.wait(10), "the big call's lease never reached the store"
        during.start()
        during.join(10)
        assert not during.is_alive() and "small" in granted, "a call the slice covers waited for another call's write"
        assert not store.opened.is_set() and "big" not in granted
    finally:
        store.opened.set()
        big.join(30)
        during.join(30)
    assert granted["big"] is not None and granted["big"].waiter.grant == Amount(1, 5_000, 100)


def fresh_expected(family: Any, waiter: Any, now: int) -> tuple[int, str | None]:
    """FamilyPacer.expected computed from nothing, for one waiter: the waiters ahead in grant order, less those that
    give up before their grant; a grant held back to the next lease try when no call in flight can settle."""
    if waiter.grant is not None:
        return now, None
    limits, floor = family.limits, family._floor(waiter)
    bucket = (family.bucket or SharedBucket.full(limits, now)).refilled(limits, now)
    need = Amount() - family.slice.positive()
    for other in sorted((w for w in family.waiters if family._order(w) < family._order(waiter)), key=family._order):
        with_other = need + other.demand
        other_at = ready_at(bucket, limits, need=with_other.positive(), floor=floor, now_ms=now)[0]
        if other.deadline_ms is None or other_at <= other.deadline_ms:
            need = with_other
    at, binding = ready_at(bucket, limits, need=(need + waiter.demand).positive(), floor=floor, now_ms=now)
    if family.next_try_ms > at and family.next_try_ms > bucket.blocked_until_ms and not any(family.in_flight.values()):
        return family.next_try_ms, family.next_try_binding
    return at, binding


# One seed in the quick tier (make test-fast), all four in the full run.
@pytest.mark.parametrize("seed", [0, *(pytest.param(seed, marks=pytest.mark.slow) for seed in range(1, 4))])
def test_expected_grants_are_those_computed_afresh_whatever_changes(seed: int):
    """GIVEN one process's queue of calls from three tenants (weights 1, 1, 3; some inline, some with deadlines) at a
    binding limit, changing at random (calls enqueued, granted, settled, cancelled; time passing), its answers kept
    no time at all
    WHEN every waiter asks when its grant is expected, after each change and again later with nothing changed
    THEN each answer is the one computed from nothing at that moment: one walk of the queue answers every waiter as
    each one's own walk did, and a change of any kind is seen (no answer kept across it)."""
    rng = random.Random(seed)
    clock = [1_000_000]
    config = CapacityConfig(limits={"sonnet-4": LIMITS}, tenants={"c": TenantShare(weight=3)})
    family = FamilyPacer("sonnet-4", LIMITS, MemoryCapacityStore(), config, keep_expected_ms=0)
    granted: list[Any] = []
    compared = grants = 0
    def check(at: int) -> None:
        nonlocal compared
        for waiter in family.waiters:
            assert family.expected(waiter, at) == fresh_expected(family, waiter, at), (seed, waiter)
            compared += 1

    for _ in range(150):
        now = clock[0]
        check(now)  # answers computed now: the change below, at the same moment, must not leave them standing
        action = rng.random()
        if action < 0.45:
            family.enqueue(rng.choice("abc"), Amount(1, rng.randint(200, 4_000), rng.randint(50, 2_000)),
                           inline=rng.random() < 0.1, now_ms=now,
                           deadline_ms=now + rng.randint(1_000, 60_000) if rng.random() < 0.7 else None)
        elif action < 0.65 and granted:
            waiter = granted.pop(rng.randrange(len(granted)))
            family.settle(waiter, Amount(1, waiter.grant.input_tokens * rng.random(), waiter.grant.output_tokens * rng.random()),
                          now_ms=now)
        elif action < 0.75 and family.waiters:
            family.cancel(rng.choice(family.waiters), now_ms=now)
        else:
            clock[0] += rng.randint(0, 3_000)
        waiting = list(family.waiters)
        family.pump(clock[0])
        granted += [w for w in waiting if w.grant is not None]
        grants += sum(w.grant is not None for w in waiting)
        check(clock[0])
        check(clock[0])  # again, nothing changed
        check(clock[0] + rng.randint(1, 2_000))  # later, nothing changed
    assert compared > 1_000 and grants > 20  # the queue was deep and moving


def test_expected_grants_are_kept_a_moment_while_nothing_changes_then_computed_again():
    """GIVEN a queue of 30 calls behind a bucket whose output tokens are full (their answers move with the clock)
    WHEN the waiters ask within keep_expected_ms of the first answer, nothing having changed, then after it
    THEN within it they get the first answers (one walk of the queue for all), after it answers computed afresh."""
    config = CapacityConfig(limits={"sonnet-4": LIMITS})
    family = FamilyPacer("sonnet-4", LIMITS, MemoryCapacityStore(), config)
    now = 1_000_000
    family.bucket = SharedBucket(Amount(120, 0, 16_000), now, version=1)  # no input tokens left, output full
    waiters = [family.enqueue("t", Amount(1, 1_000, 1_500), inline=False, now_ms=now) for _ in range(30)]
    first = [family.expected(w, now) for w in waiters]
    assert first == [fresh_expected(family, w, now) for w in waiters]
    later = now + family.keep_expected_ms
    assert [family.expected(w, later) for w in waiters] == first != [fresh_expected(family, w, later) for w in waiters]
    after = later + 1
    assert [family.expected(w, after) for w in waiters] == [fresh_expected(family, w, after) for w in waiters]
