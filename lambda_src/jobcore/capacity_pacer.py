"""Admission: every model call waits for a grant from its family's shared budget, fairly between tenants.

- :class:`FamilyPacer` is one process's admission for one model family, a single-threaded state machine over a
  fake-able clock: callers wait in it (:meth:`FamilyPacer.enqueue`), :meth:`FamilyPacer.pump` grants them in
  order from a *slice* this process leased from the shared bucket (:func:`jobcore.capacity.lease`, one
  conditional write of the :class:`jobcore.ports.CapacityStore` per slice, not per call), and a call's
  :meth:`FamilyPacer.settle` returns what it reserved and did not use. Inline callers go first and may use the
  whole bucket; queued callers leave ``inline_reserved_share`` of it, and a tenant above its fair share also
  ``fair_reserve_share``, so a quiet tenant starts at once during another's burst. Among queued callers,
  tenants take turns by start-time fair queuing (equivalent to weighted deficit round robin: each grant
  advances its tenant's virtual time by its cost over its weight; the least advanced goes next).
- :class:`Pacer` holds one per family and lets threads wait (one lock; a condition wakes the waiters). The shared
  bucket's reads and writes run with that lock released (:class:`SharedBucketIO`), one at a time per family: a slow
  DynamoDB write stalls only the lease it is for, never the grants, settles and waits of the process's other calls.
- Each provider has its own budgets: Anthropic's per model family (RPM, ITPM, OTPM, corrected from its headers) and
  Bedrock's (tokens per minute, input and output together, :class:`jobcore.capacity.BedrockLimits`), each family's
  shared bucket its own item (Bedrock's named ``bedrock:<family>``).
- :class:`PacedModel` is the :class:`jobcore.ports.LanguageModel` that asks the pacer before each call, for the job
  :func:`pacing` bound the calling context to (its tenant, inline or queued), wherever it sits among the model's
  wrappers.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol, TypeVar

from jobcore.capacity import (
    DIMENSIONS,
    Amount,
    CapacityConfig,
    RateLimits,
    Report,
    SharedBucket,
    actual_use,
    clamp_demand,
    corrected,
    effective_limits,
    estimate_demand,
    give_back,
    lease,
    limits_for,
    ready_at,
    report_from_headers,
    share_of,
)
from jobcore.errors import CapacityWaitError, ModelUnavailableError
from jobcore.ports import CapacityStore, LanguageModel
from jobcore.providers import ANTHROPIC, BEDROCK

# A process leases at most this much of a minute's budget at once (a second's worth): small enough that a
# crashed holder's slice comes back by refill within a second, large enough that a busy process writes the
# shared item about once a second, not once a call. (A lease for the calls of tenants under their fair share may
# be as large as the fair reserve they take it from: FamilyPacer._quiet.)
SLICE_MS = 1_000
# An unused slice goes back to the shared bucket after this long with no caller waiting.
IDLE_RETURN_MS = 1_000
# Conditional writes tried per lease before giving up for now (each lost race returns the winner's bucket).
SWAP_TRIES = 5
# A report that says the API has this much less left than we think (of the limit) is written to the shared bucket.
CORRECTION_SLACK = 0.05
# How often a waiting thread looks again, at most (a grant elsewhere, a slice returned, a settled call).
POLL_MS = 250
# How long a queued job's call may wait in the worker for a grant; beyond, the job is re-queued (delayed) to wait.
QUEUED_MAX_WAIT_S = 30.0

T = TypeVar("T")


class SharedBucketIO(Protocol):
    """How a :class:`FamilyPacer` runs a read or write of the shared bucket: ``busy`` while one runs, so that no
    other starts meanwhile; ``run`` waits for the one running, then runs ``io`` (the :class:`Pacer`'s: with its process
    lock released)."""

    @property
    def busy(self) -> bool: ...

    def idle(self) -> None:
        """Return once no read or write runs (the caller then computes its change on the state as it stands)."""

    def run(self, io: Callable[[], T]) -> T: ...


class InlineIO:
    """Reads and writes in the calling thread, the state machine's own lock (if any) held: a single-threaded user."""

    busy = False

    def idle(self) -> None:
        return None

    def run(self, io: Callable[[], T]) -> T:
        return io()


@dataclass(eq=False)
class UnlockedIO:
    """A family's shared-bucket I/O under :class:`Pacer`: run with the pacer's lock released, one at a time (a thread
    that finds one running waits for it on the pacer's condition, which a finished one notifies)."""

    lock: threading.Condition
    wait: Callable[[threading.Condition, float], None]
    busy: bool = False

    def idle(self) -> None:
        while self.busy:
            self.wait(self.lock, POLL_MS / 1000)

    def run(self, io: Callable[[], T]) -> T:
        self.idle()
        self.busy = True
        self.lock.release()
        try:
            return io()
        finally:
            self.lock.acquire()
            self.busy = False
            self.lock.notify_all()


@dataclass(eq=False)
class Waiter:
    """A call waiting for a grant."""

    tenant: str
    demand: Amount
    inline: bool
    seq: int
    enqueued_ms: int
    deadline_ms: int | None = None  # the caller gives up (re-queues its job) when its grant is expected later
    grant: Amount | None = None  # set when granted: what was reserved


@dataclass(eq=False)
class FamilyPacer:
    family: str
    configured: RateLimits
    store: CapacityStore
    config: CapacityConfig
    slice_ms: int = SLICE_MS
    bucket: SharedBucket | None = None  # the last state this process saw of the shared bucket
    slice: Amount = field(default_factory=Amount)  # leased, not yet granted to a call
    waiters: list[Waiter] = field(default_factory=list)
    vtime: dict[str, float] = field(default_factory=dict)  # each tenant's virtual time (fair queuing)
    in_flight: Counter[str] = field(default_factory=Counter)
    used: dict[str, float] = field(default_factory=dict)  # each tenant's grants (cost) since the last lease
    next_try_ms: int = 0  # no lease before this (the bucket cannot grant the next call sooner)
    next_try_binding: str = "requests"  # the dimension that set next_try_ms
    idle_since_ms: int | None = None
    writes: int = 0  # conditional writes of the shared bucket, for the cost figures
    io: SharedBucketIO = field(default_factory=InlineIO, repr=False)
    keep_expected_ms: int = POLL_MS  # how long expected()'s answers are kept while nothing changes
    _seq: int = 0
    # expected()'s answers for every waiter, by floor, and the state and the moment they were computed on.
    _expectations: dict[Amount, dict[Waiter, tuple[int, str | None]]] = field(default_factory=dict, repr=False)
    _expected_on: Any = field(default=None, repr=False)
    _expected_at: int = field(default=0, repr=False)

    @property
    def limits(self) -> RateLimits:
        return effective_limits(self.configured, self.bucket)

    # --- callers ------------------------------------------------------------------------------------

    def enqueue(self, tenant: str, demand: Amount, *, inline: bool, now_ms: int, deadline_ms: int | None = None) -> Waiter:
        self._seq += 1
        if tenant not in self.vtime or not any(w.tenant == tenant for w in self.waiters):
            # A tenant that starts waiting gets no credit for its idle time: it starts level with those waiting.
            self.vtime[tenant] = max(self.vtime.get(tenant, 0.0), self._virtual_now())
        waiter = Waiter(tenant, clamp_demand(demand, self.limits, Amount()), inline, self._seq, now_ms, deadline_ms)
        self.waiters.append(waiter)
        self.idle_since_ms = None
        return waiter

    def cancel(self, waiter: Waiter, *, now_ms: int) -> None:
        if waiter in self.waiters:
            self.waiters.remove(waiter)
        if not self.waiters:
            self.idle_since_ms = now_ms

    def settle(self, waiter: Waiter, used: Amount, *, now_ms: int) -> None:
        """A granted call ended, having used ``used`` (as the API counts it): its unused reservation is this
        process's to grant again (an overrun is owed, from the slice)."""
        if waiter.grant is None:
            return
        self.in_flight[waiter.tenant] -= 1
        self.slice = self.slice + (waiter.grant - used)
        waiter.grant = None
        if not self.waiters and self.idle_since_ms is None:
            self.idle_since_ms = now_ms

    # --- granting ------------------------------------------------------------------------------------

    def pump(self, now_ms: int) -> int | None:
        """Grant every waiter that can go now, in order; when to pump again (None: nobody waits)."""
        blocked_until = self.bucket.blocked_until_ms if self.bucket is not None else 0
        if now_ms < blocked_until:  # a 429's Retry-After holds every call, even from a slice held here
            return blocked_until if self.waiters else None
        while True:
            waiter = self._next()
            if waiter is None:
                break
            if self.slice.covers(clamp_demand(waiter.demand, self.limits, self._floor(waiter))):
                self._grant(waiter)
                continue
            # The tenants under their fair share first, from the fair reserve (the others' lease would be shared
            # with them turn by turn, and under a slow store each lease is a long turn).
            quiet = self._quiet(waiter)
            if self._serve_under_share(waiter, quiet, now_ms):
                continue
            if waiter not in quiet and now_ms >= self.next_try_ms and not self.io.busy:
                if self._lease_for(waiter, now_ms):
                    continue
                # The bucket just read may tell who is under its share (before any read, no one is).
                if self._serve_under_share(waiter, self._quiet(waiter), now_ms):
                    continue
            break
        if not self.waiters:
            self._return_idle_slice(now_ms)
            return None
        # A lease due now but not tried: another thread's read or write of the shared bucket runs, and its end wakes
        # every waiter (UnlockedIO). Looking again each millisecond meanwhile was most of a busy worker's waiting.
        return max(self.next_try_ms, now_ms + (POLL_MS if self.io.busy else 1))

    def _serve_under_share(self, blocked: Waiter, quiet: list[Waiter], now_ms: int) -> bool:
        """A waiter of a tenant under its fair share may take from the fair reserve at once, whatever the lease
        cadence set for the others (``next_try_ms``): ``blocked`` itself when its tenant is under its share, else
        the next such waiter of another tenant, out of turn. A quiet tenant's calls during another's burst then start
        at once instead of each waiting for the noisy tenant's next lease. The lease is for the calls of the tenants
        under their share, all at once (one write, not one per call: under a busy store each write is a round trip
        the quiet tenant's next call waited for), so the tenants that must leave the reserve get none of it.
        ``quiet``: :meth:`_quiet` of ``blocked``. Whether one was granted."""
        under = blocked if blocked in quiet else min(quiet, key=self._order, default=None)
        if under is None:
            return False
        if not self.slice.covers(clamp_demand(under.demand, self.limits, self._floor(under))):
            if self.io.busy:
                return False
            tried_at = self.next_try_ms
            leased = self._lease_for(under, now_ms, reserve_for=quiet)
            self.next_try_ms = min(tried_at, self.next_try_ms)  # whichever can lease first
            # During the lease's write another thread may have granted or cancelled ``under``.
            if (not leased or under not in self.waiters
                    or not self.slice.covers(clamp_demand(under.demand, self.limits, self._floor(under)))):
                return False
        self._grant(under)
        self._grant_quiet(quiet)
        return True

    def _grant_quiet(self, quiet: list[Waiter]) -> None:
        """Grant what was leased for the tenants under their share (:meth:`_quiet`) to them, in their order, before
        the next turn could give it to a tenant that must leave the reserve."""
        for waiter in sorted((w for w in quiet if w in self.waiters), key=self._order):
            if (self.slice.covers(clamp_demand(waiter.demand, self.limits, self._floor(waiter)))
                    and not self.over_fair_share(waiter.tenant) and not self._capped(waiter.tenant, others=True)):
                self._grant(waiter)

    def _quiet(self, blocked: Waiter) -> list[Waiter]:
        """The queued waiters of the tenants under their fair share (none if ``blocked`` is inline), ``blocked``'s own
        tenant among them if it is under its share; the others not at their caps. A lease for one of them is for them
        all (:meth:`_lease_for`): a quiet tenant's calls arrive together, and a lease each was a round trip to the
        shared store each (under a busy local store, 0.2 s each, one after another)."""
        if blocked.inline:
            return []
        tenants = {w.tenant for w in self.waiters if not w.inline}
        under_share = {t for t in tenants if not self.over_fair_share(t)
                       and (t == blocked.tenant or not self._capped(t, others=True))}
        return [w for w in self.waiters if not w.inline and w.tenant in under_share]

    def expected(self, waiter: Waiter, now_ms: int) -> tuple[int, str | None]:
        """When ``waiter`` should be granted if this process alone drew on the bucket, and the binding dimension.

        The waiters ahead of it count in their order, except those whose own grant is expected after their
        deadline: they give up (their jobs are re-queued) before it, so they are not ahead of it for long. Counting
        them made a deep queue's last waiters re-queue their jobs for far too long, and at the end of a backlog the
        budget refilled unused until they came back.

        Every waiting thread asks on each wake, so the answers of all waiters are computed at once (one walk of the
        queue) and kept until the state they depend on changes, for at most ``keep_expected_ms`` (a dimension whose
        bucket is full moves its answers with the clock): with 40 waiters, each wake re-sorting and walking the queue
        for itself was a fifth of a busy worker's time."""
        if waiter.grant is not None:
            return now_ms, None
        floor = self._floor(waiter)
        bucket = self.bucket
        state = (self._seq, len(self.waiters), self.slice, sum(self.in_flight.values()), self.next_try_ms,
                 self.next_try_binding,
                 None if bucket is None else (bucket.version, bucket.at_ms, bucket.levels, bucket.blocked_until_ms))
        if self._expected_on != state or not 0 <= now_ms - self._expected_at <= self.keep_expected_ms:
            # Every floor's answers go with the state they were computed on (none kept for waiters long gone).
            self._expectations, self._expected_on, self._expected_at = {}, state, now_ms
        answers = self._expectations.get(floor)
        if answers is None or waiter not in answers:
            answers = self._expectations[floor] = self._expect_all(floor, now_ms)
        at, binding = answers.get(waiter, (now_ms, None))
        # Kept from a moment ago, the state unchanged since: the same moments, except that one already past is now.
        return (at, binding) if at > now_ms else (now_ms, None)

    def _expect_all(self, floor: Amount, now_ms: int) -> dict[Waiter, tuple[int, str | None]]:
        """:meth:`expected` of every waiter whose floor is ``floor``, in one walk of the queue in grant order."""
        limits = self.limits
        # Refilled to now once: each ready_at below then finds it refilled already.
        bucket = (self.bucket or SharedBucket.full(limits, now_ms)).refilled(limits, now_ms)
        # No lease is tried before next_try_ms (a whole slice's refill), and with no call in flight nothing can settle an
        # unused reservation back into the slice: no grant comes sooner than that either.
        held = self.next_try_ms > bucket.blocked_until_ms and not any(self.in_flight.values())
        need = Amount() - self.slice.positive()
        answers: dict[Waiter, tuple[int, str | None]] = {}
        for waiter in sorted(self.waiters, key=self._order):
            with_it = need + waiter.demand
            at, binding = ready_at(bucket, limits, need=with_it.positive(), floor=floor, now_ms=now_ms)
            answers[waiter] = (self.next_try_ms, self.next_try_binding) if held and self.next_try_ms > at else (at, binding)
            if waiter.deadline_ms is None or at <= waiter.deadline_ms:  # else it gives up before those behind it
                need = with_it
        return answers

    def _order(self, waiter: Waiter) -> tuple[int, float, int]:
        """The grant order of :meth:`_before` as a sort key: inline callers first, oldest first; then queued ones by
        their tenant's virtual time, oldest first."""
        if waiter.inline:
            return 0, 0.0, waiter.seq
        return 1, self.vtime.get(waiter.tenant, 0.0), waiter.seq

    def _grant(self, waiter: Waiter) -> None:
        self.slice = self.slice - waiter.demand
        waiter.grant = waiter.demand
        self.waiters.remove(waiter)
        cost = self.limits.cost(waiter.demand)
        self.used[waiter.tenant] = self.used.get(waiter.tenant, 0.0) + cost
        self.in_flight[waiter.tenant] += 1
        if not waiter.inline:
            weight = share_of(waiter.tenant, self.config.tenants).weight
            self.vtime[waiter.tenant] = max(self.vtime.get(waiter.tenant, 0.0), self._virtual_now()) + cost / weight

    def _next(self) -> Waiter | None:
        """Inline callers first (oldest first); then the queued tenant least advanced in virtual time, skipping a
        tenant at its in-flight cap or above its share cap while another tenant waits."""
        inline = [w for w in self.waiters if w.inline]
        if inline:
            return min(inline, key=lambda w: w.seq)
        tenants = {w.tenant for w in self.waiters}
        if not tenants:
            return None
        eligible = [t for t in tenants if not self._capped(t, others=len(tenants) > 1)]
        if not eligible:
            eligible = list(tenants)  # every waiting tenant is capped: the caps give way to idle capacity
        tenant = min(eligible, key=lambda t: (self.vtime.get(t, 0.0), min(w.seq for w in self.waiters if w.tenant == t)))
        return min((w for w in self.waiters if w.tenant == tenant), key=lambda w: w.seq)

    def _before(self, a: Waiter, b: Waiter) -> bool:
        return self._order(a) < self._order(b)

    def _capped(self, tenant: str, *, others: bool) -> bool:
        share = share_of(tenant, self.config.tenants)
        if share.max_in_flight is not None and self.in_flight[tenant] >= share.max_in_flight:
            return True
        others_active = others or any(t != tenant for t in self._shared_usage())
        return others_active and share.max_share < 1 and self._recent_share(tenant) >= share.max_share

    def _virtual_now(self) -> float:
        waiting = [self.vtime.get(w.tenant, 0.0) for w in self.waiters if not w.inline]
        return min(waiting) if waiting else max(self.vtime.values(), default=0.0)

    # --- the shared bucket ----------------------------------------------------------------------------

    def _shared_usage(self) -> Mapping[str, float]:
        return self.bucket.usage if self.bucket is not None else {}

    def _merged_usage(self) -> dict[str, float]:
        """Each tenant's recent use: the shared bucket's, plus this process's grants since its last lease."""
        usage = dict(self._shared_usage())
        for t, cost in self.used.items():
            usage[t] = usage.get(t, 0.0) + cost
        return usage

    def _recent_share(self, tenant: str) -> float:
        usage = self._merged_usage()
        total = sum(usage.values())
        return usage.get(tenant, 0.0) / total if total > 0 else 0.0

    def over_fair_share(self, tenant: str) -> bool:
        """Whether ``tenant`` has recently used more than its weight's share among the tenants active lately,
        counting one newcomer of weight 1: a tenant alone is over its share, so that the fair reserve is
        there when a second tenant arrives."""
        usage = self._merged_usage()
        total = sum(usage.values())
        if total <= 0:
            # Nobody has used the budget lately: this tenant is alone, so over its share from its first call.
            # (Counted as under it, its first burst took the fair reserve too, and the budget then stood still
            # while the reserve refilled: seconds of the limit lost at every burst's start.)
            return True
        if usage.get(tenant, 0.0) <= 0:
            return False
        weights = {t: share_of(t, self.config.tenants).weight for t in usage if usage[t] > 0}
        fair = weights.get(tenant, 1.0) / (sum(weights.values()) + 1.0)
        return usage[tenant] / total > fair

    def _floor(self, waiter: Waiter) -> Amount:
        """What ``waiter`` must leave in the bucket: nothing (inline), the inline reserve (queued), and the fair
        reserve too when its tenant is above its fair share."""
        if waiter.inline:
            return Amount()
        share = self.config.inline_reserved_share
        if self.over_fair_share(waiter.tenant):
            share += self.config.fair_reserve_share
        return self.limits.capacity.scaled(share)

    def _lease_for(self, waiter: Waiter, now_ms: int, *, reserve_for: list[Waiter] | None = None) -> bool:
        """Lease a slice big enough for ``waiter`` and, up to ``slice_ms`` of the limit, for those behind it; or, from
        the fair reserve, for ``reserve_for`` (``waiter`` among them) and no one else: a lease from the reserve is not
        for the tenants that must leave it. False, with ``next_try_ms`` set, when the bucket cannot grant it yet.

        What the waiter must leave (its floor) is decided on the bucket each try starts from: the tenants' use it
        records says whether the waiter's tenant is over its fair share (a lost race brings the current bucket,
        so a view from before another tenant's burst does not decide it)."""
        used = dict(self.used)
        taken = want = floor = Amount()

        def step(bucket: SharedBucket) -> SharedBucket | None:
            nonlocal taken, want, floor
            self.bucket = bucket
            limits = effective_limits(self.configured, bucket)
            floor = self._floor(waiter)
            need = (clamp_demand(waiter.demand, limits, floor) - self.slice).positive()
            # Those waiting, up to a slice; or the quiet tenants' calls alone, up to the fair reserve they take from
            # (or a slice, if larger): either way what a crashed holder can hold back.
            waiting, share = (self.waiters, self.slice_ms / 60_000) if reserve_for is None else (
                reserve_for, max(self.slice_ms / 60_000, self.config.fair_reserve_share))
            demand = sum((clamp_demand(w.demand, limits, floor) for w in waiting), Amount())
            want = Amount.of([max(n, min(d, m)) for n, d, m in zip(
                need.values(), (demand - self.slice).positive().values(), limits.capacity.scaled(share).values(), strict=True)])
            outcome = lease(bucket, limits, want=want, need=need, floor=floor, now_ms=now_ms, used=used)
            taken = outcome.slice
            return None if taken.empty else outcome.bucket  # nothing to take: nothing to write

        bucket, committed = self._swap(step, now_ms)
        if not committed:  # every race lost: what the last try computed was never written, so it is not ours
            return False
        if taken.empty:
            # Try again once a whole slice (what those waiting want, up to slice_ms of the limit) has refilled: a
            # bucket that binds is then written about once a slice per process, not once a call, and the wait
            # costs no throughput (the bucket is below its capacity meanwhile, so its refill is not lost).
            at, binding = ready_at(bucket, self.limits, need=want, floor=floor, now_ms=now_ms)
            self.next_try_ms, self.next_try_binding = max(at, now_ms + 1), binding or self.next_try_binding
            return False
        self._forget_used(used)
        self.slice = self.slice + taken
        return True

    def _forget_used(self, written: Mapping[str, float]) -> None:
        """The grants ``written`` are in the shared bucket's usage now; those made during the write are still to write."""
        for tenant, cost in written.items():
            left = self.used.get(tenant, 0.0) - cost
            if left > 1e-9:
                self.used[tenant] = left
            else:
                self.used.pop(tenant, None)

    def _return_idle_slice(self, now_ms: int, *, at_once: bool = False) -> None:
        """Give an unused slice back once nobody has waited for IDLE_RETURN_MS (``at_once``: now, on shutdown);
        an overrun owed is paid back the same way."""
        if (self.slice.empty and not any(v < -1e-6 for v in self.slice.values())) and not self.used:
            return
        idle = self.idle_since_ms is not None and now_ms - self.idle_since_ms >= IDLE_RETURN_MS
        if self.waiters or any(self.in_flight.values()) or not (idle or at_once):
            return
        amount, self.slice = self.slice, Amount()
        used = dict(self.used)
        self._forget_used(used)
        self._swap(lambda b: give_back(lease(b, effective_limits(self.configured, b), want=Amount(), need=Amount(),
                                             floor=Amount(), now_ms=now_ms, used=used).bucket,
                                       effective_limits(self.configured, b), amount, now_ms=now_ms), now_ms)

    def return_slice(self, now_ms: int) -> None:
        self._return_idle_slice(now_ms, at_once=True)

    def observe(self, report: Report) -> None:
        """Correct the shared bucket from an answer's report when it disagrees enough to matter (or a 429 blocks)."""
        bucket = self.bucket
        if report.retry_after_ms is None and bucket is not None:
            mine = bucket.refilled(self.limits, report.at_ms).levels
            slack = self.limits.capacity.scaled(CORRECTION_SLACK)
            lower = report.remaining is not None and not (report.remaining + slack).covers(mine)
            new_limits = report.limits is not None and report.limits != self.limits
            if not (lower or new_limits):
                return
        self._swap(lambda b: corrected(b, self.configured, report), report.at_ms)
        if report.retry_after_ms is not None:
            # The API refused: what this process holds is not there after all. The slice is forfeit, not returned.
            self.slice = Amount()
            self.next_try_ms = max(self.next_try_ms, report.at_ms + report.retry_after_ms)

    def _swap(self, change: Callable[[SharedBucket], SharedBucket | None], now_ms: int) -> tuple[SharedBucket, bool]:
        """Apply ``change`` to the shared bucket by conditional write, starting from the state this process last
        saw (no read: a lost race returns the stored state, and ``change`` is applied to that); the bucket as it
        now stands, and whether the change holds (written, or nothing to write). ``change`` returning None writes
        nothing. Each read and write goes through ``io`` (with a :class:`Pacer`, its lock released meanwhile, so
        ``change`` is computed on the state as it stands after the previous one)."""
        self.io.idle()
        bucket = self.bucket if self.bucket is not None else self._load(now_ms)
        for _ in range(SWAP_TRIES):
            new = change(bucket)
            if new is None:
                self.bucket = bucket
                return bucket, True
            new = replace(new, version=bucket.version + 1)
            self.writes += 1
            current = self.io.run(partial(self.store.swap, self.family, new, expected_version=bucket.version))
            if current is None:
                self.bucket = new
                return new, True
            bucket = current
        self.bucket = bucket
        # Lost every race (a crowd at the same instant): try again shortly.
        self.next_try_ms = now_ms + POLL_MS
        return bucket, False

    def _load(self, now_ms: int) -> SharedBucket:
        return self.io.run(lambda: self.store.load(self.family)) or SharedBucket.full(self.configured, now_ms)

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        limits = self.limits
        bucket = (self.bucket or self._load(now_ms)).refilled(limits, now_ms)
        self.bucket = self.bucket or bucket
        capacity = limits.capacity
        return {
            "family": self.family, "limits": limits.to_dict(), "configured": self.configured.to_dict(),
            "available": bucket.levels.positive().to_dict(),
            "in_use": {name: round(1 - max(0.0, level) / cap, 4)
                       for name, level, cap in zip(DIMENSIONS, bucket.levels.values(), capacity.values(), strict=True)},
            "blocked_until_ms": bucket.blocked_until_ms if bucket.blocked_until_ms > now_ms else None,
            "tenant_use": dict(bucket.usage),
        }


@dataclass(frozen=True)
class Grant:
    pacer: FamilyPacer
    waiter: Waiter
    waited_ms: int


@dataclass(eq=False)
class Pacer:
    """This process's admission for every model family, for many threads: one lock; a waiting thread sleeps on a
    condition until a grant may have become possible (a settle, a cancel) or its next lease time comes.

    ``wait(condition, seconds)`` is how a thread waits (injected: tests advance a fake clock in it)."""

    store: CapacityStore
    config: CapacityConfig
    clock_ms: Callable[[], int]
    wait: Callable[[threading.Condition, float], None] = field(default=lambda c, s: c.wait(s), repr=False)
    families: dict[str, FamilyPacer] = field(default_factory=dict)
    # Not reentrant: UnlockedIO releases it around a read or write, which must free it whatever the caller's depth.
    _lock: threading.Condition = field(default_factory=lambda: threading.Condition(threading.Lock()), repr=False)

    def family_of(self, model_id: str, provider: str = ANTHROPIC) -> FamilyPacer | None:
        if provider == BEDROCK:
            on_bedrock = limits_for(model_id, self.config.bedrock)
            found = None if on_bedrock is None else (f"{BEDROCK}:{on_bedrock[0]}", on_bedrock[1].as_rate_limits())
        else:
            found = limits_for(model_id, self.config.limits)
        if found is None:
            return None
        family, limits = found
        if family not in self.families:
            self.families[family] = FamilyPacer(family, limits, self.store, self.config, io=UnlockedIO(self._lock, self.wait))
        return self.families[family]

    def demand(self, params: Mapping[str, Any], model_id: str, provider: str = ANTHROPIC) -> Amount:
        """What a call will count against its provider's budget, before it is made."""
        on_bedrock = limits_for(model_id, self.config.bedrock) if provider == BEDROCK else None
        return estimate_demand(params) if on_bedrock is None else on_bedrock[1].demand(params)

    def use(self, response: Mapping[str, Any], model_id: str, provider: str = ANTHROPIC) -> Amount:
        """What an answered call counted against its provider's budget."""
        on_bedrock = limits_for(model_id, self.config.bedrock) if provider == BEDROCK else None
        return actual_use(response) if on_bedrock is None else on_bedrock[1].use(response)

    def acquire(self, model_id: str, tenant: str, demand: Amount, *, inline: bool, max_wait_s: float,
                provider: str = ANTHROPIC) -> Grant | None:
        """A grant for one call of ``demand``, waiting up to ``max_wait_s`` for it; None when no limit applies to
        the model. CapacityWaitError, without waiting, when the grant is expected later than that."""
        with self._lock:
            family = self.family_of(model_id, provider)
            if family is None:
                return None
            start = self.clock_ms()
            deadline = start + int(max_wait_s * 1000)
            waiter = family.enqueue(tenant, demand, inline=inline, now_ms=start, deadline_ms=deadline)
            while True:
                now = self.clock_ms()
                next_ms = family.pump(now)
                if waiter.grant is not None:
                    self._lock.notify_all()
                    return Grant(family, waiter, now - start)
                expected, dimension = family.expected(waiter, now)
                if expected > deadline:
                    family.cancel(waiter, now_ms=now)
                    self._lock.notify_all()
                    # Only a 429's Retry-After blocks with no dimension binding (a model wait, counted as such);
                    # a deadline reached while others ahead took what refilled is a wait for capacity still.
                    blocked = family.bucket is not None and family.bucket.blocked_until_ms > now
                    raise CapacityWaitError(
                        f"no grant from the model's budget ({family.family}) before {expected - now} ms", expected_at_ms=expected,
                        now_ms=now, dimension=dimension or (None if blocked else family.next_try_binding))
                # Until the next lease may be tried (or a settle, a cancel, a grant, a write's end wakes it): not until
                # ``expected``, which can be past already while the lease waits for a whole slice to refill (the
                # waiter then looked again every millisecond).
                until = min(next_ms if next_ms is not None else now + POLL_MS, now + POLL_MS)
                self.wait(self._lock, max(0.001, (until - now) / 1000))

    def settle(self, grant: Grant, used: Amount) -> None:
        with self._lock:
            grant.pacer.settle(grant.waiter, used, now_ms=self.clock_ms())
            self._lock.notify_all()

    def observe(self, model_id: str, headers: Mapping[str, str]) -> None:
        """An answer's (or a 429's) rate-limit headers, for the shared bucket's correction."""
        with self._lock:
            family = self.family_of(model_id)
            report = report_from_headers(headers, now_ms=self.clock_ms())
            if family is not None and report is not None:
                family.observe(report)
                self._lock.notify_all()

    def release(self) -> None:
        """Give every unused slice back (a worker stopping)."""
        with self._lock:
            now = self.clock_ms()
            for family in list(self.families.values()):  # a return releases the lock: families may be added meanwhile
                family.return_slice(now)

    def snapshot(self, model_ids: list[str]) -> list[dict[str, Any]]:
        """Each budget that applies to one of ``model_ids``, Anthropic's then Bedrock's (its limits as configured, its
        one token dimension named ``tokens``)."""
        with self._lock:
            now = self.clock_ms()
            seen, views = set(), []
            for provider in (ANTHROPIC, BEDROCK):
                for model_id in model_ids:
                    family = self.family_of(model_id, provider)
                    if family is None or family.family in seen:
                        continue
                    seen.add(family.family)
                    view = {"provider": provider, **family.snapshot(now)}
                    if provider == BEDROCK:
                        view = _bedrock_view(view, limits_for(model_id, self.config.bedrock))
                    views.append(view)
            return views


def _bedrock_view(view: dict[str, Any], found: tuple[str, Any] | None) -> dict[str, Any]:
    """A Bedrock budget's snapshot in its own terms: its configured quotas, its tokens (the input dimension), and its
    requests where it has a request quota."""
    if found is None:
        return view
    family, limits = found
    view["family"] = family
    view["limits"] = view["configured"] = limits.to_dict()
    for key in ("available", "in_use"):
        levels = view[key]
        view[key] = {"tokens": levels["input_tokens"],
                     **({"requests": levels["requests"]} if limits.rpm else {})}
    return view


@dataclass(eq=False)
class Pacing:
    """The job whose model calls are being made, for :class:`PacedModel` (:func:`pacing` binds it to the calling
    context): its tenant, its path (inline or queued), how long a call may wait for a grant, and how long its
    calls have waited in all (``waited_ms``, for the job's record; its calls may run in several threads)."""

    tenant: str
    inline: bool = False
    max_wait_s: float = QUEUED_MAX_WAIT_S
    waited_ms: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def waited(self, ms: int) -> None:
        with self._lock:
            self.waited_ms += ms


# The job the current context's model calls are for: set by whoever runs the job (the runner for a queued job, the
# service for an inline one), read by PacedModel however deep in the model's wrappers it is (failover, deadline,
# metering). A thread started for the job's calls must run in a copy of its starter's context
# (contextvars.copy_context().run), as the runner's and the tasks' pools do: the copy shares the same Pacing.
_PACING: ContextVar[Pacing | None] = ContextVar("jobcore.capacity_pacer.pacing", default=None)


@contextmanager
def pacing(tenant: str, *, inline: bool, max_wait_s: float = QUEUED_MAX_WAIT_S) -> Iterator[Pacing]:
    """Pace every model call made in this context (and in threads given a copy of it) as ``tenant``'s job."""
    job = Pacing(tenant, inline, max_wait_s)
    token = _PACING.set(job)
    try:
        yield job
    finally:
        _PACING.reset(token)


def current_pacing() -> Pacing | None:
    """The job the current context's model calls are paced for (None: none bound)."""
    return _PACING.get()


@dataclass
class PacedModel:
    """A LanguageModel that takes a grant before each call and settles it after (:class:`Pacer`), for the job the
    calling context is bound to (:func:`pacing`); unbound, it paces as tenant "-", queued. ``provider``: whose budget
    (the model id is the one the task asks for; a provider's adapter maps it to its own)."""

    llm: LanguageModel
    pacer: Pacer
    default_model: str
    provider: str = ANTHROPIC

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        job = _PACING.get() or Pacing("-")
        model_id = str(params.get("model") or self.default_model)
        max_wait = job.max_wait_s if timeout_s is None or not job.inline else min(job.max_wait_s, timeout_s)
        grant = self.pacer.acquire(model_id, job.tenant, self.pacer.demand(params, model_id, self.provider), inline=job.inline,
                                   max_wait_s=max_wait, provider=self.provider)
        if grant is None:
            return self.llm.create(params, timeout_s=timeout_s)
        job.waited(grant.waited_ms)
        try:
            response = self.llm.create(params, timeout_s=timeout_s)
        except ModelUnavailableError as error:
            # A 429: the API had less than we thought, and its headers (through the adapter's observer) have
            # corrected the shared bucket; the reservation is forfeit. Any other failure used nothing.
            self.pacer.settle(grant, grant.waiter.grant or Amount() if error.status == 429 else Amount())
            raise
        except BaseException:
            self.pacer.settle(grant, Amount())
            raise
        self.pacer.settle(grant, self.pacer.use(response, model_id, self.provider))
        return response
