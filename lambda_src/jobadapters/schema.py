"""Names of the persistent shapes, shared by the runtime, the CDK constructs and the local runtime.

Changing one of these changes a stateful resource in every deployed account: don't.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from jobcore.schema_keys import INPUTS_PREFIX, RESULTS_PREFIX, UPLOADS_PREFIX  # noqa: F401 - re-exported for the constructs

if TYPE_CHECKING:
    from jobcore.lanes import Lane

JOBS_PARTITION_KEY = "job_id"
# A tenant's jobs, newest first (GET /v1/jobs). It replaced ``by_tenant`` (partition key tenant_id, projection
# ALL: every write of every job of a tenant, lease renewals included, went to one partition at full size). This
# one holds only what a list entry shows (INCLUDE: TENANT_INDEX_ATTRIBUTES), so a write that changes none of it
# (a lease renewal, a watch entry) does not touch it, and its partition key spreads a tenant's jobs over
# ``IndexShards.tenant`` partitions (``<tenant id>#<k>``), merged again when listed (docs/scale.md).
TENANT_INDEX = "by_tenant_list"
LEGACY_TENANT_INDEX = "by_tenant"  # dropped by the second step of the two-step deploy (docs/deploy.md)
TENANT_INDEX_PARTITION_KEY = "tenant_shard"
TENANT_INDEX_SORT_KEY = "created_at"
# What GET /v1/jobs shows of a job (jobcore.views.job_view without a result), besides the index's keys and the
# table's: a job read from the index has these and nothing else (no input, hints, result text or lease).
TENANT_INDEX_ATTRIBUTES = (
    "tenant_id", "task", "status", "lane", "route_reason", "mode", "updated_at", "started_at", "finished_at",
    "queue_deadline_at", "model_wait", "result_expires_at", "result_ref", "result_bytes", "attempts", "batch_id",
    "metadata", "source", "usage", "cost", "error", "attempt_errors", "webhook", "delivery", "files",
    # Shown in a list entry as in GET (the waiting line, the time waited for capacity, the trace, the cap):
    # an INCLUDE projection cannot change in place, so every field the list view reads is here from the start.
    "unsent_since", "capacity_wait_ms", "trace_parent", "max_cost_usd",
)
TTL_ATTRIBUTE = "expires_at"
# A sparse index of the jobs whose webhook delivery is pending, by when the dispatcher's sweep must act
# on it (jobcore.deliveries.Delivery.sweep_at).
# Only pending deliveries carry these attributes; the shard spreads them over a few partitions.
DELIVERY_INDEX = "by_delivery_due"
DELIVERY_INDEX_PARTITION_KEY = "delivery_shard"
DELIVERY_INDEX_SORT_KEY = "delivery_due_at"
# The jobs the sweeper watches (running: by lease end; queued with a deadline: by the deadline), sparse.
WATCH_INDEX = "by_watch"
WATCH_INDEX_PARTITION_KEY = "watch_shard"
WATCH_INDEX_SORT_KEY = "watch_at"
# A worker's lease, kept apart from its job (jobadapters.dynamo): one small item, LEASE_ITEM_PREFIX + the job's id,
# holding the owner, the attempt it was claimed for and its end, in the watch index by that end; renewed alone (1
# write unit, and its keys-only watch entry moved), whatever the job's size. The job item then carries LEASE_APART_MARK
# (the attempt whose lease is apart) and no watch entry of its own. No tenant_id and no job status: never listed,
# never read as a job; the same TTL, a day past its end.
LEASE_ITEM_PREFIX = "lease#"
LEASE_APART_MARK = "lease_apart"
MAX_INDEX_SHARDS = 256


@dataclass(frozen=True)
class IndexShards:
    """How many partitions each index spreads its items over: the tenant index per tenant, the sparse indexes in
    all. A partition takes about 1,000 write units a second; ``python -m tools.scale`` says how many a workload
    needs. Configured (``tenant_index_shards``, ``watch_index_shards``, ``delivery_index_shards``) and handed to
    every function as ``INDEX_SHARDS``. A count may be raised on a live table (an item keeps the shard it was
    written to, below the new count, and every read covers them all); lowering one would hide the items written
    to the shards above it until they are written again."""

    tenant: int = 1
    watch: int = 4
    delivery: int = 4

    def __post_init__(self) -> None:
        for name, count in asdict(self).items():
            if not (isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_INDEX_SHARDS):
                raise ValueError(f"{name} index shards = {count!r}: expected a whole number from 1 to {MAX_INDEX_SHARDS}")

    def to_env(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> IndexShards:
        """``{"tenant": 4, "watch": 8, "delivery": 4}`` (a key left out keeps its default); ValueError naming the problem."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"index shards {text!r}: expected a JSON object") from None
        if not isinstance(data, dict) or set(data) - {"tenant", "watch", "delivery"}:
            raise ValueError(f"index shards {text!r}: expected a JSON object of tenant, watch and delivery counts")
        return cls(**data)


INDEX_SHARDS_ENV = "INDEX_SHARDS"
# Idempotency-Key records share the jobs table (same key attribute, their own ids, the same TTL);
# this attribute marks them, and they carry no tenant_id, so the tenant index never lists them.
IDEMPOTENCY_MARK = "idempotency_key"
# The webhook queue: the dispatcher Lambda's timeout is a minute, and SQS wants the visibility timeout
# of an event-source queue at six times that; a hand-over it cannot process after this many receives
# goes to the DLQ (the sweep hands the delivery over again while it is pending).
WEBHOOK_VISIBILITY_S = 360
WEBHOOK_MAX_RECEIVES = 5
# The batch lane's queue: a message is held only within a collector pass (5 min at most, the collector
# Lambda's timeout) plus a minute, then deleted or released; never the lane's 24 h time limit.
COLLECTOR_TIMEOUT_S = 300  # the batch collector Lambda's timeout: one pass
BATCH_QUEUE_VISIBILITY_S = COLLECTOR_TIMEOUT_S + 60


def queue_visibility_s(lane: Lane) -> int:
    """A lane queue's visibility timeout: a worker lane's is its job time limit (the worker extends it while a
    job runs); the batch lane's is one collector pass and a minute (its 24 h limit is over SQS's 12 h)."""
    return BATCH_QUEUE_VISIBILITY_S if lane.batch else int(lane.time_limit_s)
# Batch records (jobcore.batches) share the jobs table too: one item per Message Batch, its key
# BATCH_ITEM_PREFIX + the batch's id, marked with BATCH_MARK (no tenant_id: no tenant lists them; the
# same TTL), and one item, OPEN_BATCHES_KEY, whose string set OPEN_BATCHES_ATTRIBUTE holds the open ones.
BATCH_MARK = "batch_record"
BATCH_ITEM_PREFIX = "batch#"
OPEN_BATCHES_KEY = "batch#open"
OPEN_BATCHES_ATTRIBUTE = "open_ids"
# The model's shared budgets (jobcore.capacity) share the jobs table too: one item per model family, its key
# CAPACITY_ITEM_PREFIX + the family, the bucket as JSON in CAPACITY_ATTRIBUTE beside its version (no tenant_id,
# no TTL: it is rewritten about once a second while the model is in use, and a few hundred bytes).
CAPACITY_ITEM_PREFIX = "capacity#"
CAPACITY_ATTRIBUTE = "capacity_bucket"
# The router's inline slot counters (jobcore.concurrency, jobadapters.dynamo.DynamoInlineSlots) share the table
# too: ``inline#<shard>#<window>``, no tenant_id and no status (never listed, never read as a job), the same TTL.
INLINE_SLOT_PREFIX = "inline#"

# The model providers' circuit breakers (jobcore.breaker) share the jobs table: one small item per provider,
# BREAKER_ITEM_PREFIX + its name, the state as JSON in BREAKER_ATTRIBUTE, written only on its version.
BREAKER_ITEM_PREFIX = "breaker#"
BREAKER_ATTRIBUTE = "breaker"
# Usage counters (jobcore.usage) share the jobs table too: one item per tenant and UTC day, its key
# USAGE_ITEM_PREFIX + "<tenant>#<YYYY-MM-DD>", marked with USAGE_MARK (no tenant_id, no status: neither the
# tenant index nor any job read sees it), kept for USAGE_TTL_DAYS.
USAGE_MARK = "usage_counters"
USAGE_ITEM_PREFIX = "usage#"
USAGE_TTL_DAYS = 400


def versioned_put(expected_version: int) -> dict[str, Any]:
    """The condition of a PutItem that replaces a small shared item (a capacity budget, a breaker) only as it
    was read: absent for ``expected_version`` 0, else at that ``version``."""
    if expected_version == 0:
        return {"ConditionExpression": "attribute_not_exists(#pk)", "ExpressionAttributeNames": {"#pk": JOBS_PARTITION_KEY}}
    return {"ConditionExpression": "#v = :v", "ExpressionAttributeNames": {"#v": "version"},
            "ExpressionAttributeValues": {":v": expected_version}}
