"""A simulated load of the control path: one tenant submitting 300 jobs a second, each with a webhook and running
33 s (10,000 at once), against the real core (the router's JobService, the runner's claim and finish, the
heartbeat's lease renewals, the webhook dispatcher's delivery) over an in-memory store that bills every write like
DynamoDB (``local.write_units``: the real adapter's items, the lease's own item beside the job's, the table's real
indexes) and throttles a write whose table or index partition is past its 1,000 write units in the current second,
as DynamoDB does (a throttled index throttles the table's write).

Run on the layout this code replaced (``tools.scale.layout("before")``: by_tenant, ALL, one partition a tenant;
4 watch shards) it throttles; on today's it does not, each partition's peak is what the model predicts, and so are
each job's write units, submit to delivered webhook (``simulate("lease-in-item")``: the lease in the job item).
The clock is simulated (no sleeps); ``SECONDS`` of load keep the run to a few seconds of CPU each."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from jobadapters.dynamo import _ended_lease_item, _item, _lease_item
from jobadapters.schema import JOBS_PARTITION_KEY
from jobcore.costing import CostModel
from jobcore.deliveries import AttemptResult
from jobcore.dispatch import Dispatcher
from jobcore.errors import StoreUnavailableError
from jobcore.model import ACTIVE, Job, JobStatus, Mode, Usage, Webhook
from jobcore.pricing import default_prices
from jobcore.requests import SubmitRequest
from local.write_units import TABLE, TRANSACTION_FACTOR, attribute_sizes, units
from tests import fakes
from tools import scale

RATE_S = 300
RUN_S = 10_000 / RATE_S  # so 10,000 run at once
SECONDS = 45  # past RUN_S + the first renewals: the steady state's writes all happen
BEFORE_SECONDS = 3
PARTITION = scale.PARTITION_WCU_S
MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "Summarise the attached invoice, please."}]}
WEBHOOK = Webhook("https://hooks.example.com/jobs")


@dataclass
class Meter:
    """Write units by (index, partition) in each simulated second; a write past a partition's limit is refused.
    Each write's units are also added to its job's total (``by_job``), its lease item's to the job's."""

    layout: scale.Layout
    clock: fakes.FakeClock
    used: dict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    throttled: Counter[str] = field(default_factory=Counter)
    by_job: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # The attribute sizes of each item billed as a write's new item, until it is billed as the next write's old one
    # (the same dict: MeteredStore hands it back while its job is unchanged): each item is sized once, for the table
    # and every index, not once per index and again as the next write's old item.
    sized: dict[int, tuple[dict[str, Any], dict[str, int]]] = field(default_factory=dict)

    def sizes(self, item: dict[str, Any]) -> dict[str, int]:
        known = self.sized.get(id(item))
        if known is None or known[0] is not item:
            known = self.sized[id(item)] = (item, attribute_sizes(item))
        return known[1]

    def charge(self, job_id: str, before: dict[str, Any] | None, after: dict[str, Any], *, factor: int = 1) -> None:
        """Bill one write of an item of ``job_id`` (its job item, its lease item, its tenant's usage counters), from
        ``before`` (None: new); ``factor`` 2 for a write in a transaction (DynamoDB bills it double)."""
        second = self.clock.ms() // 1000
        old = sum(self.sizes(before).values()) if before else 0
        bill = [(TABLE, str(after[JOBS_PARTITION_KEY]), factor * units(max(old, sum(self.sizes(after).values()))))]
        for index in self.layout.indexes:
            bill += [(index.name, partition, count) for partition, count in index.writes(before, after, sizes=self.sizes)]
        if before is not None:
            self.sized.pop(id(before), None)  # billed as an old item: it is not billed again
        over = [where for where, partition, count in bill if self.used[(second, where, partition)] + count > PARTITION]
        if over:
            self.throttled[over[0]] += 1
            raise StoreUnavailableError(f"throttled: a partition of {over[0]} is past {PARTITION} WCU/s")
        for where, partition, count in bill:
            self.used[(second, where, partition)] += count
            self.by_job[job_id][where] += count

    def peak(self, where: str) -> int:
        """The busiest partition-second of ``where``."""
        return max((count for (_, name, _), count in self.used.items() if name == where), default=0)


class MeteredStore(fakes.MemoryJobStore):
    """The in-memory JobStore, every write billed (and refused when throttled) by ``meter`` first, as the DynamoDB
    adapter writes it: a claim puts the lease in an item of its own (when the layout keeps it apart), a renewal
    writes that item alone, the run's end ends it."""

    def __init__(self, meter: Meter) -> None:
        super().__init__()
        self.meter = meter
        self.leases: dict[str, dict[str, Any]] = {}  # the lease items of the runs under way, by job id
        self.items: dict[str, tuple[Job, bool, dict[str, Any]]] = {}  # the last item built for each job

    def _item(self, job: Job, *, lease_apart: bool | None = None) -> dict[str, Any]:
        """The job's item as the adapter writes it (its lease apart while it has one); the same dict as last time
        while the job and that choice are unchanged, so that the meter sizes it once."""
        apart = job.job_id in self.leases if lease_apart is None else lease_apart
        last = self.items.get(job.job_id)
        if last is not None and last[0] is job and last[1] == apart:
            return last[2]
        item = _item(job, self.meter.layout.shards, lease_apart=apart)
        self.items[job.job_id] = (job, apart, item)
        return item

    def create(self, job: Job) -> None:
        self.meter.charge(job.job_id, None, self._item(job))
        super().create(job)

    def save(self, job: Job, *, expected_version: int, usage: Any = None) -> None:
        old = self.jobs.get(job.job_id)
        lease = self.leases.get(job.job_id)
        # A terminal write with its usage is one transaction with the tenant's counter item: both billed twice (the
        # counter as a new item, the day's first job, as tools.scale bills it).
        factor = 1 if usage is None else TRANSACTION_FACTOR
        self.meter.charge(job.job_id, self._item(old) if old is not None else None,
                          self._item(job, lease_apart=lease is not None and job.status in ACTIVE),
                          factor=factor)
        if usage is not None:
            self.meter.charge(job.job_id, None, scale._usage_item(job), factor=factor)
        super().save(job, expected_version=expected_version, usage=usage)
        if lease is not None and job.status not in ACTIVE:  # the run ended: its lease item leaves the watch index
            del self.leases[job.job_id]
            self.meter.charge(job.job_id, lease, _ended_lease_item(lease))

    def claim(self, job_id: str, *, owner: str, now_ms: int, lease_expires_at: int) -> tuple[Job | None, bool]:
        old = self.jobs.get(job_id)
        claimed, ok = super().claim(job_id, owner=owner, now_ms=now_ms, lease_expires_at=lease_expires_at)
        if ok and claimed is not None and old is not None:
            apart = self.meter.layout.lease_apart
            try:
                self.meter.charge(job_id, self._item(old), self._item(claimed, lease_apart=apart))
            except StoreUnavailableError:
                self.jobs[job_id] = old
                raise
            if apart:
                lease = _lease_item(job_id, owner=owner, attempt=claimed.attempts, until_ms=lease_expires_at,
                                    shards=self.meter.layout.shards)
                self.meter.charge(job_id, None, lease)  # throttled: the claim stands all the same (see the adapter)
                self.leases[job_id] = lease
        return claimed, ok

    def renew_lease(self, job_id: str, *, owner: str, until_ms: int) -> bool:
        old = self.jobs.get(job_id)
        lease = self.leases.get(job_id)
        if not super().renew_lease(job_id, owner=owner, until_ms=until_ms):
            return False
        try:
            if lease is not None:
                renewed = _lease_item(job_id, owner=owner, attempt=int(lease["lease_attempt"]), until_ms=until_ms,
                                      shards=self.meter.layout.shards)
                self.meter.charge(job_id, lease, renewed)
                self.leases[job_id] = renewed
            else:
                self.meter.charge(job_id, self._item(old), self._item(self.jobs[job_id]))  # type: ignore[arg-type]
        except StoreUnavailableError:
            self.jobs[job_id] = old  # type: ignore[assignment]
            raise
        return True


class Receiver:
    """The tenants' webhook endpoints: every delivery answered 204 at once."""

    def post(self, url: str, *, event_id: str, body: bytes, timeout_s: float) -> AttemptResult:
        return AttemptResult(status=204, duration_ms=20)


@dataclass
class Run:
    meter: Meter
    failed: Counter[str]
    finished: int
    delivered: list[str]  # the jobs whose webhook was delivered, submit to delivery within the run


def simulate(layout_name: str, seconds: int = SECONDS) -> Run:
    costs = CostModel(default_prices(), fakes.LANES)  # jobs carry their estimate and actual cost, as deployed
    h = fakes.harness(cost_model=costs)
    meter = Meter(scale.layout(layout_name), h.clock)
    store = MeteredStore(meter)
    h.runner.context.store = store
    h.runner.context.usage = store.usage  # as deployed: each terminal write adds its job to its tenant's counters
    service, _ = fakes.make_service(h=h, cost_model=costs)
    dispatcher = Dispatcher(store=store, blobs=h.blobs, sender=Receiver(), queue=h.deliveries,
                            render=lambda job: {"id": job.job_id}, clock_ms=h.clock.ms)
    failed: Counter[str] = Counter()
    delivered: list[str] = []
    due: dict[int, list[tuple[str, str]]] = defaultdict(list)  # second -> (what, job id)
    start_s = h.clock.ms() // 1000
    finished = 0
    for tick in range(seconds):
        second = start_s + tick
        for n in range(RATE_S):  # the submissions of this second, spread over it
            h.clock.now_ms = second * 1000 + n * 1000 // RATE_S
            try:
                job = service.submit(SubmitRequest(task="claude.messages", input=MESSAGES, mode=Mode.ASYNC, webhook=WEBHOOK),
                                     tenant_id="tenant-big").job
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
                    if store.renew_lease(job_id, owner="worker-1", until_ms=now + h.runner.lease_ms):
                        due[second + scale.RENEW_EVERY_S].append(("renew", job_id))
                elif what == "finish":
                    job = store.jobs[job_id]
                    usage = Usage(input_tokens=40, output_tokens=12, model_calls=1)
                    actual = costs.actual(lane=job.lane, model_id="claude-default", usage=usage, duration_s=RUN_S)
                    h.runner.finish(job, JobStatus.SUCCEEDED, result_json='{"text": "ok"}', result_bytes=14, usage=usage,
                                    cost={**job.cost, "actual": actual})
                    finished += 1
                    due[second + 1].append(("deliver", job_id))  # the dispatcher takes the hand-over
                else:
                    done = dispatcher.deliver(job_id)
                    if done is not None and done.delivery is not None and not done.delivery.pending:
                        delivered.append(job_id)
            except StoreUnavailableError:
                failed[what] += 1
    return Run(meter, failed, finished, delivered)


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    # The old layout's throttling shows in the first seconds (the first claims): its run stops there.
    return {"before": simulate("before", seconds=BEFORE_SECONDS), "after": simulate("after")}


def test_before_the_tenant_partition_throttles_the_writes_of_one_busy_tenant(runs):
    before = runs["before"]
    assert before.meter.throttled["by_tenant"] > 0 and sum(before.failed.values()) > 0


def test_after_one_tenant_at_300_a_second_with_10000_running_meets_no_throttle(runs):
    after = runs["after"]
    assert after.meter.throttled == Counter() and after.failed == Counter()
    assert after.finished == RATE_S * (SECONDS - math.ceil(RUN_S) - 1)  # every job due to finish did
    assert len(after.delivered) == after.finished - RATE_S  # and its webhook, but those finished in the last second
    for where in ("by_tenant_list", "by_watch", "by_delivery_due", TABLE):
        assert after.meter.peak(where) < PARTITION


def simulated_per_job(run: Run) -> list[Counter[str]]:
    """The write units of each job whose whole life (submit, claim, renewal, finish, webhook) fell in the run."""
    return [run.meter.by_job[job_id] for job_id in run.delivered]


def test_the_write_units_per_queued_job_webhook_included_are_the_models(runs):
    """Each job's writes as simulated (the real core's writes, its lease item's and the dispatcher's delivery's,
    billed as DynamoDB bills the adapter's items) against the model's per-job figure: every index the same, the
    table within 2 units (the model's job has its own id, tenant, prices and result, tens of bytes off)."""
    model = scale.per_job(scale.layout("after"), inline=False, renewals=int(RUN_S // scale.RENEW_EVERY_S), webhook=True,
                          input_bytes=len(json.dumps(MESSAGES)), result_bytes=14).units
    jobs = simulated_per_job(runs["after"])
    assert len(jobs) == RATE_S * 9
    for simulated in jobs:
        assert {k: v for k, v in simulated.items() if k != TABLE} == {k: v for k, v in model.items() if k != TABLE and v}
        assert abs(simulated[TABLE] - model[TABLE]) <= 2, (simulated, model)


def test_the_peaks_are_the_models(runs):
    """Each index's busiest partition-second in the simulation is the model's per-partition load, within 15 %
    (the simulation's jobs are the core's own, the model's its representative one; both billed alike)."""
    work = scale.Workload(name="sim", jobs_s=RATE_S, queued_s=RUN_S, webhook_share=1.0, result_bytes=14,
                          input_bytes=len(json.dumps(MESSAGES)))
    rows = {row.resource.split(" (")[0]: row for row in scale.ceilings(work, scale.layout("after"))}
    after = runs["after"].meter
    assert after.peak("by_tenant_list") == pytest.approx(rows["tenant index"].load, rel=0.15)
    assert after.peak("by_watch") == pytest.approx(rows["watch index"].load, rel=0.15)
    assert after.peak("by_delivery_due") == pytest.approx(rows["delivery index"].load, rel=0.15)
