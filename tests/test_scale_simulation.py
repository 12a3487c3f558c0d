"""A simulated load of the control path: one tenant submitting 300 jobs a second, each running 33 s (10,000 at
once), against the real core (the router's JobService, the runner's claim and finish, the heartbeat's lease
renewals) over an in-memory store that bills every write like DynamoDB (``local.write_units``: the real adapter's
items, the table's real indexes) and throttles a write whose table or index partition is past its 1,000 write
units in the current second, as DynamoDB does (a throttled index throttles the table's write).

Run on the layout this code replaced (``tools.scale.layout("before")``: by_tenant, ALL, one partition a tenant;
4 watch shards) it throttles; on today's it does not, and each partition's peak is what the model predicts.
The clock is simulated (no sleeps); ``SECONDS`` of load keep the run to a few seconds of CPU.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from jobadapters.dynamo import _item
from jobcore.costing import CostModel
from jobcore.errors import StoreUnavailableError
from jobcore.model import Job, JobStatus, Mode, Usage
from jobcore.pricing import default_prices
from jobcore.requests import SubmitRequest
from local.write_units import TABLE, item_size, units
from tests import fakes
from tools import scale

RATE_S = 300
RUN_S = 10_000 / RATE_S  # so 10,000 run at once
SECONDS = 45  # past RUN_S + the first renewals: the steady state's writes all happen
PARTITION = scale.PARTITION_WCU_S
MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "Summarise the attached invoice, please."}]}


@dataclass
class Meter:
    """Write units by (index, partition) in each simulated second; a write past a partition's limit is refused."""

    layout: scale.Layout
    clock: fakes.FakeClock
    used: dict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    throttled: Counter[str] = field(default_factory=Counter)

    def charge(self, old: Job | None, new: Job) -> None:
        before = _item(old, self.layout.shards) if old is not None else None
        after = _item(new, self.layout.shards)
        second = self.clock.ms() // 1000
        bill = [(TABLE, new.job_id, units(max(item_size(before) if before else 0, item_size(after))))]
        for index in self.layout.indexes:
            bill += [(index.name, partition, count) for partition, count in index.writes(before, after)]
        over = [where for where, partition, count in bill if self.used[(second, where, partition)] + count > PARTITION]
        if over:
            self.throttled[over[0]] += 1
            raise StoreUnavailableError(f"throttled: a partition of {over[0]} is past {PARTITION} WCU/s")
        for where, partition, count in bill:
            self.used[(second, where, partition)] += count

    def peak(self, where: str) -> int:
        """The busiest partition-second of ``where``."""
        return max((count for (_, name, _), count in self.used.items() if name == where), default=0)


class MeteredStore(fakes.MemoryJobStore):
    """The in-memory JobStore, every write billed (and refused when throttled) by ``meter`` first."""

    def __init__(self, meter: Meter) -> None:
        super().__init__()
        self.meter = meter

    def create(self, job: Job) -> None:
        self.meter.charge(None, job)
        super().create(job)

    def save(self, job: Job, *, expected_version: int, usage: Any = None) -> None:
        self.meter.charge(self.jobs.get(job.job_id), job)
        super().save(job, expected_version=expected_version, usage=usage)

    def claim(self, job_id: str, *, owner: str, now_ms: int, lease_expires_at: int) -> tuple[Job | None, bool]:
        old = self.jobs.get(job_id)
        claimed, ok = super().claim(job_id, owner=owner, now_ms=now_ms, lease_expires_at=lease_expires_at)
        if ok:
            try:
                self.meter.charge(old, claimed)  # type: ignore[arg-type]
            except StoreUnavailableError:
                self.jobs[job_id] = old  # type: ignore[assignment]
                raise
        return claimed, ok

    def renew_lease(self, job_id: str, *, owner: str, until_ms: int) -> JobStatus | None:
        old = self.jobs.get(job_id)
        status = super().renew_lease(job_id, owner=owner, until_ms=until_ms)
        if status is not None:
            try:
                self.meter.charge(old, self.jobs[job_id])
            except StoreUnavailableError:
                self.jobs[job_id] = old  # type: ignore[assignment]
                raise
        return status


@dataclass
class Run:
    meter: Meter
    failed: Counter[str]
    finished: int


def simulate(layout_name: str) -> Run:
    costs = CostModel(default_prices(), fakes.LANES)  # jobs carry their estimate and actual cost, as deployed
    h = fakes.harness(cost_model=costs)
    meter = Meter(scale.layout(layout_name), h.clock)
    store = MeteredStore(meter)
    h.runner.store = store
    service, _ = fakes.make_service(h=h, cost_model=costs)
    failed: Counter[str] = Counter()
    due: dict[int, list[tuple[str, str]]] = defaultdict(list)  # second -> (what, job id)
    start_s = h.clock.ms() // 1000
    finished = 0
    for tick in range(SECONDS):
        second = start_s + tick
        for n in range(RATE_S):  # the submissions of this second, spread over it
            h.clock.now_ms = second * 1000 + n * 1000 // RATE_S
            try:
                job = service.submit(SubmitRequest(task="claude.messages", input=MESSAGES, mode=Mode.ASYNC), tenant_id="tenant-big").job
            except StoreUnavailableError:
                failed["submit"] += 1
                continue
            due[second + 1].append(("claim", job.job_id))
        h.clock.now_ms = second * 1000 + 999
        for what, job_id in due.pop(second, []):
            now = h.clock.ms()
            try:
                if what == "claim":
                    store.claim(job_id, owner="worker-1", now_ms=now, lease_expires_at=now + h.runner.lease_ms)
                    due[second + scale.RENEW_EVERY_S].append(("renew", job_id))
                    due[second + math.ceil(RUN_S)].append(("finish", job_id))
                elif what == "renew":
                    if store.renew_lease(job_id, owner="worker-1", until_ms=now + h.runner.lease_ms) is not None:
                        due[second + scale.RENEW_EVERY_S].append(("renew", job_id))
                else:
                    job = store.jobs[job_id]
                    usage = Usage(input_tokens=40, output_tokens=12, model_calls=1)
                    actual = costs.actual(lane=job.lane, model_id="claude-default", usage=usage, duration_s=RUN_S)
                    h.runner.finish(job, JobStatus.SUCCEEDED, result_json='{"text": "ok"}', result_bytes=14, usage=usage,
                                    cost={**job.cost, "actual": actual})
                    finished += 1
            except StoreUnavailableError:
                failed[what] += 1
    return Run(meter, failed, finished)


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    return {name: simulate(name) for name in ("before", "after")}


def test_before_the_tenant_partition_throttles_the_writes_of_one_busy_tenant(runs):
    before = runs["before"]
    assert before.meter.throttled["by_tenant"] > 0 and sum(before.failed.values()) > 0


def test_after_one_tenant_at_300_a_second_with_10000_running_meets_no_throttle(runs):
    after = runs["after"]
    assert after.meter.throttled == Counter() and after.failed == Counter()
    assert after.finished == RATE_S * (SECONDS - math.ceil(RUN_S) - 1)  # every job due to finish did
    for where in ("by_tenant_list", "by_watch", TABLE):
        assert after.meter.peak(where) < PARTITION


def test_the_peaks_are_the_models(runs):
    """Each index's busiest partition-second in the simulation is the model's per-partition load, within 15 %
    (the simulation's jobs are the core's own, the model's its representative one; both billed alike)."""
    work = scale.Workload(name="sim", jobs_s=RATE_S, queued_s=RUN_S, webhook_share=0.0, result_bytes=14,
                          input_bytes=len(str(MESSAGES)))
    rows = {row.resource.split(" (")[0]: row for row in scale.ceilings(work, scale.layout("after"))}
    after = runs["after"].meter
    assert after.peak("by_tenant_list") == pytest.approx(rows["tenant index"].load, rel=0.15)
    assert after.peak("by_watch") == pytest.approx(rows["watch index"].load, rel=0.15)
