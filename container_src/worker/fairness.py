"""Which received job a worker starts next: deficit round robin over tenants, with per-tenant in-flight caps.

SQS fair queues (the lane messages' ``MessageGroupId`` is the tenant) keep a quiet tenant's messages from waiting
behind a noisy one's backlog, but know no weights or caps. A worker holds a few messages more than it has slots,
and starts them in this order:

- Tenants with jobs waiting take turns (deficit round robin): each turn a tenant's deficit grows by its weight
  (``tenant_shares``), and it starts jobs while its deficit covers one (a job costs 1). Weights 1:3 start jobs
  1:3 while both have work waiting; a tenant with nothing waiting keeps no credit.
- ``max_in_flight`` caps a tenant's jobs running in this worker while another tenant has a job waiting; with no
  one else waiting it bursts into the idle slots.
- Within a tenant, jobs start in the order they were received.
- A few slots beyond the regular ones (:meth:`FairSlots.take_under_share`) start at once the jobs of a tenant
  running fewer than its fair share of the slots (its weight's share among the tenants running or waiting here):
  a tenant that arrives while another fills every slot does not wait for one of its jobs to end. A tenant alone
  is at its share with every slot, so it never uses them.

Single-threaded: the poller calls it under its lock. Pure (no clock, no I/O).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from jobcore.capacity import TenantShare, share_of

T = TypeVar("T")

JOB_COST = 1.0


@dataclass
class FairSlots(Generic[T]):
    """Jobs waiting for a slot, by tenant; :meth:`take` the next to start, :meth:`done` when it has ended."""

    shares: Mapping[str, TenantShare] = field(default_factory=dict)  # by tenant key ("*": every other)
    _waiting: dict[Hashable, deque[T]] = field(default_factory=dict)
    _ring: deque[Hashable] = field(default_factory=deque)  # tenants with jobs waiting, whose turn is next first
    _deficit: dict[Hashable, float] = field(default_factory=dict)
    _topped: set[Hashable] = field(default_factory=set)  # tenants given their quantum for the current turn
    running: Counter[Hashable] = field(default_factory=Counter)

    def add(self, tenant: Hashable, item: T) -> None:
        queue = self._waiting.get(tenant)
        if queue is None:
            queue = self._waiting[tenant] = deque()
            self._ring.append(tenant)
            self._deficit[tenant] = 0.0
        queue.append(item)

    def take(self) -> tuple[Hashable, T] | None:
        """The next job to start and its tenant (counted as running until :meth:`done`); None if none waits."""
        if not self._ring:
            return None
        others = len(self._ring) > 1
        # Every waiting tenant at its cap: the caps give way, so that no slot idles while a job waits.
        caps_hold = not all(self._capped(t, others=others) for t in self._ring)
        while True:
            tenant = self._ring[0]
            if caps_hold and self._capped(tenant, others=others):
                self._end_turn(tenant)
                continue
            if tenant not in self._topped:
                self._deficit[tenant] += self._weight(tenant)
                self._topped.add(tenant)
            if self._deficit[tenant] >= JOB_COST:
                return tenant, self._start(tenant)
            self._end_turn(tenant)

    def take_under_share(self, slots: int) -> tuple[Hashable, T] | None:
        """The next job of a tenant running fewer than its fair share of ``slots`` (in the tenants' turn order) and
        not at its ``max_in_flight`` cap, for a slot beyond the regular ones; None when every waiting tenant has its
        share. Not charged to its deficit: the regular turns stay as they were."""
        active = set(self._ring) | set(self.running)
        total = sum(self._weight(t) for t in active)
        others = len(self._ring) > 1
        for tenant in self._ring:
            if self.running[tenant] < slots * self._weight(tenant) / total and not self._capped(tenant, others=others):
                return tenant, self._start(tenant, cost=0.0)
        return None

    def newcomer_under_share(self, tenant: Hashable, slots: int) -> bool:
        """Whether ``tenant``, with what it runs and holds here, is under its fair share of ``slots`` while another
        tenant is active: a quiet tenant arriving beside a busy one (a tenant alone is never under its share)."""
        others = (set(self._ring) | set(self.running)) - {tenant}
        if not others:
            return False
        total = sum(self._weight(t) for t in others | {tenant})
        held = self.running[tenant] + len(self._waiting.get(tenant, ()))
        return held < slots * self._weight(tenant) / total

    def done(self, tenant: Hashable) -> None:
        self.running[tenant] -= 1
        if self.running[tenant] <= 0:
            del self.running[tenant]

    def drain(self) -> list[T]:
        """Every job still waiting (none is started any more: the worker is stopping)."""
        items = [item for queue in self._waiting.values() for item in queue]
        self._waiting.clear()
        self._ring.clear()
        self._deficit.clear()
        self._topped.clear()
        return items

    def waiting(self) -> dict[Hashable, int]:
        return {tenant: len(queue) for tenant, queue in self._waiting.items()}

    def _start(self, tenant: Hashable, cost: float = JOB_COST) -> T:
        self._deficit[tenant] -= cost
        self.running[tenant] += 1
        queue = self._waiting[tenant]
        item = queue.popleft()
        if not queue:  # nothing waiting: no credit kept for later
            del self._waiting[tenant], self._deficit[tenant]
            self._topped.discard(tenant)
            self._ring.remove(tenant)
        return item

    def _end_turn(self, tenant: Hashable) -> None:
        self._topped.discard(tenant)
        self._ring.rotate(-1)

    def _weight(self, tenant: Hashable) -> float:
        return self._share(tenant).weight

    def _share(self, tenant: Hashable) -> TenantShare:
        return share_of(tenant, self.shares) if isinstance(tenant, str) else share_of("", self.shares)

    def _capped(self, tenant: Hashable, *, others: bool) -> bool:
        cap = self._share(tenant).max_in_flight
        return others and cap is not None and self.running[tenant] >= cap
