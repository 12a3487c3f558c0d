"""The capacity model: for a workload, the load on every shared resource and the workload at which each one binds.

    python -m tools.scale                       # the four reference workloads, before and after (docs/scale.md)
    python -m tools.scale --workload one-tenant-300  [--layout before|lease-in-item|after]

Per-job writes come from the code: each step of a job's life (created, claimed, renewed, finished, its webhook
claimed, its body fixed, its attempt recorded) is the item the real adapter writes (``jobadapters.dynamo._item`` of
the job that the real transitions make), billed with DynamoDB's rules (``local.write_units``) against the table's
real layout (``local.resources.table_definition``). ``tests/test_scale.py`` runs the same job through the real
adapters on moto and checks the counted units against these figures. Quotas are AWS's published defaults
(``QUOTAS``); each row says which one to raise where raising is the answer.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from jobadapters import schema
from jobadapters.dynamo import DynamoUsageStore, _ended_lease_item, _item, _job_of, _lease_item
from jobadapters.schema import IndexShards
from jobcore import deliveries, webhooks
from jobcore.concurrency import inline_slots
from jobcore.costing import CostModel
from jobcore.deliveries import AttemptResult, RetrySchedule
from jobcore.model import Job, JobStatus, Mode, Usage, Webhook, transition
from jobcore.usage import entry_for
from local.resources import table_definition
from local.write_units import TABLE, TRANSACTION_FACTOR, Index, indexes_of, item_size, units
from stacks.config import PipelineConfig

PARTITION_WCU_S = 1_000  # write units a second one DynamoDB partition takes (table or index)
RENEW_EVERY_S = 20  # the worker's heartbeat renews a lease this often (worker.poller: 10 beats of 2 s)
T0 = 1_700_000_000_000

# AWS's default quotas (us-east-1, November 2026), and what to ask for when one binds.
QUOTAS: dict[str, tuple[float, str]] = {
    "dynamodb_table_wcu_s": (40_000, "DynamoDB on-demand table throughput (write request units/s): Service Quotas"),
    "apigw_account_rps": (10_000, "API Gateway account throttle (requests/s per region): Service Quotas"),
    "sqs_in_flight": (120_000, "SQS in-flight messages per standard queue: hard limit (more queues, or shorter holds)"),
    "fargate_launch_s": (20, "ECS Fargate task launch rate (tasks/s, sustained): Service Quotas"),
    "ecs_service_tasks": (5_000, "ECS tasks per service: Service Quotas"),
    "s3_put_prefix_s": (3_500, "S3 PUT/s per prefix: spread keys over prefixes"),
    "s3_get_prefix_s": (5_500, "S3 GET/s per prefix: spread keys over prefixes"),
}


@dataclass(frozen=True, kw_only=True)
class Workload:
    """Jobs a second, their shape, and who sends them."""

    name: str
    jobs_s: float
    inline_share: float = 0.0  # of the jobs, those that run inline (the rest are queued on the cpu lane)
    tenants: int = 1
    top_tenant_share: float = 1.0  # the busiest tenant's share of the jobs
    inline_s: float = 3.0  # an inline job's model call
    queued_s: float = 30.0  # a queued job's run
    webhook_share: float = 1.0
    result_bytes: int = 2_000
    input_bytes: int = 600
    model_rpm: float = 4_000  # the model's requests a minute on the organisation's tier (issue 21's pacer)
    calls_per_job: float = 1.0

    @property
    def running(self) -> float:
        """Queued jobs running at once (Little's law)."""
        return self.jobs_s * (1 - self.inline_share) * self.queued_s


WORKLOADS = (
    Workload(name="1000-across-100", jobs_s=1_000, inline_share=0.5, tenants=100, top_tenant_share=0.01, queued_s=30),
    Workload(name="one-tenant-300", jobs_s=300, queued_s=10_000 / 300),
    Workload(name="10000-running", jobs_s=50, tenants=10, top_tenant_share=0.1, queued_s=200),
    # The seed article's invoices: 10,000 a month, 30 s each (workloads/seed-article.json).
    Workload(name="seed-invoices", jobs_s=10_000 / (30 * 86_400), queued_s=30, result_bytes=1_500, input_bytes=3_000),
)


@dataclass(frozen=True)
class Layout:
    """The table as deployed: its indexes and their shards, the router's budget."""

    name: str
    indexes: tuple[Index, ...]
    shards: IndexShards
    inline_capped: bool
    router_concurrency: int
    config: PipelineConfig = field(default_factory=PipelineConfig)
    lease_apart: bool = True  # a worker's lease in an item of its own (False: in the job item, every renewal rewriting it)

    @cached_property
    def costs(self) -> CostModel:
        """The cost model of ``config``'s lanes and prices, as the router and the runners record costs with it."""
        return CostModel(self.config.prices(), self.config.lanes())


LAYOUTS = ("before", "lease-in-item", "after")


def layout(name: str, config: PipelineConfig | None = None) -> Layout:
    """``after``: this code's table and router; ``lease-in-item``: the same with each lease in its job's item,
    every renewal rewriting the whole item (the code before the lease item); ``before``: the layout both replaced
    (by_tenant ALL on tenant_id, 4 shards per sparse index, no inline budget, the lease in the job item)."""
    config = config or PipelineConfig()
    _, indexes = indexes_of(table_definition())
    if name in ("after", "lease-in-item"):
        return Layout(name, tuple(indexes), config.index_shards(), True, config.router_concurrency(), config,
                      lease_apart=name == "after")
    if name != "before":
        raise ValueError(f"layout {name!r}: one of {', '.join(LAYOUTS)}")
    legacy = Index(schema.LEGACY_TENANT_INDEX, ("tenant_id", schema.TENANT_INDEX_SORT_KEY), (schema.JOBS_PARTITION_KEY,), "ALL")
    others = tuple(index for index in indexes if index.name != schema.TENANT_INDEX)
    return Layout(name, (legacy, *others), IndexShards(tenant=1, watch=4, delivery=4), False,
                  config.router_concurrency(), config, lease_apart=False)


# --- per job: the writes the code makes -------------------------------------------------------------------


def job_writes(*, shards: IndexShards, lease_apart: bool, costs: CostModel, model_id: str, inline: bool, renewals: int,
               webhook: bool, result_bytes: int, input_bytes: int,
               actual_cost: bool = True) -> Iterator[tuple[str, dict[str, Any] | None, dict[str, Any]]]:
    """``(step, item before, item after)`` of each write of one job, the items the real adapter writes
    (``jobadapters.dynamo``) for the job the real transitions make; a step may write two items (a claim, its
    lease's). ``lease_apart``: the claim puts the lease in its own item, renewed alone (``DynamoJobStore``); False:
    the lease in the job item, every renewal rewriting it (the code before). Its cost as ``costs`` records it for
    ``model_id`` (the router's estimate; the runner's actual, unless ``actual_cost`` is False)."""
    lane = "inline" if inline else "cpu"
    usage = Usage(input_tokens=512, output_tokens=188, model_calls=1)
    estimate = costs.estimate(lane=lane, model_id=model_id, expected_duration_s=3.0, input_tokens=500, output_tokens=200)
    shell = len(json.dumps({"max_tokens": 1024, "messages": [{"role": "user", "content": ""}]}))
    text = "x" * max(0, input_bytes - shell)  # the input's JSON is ``input_bytes`` long
    job = Job(job_id="job_" + "0" * 32, tenant_id="tenant-0001", task="claude.messages",
              status=JobStatus.RUNNING if inline else JobStatus.QUEUED, lane="inline" if inline else "cpu",
              route_reason="inline: expected 3.0 s <= budget 20 s" if inline else "cpu: client asked for async",
              mode=Mode.AUTO if inline else Mode.ASYNC, created_at=T0, updated_at=T0, expires_at=T0 // 1000 + 30 * 86_400,
              input={"max_tokens": 1024, "messages": [{"role": "user", "content": text}]},
              webhook=Webhook("https://hooks.example.com/jobs") if webhook else None,
              cost={"estimate": estimate},
)
    if inline:  # recorded running, its lease held (in the job item) for as long as the router can live
        job = replace(job, started_at=T0, attempts=1, lease_owner="router:host:1:abcdef12", lease_expires_at=T0 + 30_000)
    yield "create", None, _item(job, shards)
    now = T0
    apart = lease_apart and not inline
    stored = job  # what the job item holds
    lease: dict[str, Any] | None = None  # the lease item
    if not inline:
        now += 1_000
        owner = "worker-cpu:ip-10-0-0-1:7:abcdef12"
        claimed = transition(job, JobStatus.RUNNING, now_ms=now, lease_owner=owner, lease_expires_at=now + 60_000)
        yield "claim", _item(job, shards), _item(claimed, shards, lease_apart=apart)
        if apart:
            lease = _lease_item(job.job_id, owner=owner, attempt=claimed.attempts, until_ms=now + 60_000, shards=shards)
            yield "claim", None, lease
        job = stored = claimed
        for _ in range(renewals):
            now += RENEW_EVERY_S * 1000
            if lease is not None:
                renewed_lease = _lease_item(job.job_id, owner=owner, attempt=job.attempts, until_ms=now + 60_000, shards=shards)
                yield "renew", lease, renewed_lease
                lease = renewed_lease
            else:
                renewed = replace(job, lease_expires_at=now + 60_000)
                yield "renew", _item(job, shards), _item(renewed, shards)
                job = stored = renewed
    now += 1_000
    shell = len(json.dumps({"content": [{"type": "text", "text": ""}]}))
    result = json.dumps({"content": [{"type": "text", "text": "y" * max(0, result_bytes - shell)}]})
    cost = dict(job.cost)
    if actual_cost:
        cost["actual"] = costs.actual(lane=lane, model_id=model_id, usage=usage, duration_s=(now - (job.started_at or now)) / 1000)
    done = transition(job, JobStatus.SUCCEEDED, now_ms=now, result_json=result, result_bytes=len(result),
                      result_expires_at=now + 30 * 86_400_000, usage=usage, cost=cost)
    if webhook:
        done = replace(done, delivery=webhooks.open_for(done, now_ms=now))
    yield "finish", _item(stored, shards, lease_apart=apart), _item(done, shards)
    if lease is not None:
        yield "finish", lease, _ended_lease_item(lease)
    if not webhook or done.delivery is None:
        return
    held = deliveries.claim(done.delivery, now_ms=now + 100, lease_ms=120_000)
    assert held is not None
    steps = [("webhook claim", held), ("webhook body", replace(held, body_ref=f"webhooks/{held.event_id}.json"))]
    fixed = steps[-1][1]
    steps.append(("webhook attempt", deliveries.record(fixed, AttemptResult(status=204, duration_ms=80), at_ms=now + 200,
                                                       now_ms=now + 280, schedule=RetrySchedule(), draw=0.5)))
    for step, delivery in steps:
        after = replace(done, delivery=delivery, version=done.version + 1)
        yield step, _item(done, shards), _item(after, shards)
        done = after


def bill(indexes: Sequence[Index], old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, int]:
    """Write units of one write, from ``old`` (None: a new item) to ``new``, by table or index (DynamoDB's rules)."""
    cost = {TABLE: units(max(item_size(old) if old else 0, item_size(new)))}
    for index in indexes:
        written = sum(count for _, count in index.writes(old, new))
        if written:
            cost[index.name] = written
    return cost


@dataclass
class PerJob:
    """Write units one job costs, by table or index, and by step."""

    units: dict[str, float]
    steps: list[tuple[str, dict[str, int]]]


def per_job(lay: Layout, *, inline: bool, renewals: int, webhook: bool, result_bytes: int = 2_000,
            input_bytes: int = 600, actual_cost: bool = True) -> PerJob:
    totals: dict[str, float] = {TABLE: 0}
    steps: dict[str, dict[str, int]] = {}  # a step's writes added up (a claim writes the job and its lease)
    renewal = 0
    for step, before, after in job_writes(shards=lay.shards, lease_apart=lay.lease_apart, costs=lay.costs,
                                          model_id=lay.config.model_id, inline=inline, renewals=renewals, webhook=webhook,
                                          result_bytes=result_bytes, input_bytes=input_bytes, actual_cost=actual_cost):
        if step == "renew":  # each renewal a step of its own
            renewal += 1
            step = "renew" if renewal == 1 else f"renew {renewal}"
        cost = bill(lay.indexes, before, after)
        if step == "finish" and not str(after[schema.JOBS_PARTITION_KEY]).startswith(schema.LEASE_ITEM_PREFIX):
            # The terminal write: one transaction with the tenant's usage counters (the day's first job: a new item).
            finished = _job_of(after)
            assert finished is not None
            cost[TABLE] = TRANSACTION_FACTOR * (cost[TABLE] + units(item_size(_usage_item(finished))))
        for where, count in cost.items():
            totals[where] = totals.get(where, 0) + count
            steps.setdefault(step, {})[where] = steps.get(step, {}).get(where, 0) + count
    return PerJob(totals, list(steps.items()))


def _usage_item(job: Job) -> dict[str, object]:
    """The usage counter item a finished job's terminal write makes (its tenant's first job of the day)."""
    entry = entry_for(job)
    return {schema.JOBS_PARTITION_KEY: DynamoUsageStore.key(entry.tenant_id, entry.day), schema.USAGE_MARK: True,
            schema.TTL_ATTRIBUTE: 1_800_000_000, **entry.attributes()}


# --- the ceilings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ceiling:
    resource: str
    load: float  # now, in the resource's unit
    limit: float
    unit: str
    raise_what: str

    @property
    def headroom(self) -> float:
        """How many times the workload fits (binds at ``headroom`` x the workload); inf when nothing loads it."""
        return math.inf if self.load <= 0 else self.limit / self.load


def ceilings(work: Workload, lay: Layout) -> list[Ceiling]:
    """Every shared resource's load under ``work`` and its limit, lowest headroom first."""
    c = lay.config
    renewals = int(work.queued_s // RENEW_EVERY_S)
    queued_s = work.jobs_s * (1 - work.inline_share)
    inline_s = work.jobs_s * work.inline_share
    mix = [(queued_s, per_job(lay, inline=False, renewals=renewals, webhook=True, result_bytes=work.result_bytes,
                              input_bytes=work.input_bytes), work.webhook_share),
           (inline_s, per_job(lay, inline=True, renewals=0, webhook=True, result_bytes=work.result_bytes,
                              input_bytes=work.input_bytes), work.webhook_share)]
    bare = [(rate, per_job(lay, inline=inline, renewals=renewals if not inline else 0, webhook=False,
                           result_bytes=work.result_bytes, input_bytes=work.input_bytes), 1 - work.webhook_share)
            for (rate, _, _), inline in zip(mix, (False, True), strict=True)]

    def rate_of(where: str) -> float:
        return sum(rate * share * job.units.get(where, 0) for rate, job, share in (*mix, *bare))

    tenant_index = next(i for i in lay.indexes if i.name in (schema.TENANT_INDEX, schema.LEGACY_TENANT_INDEX))
    shards = lay.shards
    rows = [
        Ceiling(f"tenant index ({tenant_index.name}): the busiest tenant's partition",
                rate_of(tenant_index.name) * work.top_tenant_share / shards.tenant, PARTITION_WCU_S, "WCU/s",
                "tenant_index_shards" if lay.name != "before" else "(one partition a tenant: cannot be raised)"),
        Ceiling(f"watch index ({schema.WATCH_INDEX}): each of {shards.watch} partitions",
                rate_of(schema.WATCH_INDEX) / shards.watch, PARTITION_WCU_S, "WCU/s", "watch_index_shards"),
        Ceiling(f"delivery index ({schema.DELIVERY_INDEX}): each of {shards.delivery} partitions",
                rate_of(schema.DELIVERY_INDEX) / shards.delivery, PARTITION_WCU_S, "WCU/s", "delivery_index_shards"),
        Ceiling("jobs table: all writes (its partitions are per job: never hot)",
                sum(rate_of(i.name) for i in lay.indexes) + rate_of(TABLE), QUOTAS["dynamodb_table_wcu_s"][0], "WCU/s",
                QUOTAS["dynamodb_table_wcu_s"][1]),
    ]
    # The router: an inline job holds an execution for its model call, a queued one for its writes (~50 ms).
    short_s = 0.05
    inline_load = inline_s * work.inline_s
    short_load = (queued_s + work.jobs_s) * short_s  # submissions and one poll each
    if lay.inline_capped:  # inline runs past the budget's share are queued instead: the rest never throttles
        inline_cap = inline_slots(lay.router_concurrency)
        inline_load = min(inline_load, inline_cap)
        rows.append(Ceiling("router: inline runs (past the budget they are queued, not throttled)",
                            inline_s * work.inline_s, inline_cap, "executions",
                            "lambda_concurrency_quota (or router_reserved_concurrency)"))
    router_load = inline_load + short_load
    rows.append(Ceiling("router: Lambda concurrency (all requests)", router_load, lay.router_concurrency, "executions",
                        "lambda_concurrency_quota: the account's Lambda concurrency (Service Quotas)"))
    rows += [
        Ceiling("API Gateway: usage plan, one API key (the busiest tenant)", 2 * work.jobs_s * work.top_tenant_share,
                c.api_rate_limit, "req/s", "api_rate_limit (per key; one POST and one GET a job)"),
        Ceiling("API Gateway: account throttle", 2 * work.jobs_s, QUOTAS["apigw_account_rps"][0], "req/s",
                QUOTAS["apigw_account_rps"][1]),
        Ceiling("SQS: in-flight messages, cpu queue (one held per running job)", work.running, QUOTAS["sqs_in_flight"][0],
                "messages", QUOTAS["sqs_in_flight"][1]),
        Ceiling("cpu workers: slots (worker_max_tasks x worker_concurrency)", work.running,
                c.worker_max_tasks * c.worker_concurrency, "jobs", "worker_max_tasks, worker_concurrency"),
        Ceiling("ECS: tasks per service", work.running / c.worker_concurrency, QUOTAS["ecs_service_tasks"][0], "tasks",
                QUOTAS["ecs_service_tasks"][1]),
        Ceiling("Fargate: task launches while scaling from zero", work.running / c.worker_concurrency / 60,
                QUOTAS["fargate_launch_s"][0], "tasks/s (reaching full size in a minute)", QUOTAS["fargate_launch_s"][1]),
        Ceiling("webhook dispatcher: deliveries (webhook_max_concurrency / ~0.3 s an attempt)",
                work.jobs_s * work.webhook_share, c.webhook_max_concurrency / 0.3, "deliveries/s", "webhook_max_concurrency"),
        Ceiling("S3: webhook bodies, PUT/s on webhooks/", work.jobs_s * work.webhook_share, QUOTAS["s3_put_prefix_s"][0],
                "PUT/s", QUOTAS["s3_put_prefix_s"][1]),
        Ceiling("model: requests a minute (the organisation's tier)", work.jobs_s * work.calls_per_job * 60,
                work.model_rpm, "requests/min", "the Anthropic rate limit tier (issue 21 paces to it)"),
    ]
    return sorted(rows, key=lambda row: row.headroom)


def table_rows(work: Workload, lay: Layout) -> list[str]:
    rows = ["| resource | load | limit | binds at | raise |", "|---|---|---|---|---|"]
    for row in ceilings(work, lay):
        binds = "never" if row.headroom == math.inf else f"{row.headroom:.3g}x"
        flag = " **over**" if row.headroom < 1 else ""
        rows.append(f"| {row.resource} | {row.load:,.4g} {row.unit} | {row.limit:,.0f} | {binds}{flag} | {row.raise_what} |")
    return rows


def per_job_line(lay: Layout, *, renewals: int, input_bytes: int = 600) -> str:
    job = per_job(lay, inline=False, renewals=renewals, webhook=True, input_bytes=input_bytes)
    shown = ", ".join(f"{where} {count:g}" for where, count in job.units.items())
    return f"{sum(job.units.values()):g} WCU ({shown})"


def renewal_line(lay: Layout, *, input_bytes: int) -> str:
    """Write units of one lease renewal (the second: the first is no different) of a queued job."""
    steps = dict(per_job(lay, inline=False, renewals=2, webhook=True, input_bytes=input_bytes).steps)
    shown = ", ".join(f"{where} {count:g}" for where, count in steps["renew 2"].items())
    return f"{sum(steps['renew 2'].values()):g} WCU ({shown})"


BIG_INPUT_BYTES = 64_000  # about the largest input kept in the job item (jobcore.service.INLINE_INPUT_LIMIT)


def report(workloads: Sequence[Workload]) -> str:
    before, in_item, after = (layout(name) for name in LAYOUTS)
    lines = ["# Ceilings (python -m tools.scale)", ""]
    for input_bytes in (600, BIG_INPUT_BYTES):
        for renewals in (0, 1, 10):
            lines.append(f"- a queued job with a webhook, a {input_bytes:,} B input, {renewals} lease renewal(s): "
                         + "; ".join(f"{lay.name} {per_job_line(lay, renewals=renewals, input_bytes=input_bytes)}"
                                     for lay in (before, in_item, after)))
        lines.append(f"- a lease renewal, a {input_bytes:,} B input: "
                     + "; ".join(f"{lay.name} {renewal_line(lay, input_bytes=input_bytes)}" for lay in (before, in_item, after)))
    for work in workloads:
        lines += ["", f"## {work.name}: {work.jobs_s:,.4g} jobs/s, {work.inline_share:.0%} inline, {work.tenants} tenant(s) "
                  f"(busiest {work.top_tenant_share:.0%}), {work.running:,.0f} running", ""]
        for lay in (before, after):
            lines += [f"{lay.name}:", "", *table_rows(work, lay), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=[w.name for w in WORKLOADS], help="one reference workload (default: all)")
    parser.add_argument("--layout", choices=LAYOUTS, help="one layout (default: before and after)")
    args = parser.parse_args(argv)
    chosen = [w for w in WORKLOADS if args.workload in (None, w.name)]
    if args.layout is None:
        print(report(chosen))
    else:
        for work in chosen:
            print("\n".join([f"## {work.name} ({args.layout})", "", *table_rows(work, layout(args.layout)), ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
