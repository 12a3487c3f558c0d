"""JobStore over a DynamoDB table: every write is conditional (create-if-absent, save-if-version)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import random
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from jobadapters import schema
from jobadapters.aws_errors import translated
from jobadapters.schema import JOBS_PARTITION_KEY, IndexShards
from jobadapters.tracing import aws_call
from jobcore.concurrency import SLOT_WINDOW_S, slot_shards
from jobcore.errors import ConflictError, StoreUnavailableError
from jobcore.idempotency import IdempotencyRecord
from jobcore.lanes import INLINE
from jobcore.model import ACTIVE, Job, JobStatus, watch_at
from jobcore.ports import BatchRecord, Cursor
from jobcore.usage import UsageEntry

if TYPE_CHECKING:
    from jobadapters.observer import Telemetry

log = logging.getLogger(__name__)

# What a tenant is told when the table throttles or cannot be reached (the details are logged).
_STORE = "the job store"
_BATCH_GET_MAX = 100  # keys in one BatchGetItem
_BATCH_GET_ROUNDS = 3  # BatchGetItem calls per 100 keys, while DynamoDB leaves some unprocessed
_JOB_STATUSES = frozenset(status.value for status in JobStatus)
_ACTIVE_STATUSES = frozenset(status.value for status in ACTIVE)
_LEASE_TTL_S = 86_400  # a lease item outlives its end by a day (then DynamoDB's TTL deletes it)
_TRANSACT_TRIES = 4  # a terminal write refused by a concurrent one on the same usage counters: tries in all
_TRANSACT_PAUSE_S = 0.05  # the longest random pause before try n + 1 is n times this
# A transaction's cancellation reasons that say "not now": another transaction on the item, throttling.
_TRANSACT_TRANSIENT = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


class DynamoJobStore:
    """Transient DynamoDB errors (throttling, 5xx, timeouts) raise StoreUnavailableError."""

    def __init__(self, table: Any, *, shards: IndexShards | None = None, telemetry: Telemetry | None = None):
        """``table``: a boto3 ``dynamodb.Table`` resource (it converts types; floats need Decimal); ``shards``: the
        indexes' partitions per tenant or in all (the deployment's, ``INDEX_SHARDS``); ``telemetry``: its writes of a
        job's life (create, claim, save) are spans when this process traces."""
        self._table = table
        self._shards = shards or IndexShards()
        self._telemetry = telemetry

    def _span(self, method: str) -> AbstractContextManager[Any]:
        return aws_call(self._telemetry, "dynamodb", method, "jobs", **{"aws.dynamodb.table_names": (self._table.name,)})

    @translated(_STORE)
    def create(self, job: Job) -> None:
        with self._span("PutItem"):
            self._put(job, "attribute_not_exists(#pk)", {"#pk": JOBS_PARTITION_KEY}, {}, f"job {job.job_id} already exists")

    @translated(_STORE)
    def save(self, job: Job, *, expected_version: int, usage: UsageEntry | None = None) -> None:
        conflict = f"job {job.job_id} changed since version {expected_version}"
        if usage is None:
            with self._span("PutItem"):
                old = self._put(job, "#v = :v", {"#v": "version"}, {":v": expected_version}, conflict)
            apart = old.get(schema.LEASE_APART_MARK)
            if apart is None or old.get("status") not in _ACTIVE_STATUSES or apart != old.get("attempts"):
                return
            if job.status in ACTIVE and job.lease_owner == old.get("lease_owner") and job.attempts == apart:
                self._keep_apart(job)  # saved during the run (a cancel): its lease item still holds the lease
            else:  # the run ended, or the job changed hands: its lease item leaves the watch index
                self._end_lease(job.job_id, owner=str(old.get("lease_owner")), attempt=int(apart))
            return
        with self._span("TransactWriteItems"):
            self._finish(job, expected_version, usage, conflict)
        if job.lane != INLINE and job.attempts:
            # The terminal write of a worker's run (a transaction returns no old item to read the lease from): its
            # lease item of this attempt, if its lease went apart, leaves the watch index (none: the condition fails).
            self._end_lease(job.job_id, owner=None, attempt=job.attempts)

    def _finish(self, job: Job, expected_version: int, usage: UsageEntry, conflict: str) -> None:
        # The terminal write and the usage ADD in one TransactWriteItems: both or neither. It costs twice the write
        # units of the two writes made apart (DynamoDB bills a transactional write double), so only a terminal write,
        # once per job, pays it. Transactions that touch the same counter item at once are refused
        # (TransactionConflict): tried again, a few times, after a short random pause; then, like throttling, the
        # store is unavailable (the caller's write did not happen, and is retried as any other).
        put = {"TableName": self._table.name, "Item": self._item(job), "ConditionExpression": "#v = :v",
               "ExpressionAttributeNames": {"#v": "version"}, "ExpressionAttributeValues": {":v": expected_version}}
        items = [{"Put": put}, {"Update": {"TableName": self._table.name, **_usage_update(usage)}}]
        for attempt in range(1, _TRANSACT_TRIES + 1):
            try:
                self._table.meta.client.transact_write_items(TransactItems=items)
                return
            except ClientError as error:
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons") or ()]
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    raise ConflictError(conflict) from None
                if not _TRANSACT_TRANSIENT & set(reasons):
                    raise
                if attempt == _TRANSACT_TRIES:
                    log.warning("job %s: its terminal write was refused %d times (%s)", job.job_id, attempt, reasons)
                    raise StoreUnavailableError(f"{_STORE} is unavailable (throttled or unreachable); retry shortly") from error
                time.sleep(random.uniform(0, _TRANSACT_PAUSE_S * attempt))

    @translated(_STORE)
    def get(self, job_id: str) -> Job | None:
        return self._with_lease(self._table.get_item(Key={JOBS_PARTITION_KEY: job_id}, ConsistentRead=True).get("Item"))

    def _with_lease(self, item: dict[str, Any] | None) -> Job | None:
        """The job of ``item``, its lease's end read from its lease item when the lease is apart (the later of the
        two ends: the job item keeps the claim's)."""
        job = _job_of(item)
        if job is None or item is None or job.status not in ACTIVE or item.get(schema.LEASE_APART_MARK) != job.attempts:
            return job
        lease = self._table.get_item(Key={JOBS_PARTITION_KEY: _lease_key(job.job_id)}, ConsistentRead=True).get("Item")
        if lease is None or lease.get("lease_owner") != job.lease_owner or lease.get("lease_attempt") != job.attempts:
            return job
        return replace(job, lease_expires_at=max(job.lease_expires_at or 0, int(lease["lease_expires_at"])))

    @translated(_STORE)
    def claim(self, job_id: str, *, owner: str, now_ms: int, lease_expires_at: int) -> tuple[Job | None, bool]:
        # transition(job, RUNNING, ...) of a queued job as one update; a job that may not be claimed so comes back
        # as it stands, from the refused write itself. The lease goes apart at once (see _lease_item): the job item
        # leaves the watch index, its lease item enters it, so that no renewal ever writes the job item again.
        try:
            with self._span("UpdateItem"):
                item = self._claim(job_id, owner=owner, now_ms=now_ms, lease_expires_at=lease_expires_at)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item")  # the low-level shape: the Table resource converts only answers
            return self._with_lease({k: _DESERIALIZE.deserialize(v) for k, v in old.items()} if old else None), False
        claimed = Job.from_dict(_plain(item))
        try:
            self._table.put_item(Item=_lease_item(job_id, owner=owner, attempt=claimed.attempts, until_ms=lease_expires_at,
                                                  shards=self._shards))
        except Exception as error:  # noqa: BLE001 - the claim stands: the first renewal writes the lease item
            # Until then the job item's lease holds it; if this worker dies first, its message comes back when that
            # lease has ended (the message is hidden no longer than a lease) and the next receive claims the job.
            log.warning("job %s: its lease item was not written (%s); the first renewal writes it", job_id, error)
        return claimed, True

    def _claim(self, job_id: str, *, owner: str, now_ms: int, lease_expires_at: int) -> dict[str, Any]:
        return self._table.update_item(
            Key={JOBS_PARTITION_KEY: job_id},
            UpdateExpression="SET #status = :running, updated_at = :now, started_at = :now, attempts = attempts + :one, "
                             "#v = #v + :one, lease_owner = :owner, lease_expires_at = :until, #apart = attempts + :one "
                             "REMOVE unsent_since, #shard, #watch",
            ConditionExpression="#status = :queued AND attribute_not_exists(model_wait) "
                                "AND (attribute_not_exists(queue_deadline_at) OR queue_deadline_at >= :now)",
            ExpressionAttributeNames={"#status": "status", "#v": "version", "#shard": schema.WATCH_INDEX_PARTITION_KEY,
                                      "#watch": schema.WATCH_INDEX_SORT_KEY, "#apart": schema.LEASE_APART_MARK},
            ExpressionAttributeValues={":running": JobStatus.RUNNING.value, ":queued": JobStatus.QUEUED.value, ":now": now_ms,
                                       ":one": 1, ":owner": owner, ":until": lease_expires_at},
            ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )["Attributes"]

    @translated(_STORE)
    def due_deliveries(self, *, until_ms: int, limit: int) -> list[tuple[str, int]]:
        return self._sharded(schema.DELIVERY_INDEX, schema.DELIVERY_INDEX_PARTITION_KEY, schema.DELIVERY_INDEX_SORT_KEY,
                             _delivery_shard, self._shards.delivery, until_ms, limit)

    @translated(_STORE)
    def watched(self, *, until_ms: int, limit: int) -> list[tuple[str, int]]:
        due = self._sharded(schema.WATCH_INDEX, schema.WATCH_INDEX_PARTITION_KEY, schema.WATCH_INDEX_SORT_KEY,
                            _watch_shard, self._shards.watch, until_ms, limit)
        leases = {key.removeprefix(schema.LEASE_ITEM_PREFIX) for key, _ in due if key.startswith(schema.LEASE_ITEM_PREFIX)}
        held = self._held_leases(leases) if leases else set()
        found: dict[str, int] = {}
        for key, at in due:
            job_id = key.removeprefix(schema.LEASE_ITEM_PREFIX)
            if key.startswith(schema.LEASE_ITEM_PREFIX) and job_id not in held:
                continue
            found[job_id] = min(at, found.get(job_id, at))
        return sorted(found.items(), key=lambda entry: (entry[1], entry[0]))

    def _held_leases(self, job_ids: set[str]) -> set[str]:
        """Of the jobs whose lease items came due, those whose lease the job still holds (running or canceling, by
        that owner, on that attempt); the others' lease items are left over (a process died between the job's
        write and its lease item's) and leave the watch index here."""
        items = {item[JOBS_PARTITION_KEY]: item for item in _batch_get(
            self._table, [key for job_id in sorted(job_ids) for key in (job_id, _lease_key(job_id))],
            ProjectionExpression="#pk, #status, attempts, lease_owner, lease_attempt",
            ExpressionAttributeNames={"#pk": JOBS_PARTITION_KEY, "#status": "status"})}
        held = set()
        for job_id in job_ids:
            job, lease = items.get(job_id, {}), items.get(_lease_key(job_id))
            if lease is None:
                continue
            if (job.get("status") in _ACTIVE_STATUSES and job.get("lease_owner") == lease.get("lease_owner")
                    and job.get("attempts") == lease.get("lease_attempt")):
                held.add(job_id)
            elif "lease_owner" in lease:
                self._end_lease(job_id, owner=str(lease["lease_owner"]), attempt=int(lease.get("lease_attempt", 0)))
        return held

    @translated(_STORE)
    def renew_lease(self, job_id: str, *, owner: str, until_ms: int) -> bool:
        # The lease item alone: one write unit, its keys-only watch entry moved; the job item, whatever its size,
        # and its version are not touched.
        try:
            self._table.update_item(
                Key={JOBS_PARTITION_KEY: _lease_key(job_id)},
                UpdateExpression="SET lease_expires_at = :until, #watch = :until, #ttl = :ttl",
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeNames={"#watch": schema.WATCH_INDEX_SORT_KEY, "#ttl": schema.TTL_ATTRIBUTE},
                ExpressionAttributeValues={":until": until_ms, ":owner": owner, ":ttl": _lease_ttl(until_ms)},
            )
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        # No lease item of this owner: the job was claimed by a save (a job that waited for the model, a run
        # taken over from a dead worker), or its lease item was not written, or the owner lost the job. The first
        # two move the lease apart now, the job item's condition telling them from the third.
        try:
            item = self._table.update_item(
                Key={JOBS_PARTITION_KEY: job_id},
                UpdateExpression="SET lease_expires_at = :until, #apart = attempts REMOVE #shard, #watch",
                ConditionExpression="lease_owner = :owner AND #status IN (:running, :canceling)",
                ExpressionAttributeNames={"#apart": schema.LEASE_APART_MARK, "#status": "status",
                                          "#shard": schema.WATCH_INDEX_PARTITION_KEY, "#watch": schema.WATCH_INDEX_SORT_KEY},
                ExpressionAttributeValues={":until": until_ms, ":owner": owner, ":running": JobStatus.RUNNING.value,
                                           ":canceling": JobStatus.CANCELING.value},
                ReturnValues="ALL_NEW",  # its attempt (rare: once a run at most)
            )["Attributes"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        # A death before this write is found by the message coming back (the job item's lease has just been
        # extended to the same end), as for a claim whose lease item was not written.
        self._table.put_item(Item=_lease_item(job_id, owner=owner, attempt=int(item["attempts"]),
                                              until_ms=until_ms, shards=self._shards))
        return True

    @translated(_STORE)
    def lease_states(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        states = {}
        for item in _batch_get(self._table, job_ids, ProjectionExpression="#pk, #status, lease_owner",
                               ExpressionAttributeNames={"#pk": JOBS_PARTITION_KEY, "#status": "status"}):
            if item.get("status") in _JOB_STATUSES:  # a job, not an idempotency or a batch record
                states[item[JOBS_PARTITION_KEY]] = (JobStatus(item["status"]), item.get("lease_owner"))
        return states

    @translated(_STORE)
    def list_jobs(self, tenant_id: str, *, status: JobStatus | None, limit: int, after: Cursor | None) -> tuple[list[Job], Cursor | None]:
        # Each shard is read newest first down to ``limit`` matches (or its end); a shard that may hold more
        # stopped at a position, and the newest of those stops bounds what is certain: every shard has been read
        # down to it, so the jobs at or after it are exactly the tenant's, and the page ends there at the latest.
        found: list[Job] = []
        stops: list[tuple[int, str]] = []
        for shard in range(self._shards.tenant):
            jobs, stop = self._tenant_shard(tenant_id, shard, status=status, limit=limit, after=after)
            found += jobs
            if stop is not None:
                stops.append(stop)
        bound = max(stops, default=None)
        ordered = sorted((job for job in found if bound is None or (job.created_at, job.job_id) >= bound),
                         key=lambda job: (job.created_at, job.job_id), reverse=True)
        if len(ordered) > limit:
            page = ordered[:limit]
            return page, Cursor(page[-1].created_at, page[-1].job_id)
        return ordered, None if bound is None else Cursor(*bound)

    def _tenant_shard(self, tenant_id: str, shard: int, *, status: JobStatus | None, limit: int,
                      after: Cursor | None) -> tuple[list[Job], tuple[int, str] | None]:
        """One shard's jobs before ``after``, newest first, up to ``limit`` of them; and where its read stopped
        when it may hold more (None: read to its end)."""
        condition = Key(schema.TENANT_INDEX_PARTITION_KEY).eq(_tenant_shard(tenant_id, shard))
        if after is not None:  # the cursor's own millisecond may hold more of this shard's jobs: kept, then cut by id
            condition &= Key(schema.TENANT_INDEX_SORT_KEY).lte(after.created_at)
        kwargs: dict[str, Any] = {"IndexName": schema.TENANT_INDEX, "ScanIndexForward": False, "Limit": limit,
                                  "KeyConditionExpression": condition}
        if status is not None:
            kwargs["FilterExpression"] = Attr("status").eq(status.value)
        jobs: list[Job] = []
        for _ in range(_MAX_LIST_PAGES):  # a status filter can leave pages empty: bound one request's reads
            page = self._table.query(**kwargs)
            jobs += [job for job in _listed(page.get("Items", []))
                     if after is None or (job.created_at, job.job_id) < (after.created_at, after.job_id)]
            last = page.get("LastEvaluatedKey")
            if last is None:
                return jobs, None
            if len(jobs) >= limit:
                break
            kwargs["ExclusiveStartKey"] = last
        return jobs, (int(last[schema.TENANT_INDEX_SORT_KEY]), str(last[JOBS_PARTITION_KEY]))

    @translated(_STORE)
    def reserve_key(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        # The table's key attribute is "job_id": the record's own job goes in "target_job_id".
        fields = asdict(record)
        item = {JOBS_PARTITION_KEY: fields.pop("record_id"), "target_job_id": fields.pop("job_id"), **fields,
                schema.IDEMPOTENCY_MARK: True}
        if item["status_code"] is None:
            item.pop("status_code")
        try:
            self._table.put_item(
                Item=item, ConditionExpression="attribute_not_exists(#pk) OR released = :yes",
                ExpressionAttributeNames={"#pk": JOBS_PARTITION_KEY}, ExpressionAttributeValues={":yes": True},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            held = self._table.get_item(Key={JOBS_PARTITION_KEY: record.record_id}, ConsistentRead=True).get("Item")
            if held is None or held.get("released"):
                return self.reserve_key(record)  # released or expired meanwhile
            return IdempotencyRecord(
                record_id=record.record_id, job_id=held["target_job_id"], body_hash=held["body_hash"],
                created_at=int(held["created_at"]), expires_at=int(held["expires_at"]),
                status_code=int(held["status_code"]) if "status_code" in held else None,
            )
        return None

    @translated(_STORE)
    def complete_key(self, record_id: str, *, status_code: int) -> None:
        self._table.update_item(Key={JOBS_PARTITION_KEY: record_id}, UpdateExpression="SET status_code = :code",
                                ExpressionAttributeValues={":code": status_code})

    @translated(_STORE)
    def release_key(self, record_id: str) -> None:
        # Marked, not deleted: the job data policy grants no DeleteItem; the TTL removes it later.
        self._table.update_item(Key={JOBS_PARTITION_KEY: record_id}, UpdateExpression="SET released = :yes",
                                ExpressionAttributeValues={":yes": True})

    def _sharded(self, index: str, partition: str, sort: str, shard_name: Callable[[int], str], shards: int,
                 until_ms: int, limit: int) -> list[tuple[str, int]]:
        found: list[tuple[int, str]] = []
        for shard in range(shards):  # each shard is sorted: its first ``limit`` suffice
            condition = Key(partition).eq(shard_name(shard)) & Key(sort).lte(until_ms)
            kwargs: dict[str, Any] = {"IndexName": index, "KeyConditionExpression": condition, "Limit": limit}
            in_shard: list[tuple[int, str]] = []
            while len(in_shard) < limit:
                page = self._table.query(**kwargs)
                in_shard += [(int(item[sort]), item[JOBS_PARTITION_KEY]) for item in page.get("Items", [])]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            found += in_shard[:limit]
        return [(job_id, at) for at, job_id in sorted(found)[:limit]]

    def _keep_apart(self, job: Job) -> None:
        """The job item just saved keeps its lease apart (marked, out of the watch index): unless it changed again."""
        try:
            self._table.update_item(
                Key={JOBS_PARTITION_KEY: job.job_id}, UpdateExpression="SET #apart = :attempt REMOVE #shard, #watch",
                ConditionExpression="#v = :v AND lease_owner = :owner",
                ExpressionAttributeNames={"#apart": schema.LEASE_APART_MARK, "#v": "version",
                                          "#shard": schema.WATCH_INDEX_PARTITION_KEY, "#watch": schema.WATCH_INDEX_SORT_KEY},
                ExpressionAttributeValues={":attempt": job.attempts, ":v": job.version, ":owner": job.lease_owner})
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return  # written again since: a write that left the lease active kept it as this one did; any other ended it
            self._not_kept_apart(job, error)
        except Exception as error:  # noqa: BLE001 - the save itself stands; see _not_kept_apart
            self._not_kept_apart(job, error)

    @staticmethod
    def _not_kept_apart(job: Job, error: Exception) -> None:
        # The job item is then watched by the end its lease had when it was read (its lease item, renewed, is
        # not read without the mark): if the run outlives it, the sweeper takes it for dead and settles it as it
        # stands (a cancel ends canceled; the worker's heartbeat then stops its run).
        log.warning("job %s: its lease was not kept apart (%s); the sweeper may settle it at %s", job.job_id, error,
                    job.lease_expires_at)

    def _end_lease(self, job_id: str, *, owner: str | None, attempt: int) -> None:
        """Take ``owner``'s lease item of ``attempt`` (None: whoever's; an attempt has one owner) out of the watch index
        and from its owner (whose renewals then fail); a newer lease's item is left alone. Failing, it is logged: the
        sweep's ``watched`` ends it when met."""
        condition, values = "lease_attempt = :attempt", dict[str, Any]({":attempt": attempt})
        if owner is not None:
            condition, values = condition + " AND lease_owner = :owner", {**values, ":owner": owner}
        try:
            self._table.update_item(
                Key={JOBS_PARTITION_KEY: _lease_key(job_id)},
                UpdateExpression="REMOVE " + ", ".join(f"#e{n}" for n in range(len(_ENDED))),
                ConditionExpression=condition,
                ExpressionAttributeNames={f"#e{n}": name for n, name in enumerate(_ENDED)},
                ExpressionAttributeValues=values)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return
            log.warning("job %s: its lease item was not ended (%s); the sweep ends it", job_id, error)
        except Exception as error:  # noqa: BLE001 - the job's own write stands; the sweep ends the lease item
            log.warning("job %s: its lease item was not ended (%s); the sweep ends it", job_id, error)

    def _item(self, job: Job) -> dict[str, Any]:
        return _item(job, self._shards)

    def _put(self, job: Job, condition: str, names: dict[str, str], values: dict[str, Any], conflict: str) -> dict[str, Any]:
        """Put ``job``'s item on ``condition``; the item it replaced (empty: none)."""
        kwargs: dict[str, Any] = {"Item": self._item(job), "ConditionExpression": condition, "ExpressionAttributeNames": names,
                                  "ReturnValues": "ALL_OLD"}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            return self._table.put_item(**kwargs).get("Attributes") or {}
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(conflict) from None
            raise


_MAX_LIST_PAGES = 10
_DESERIALIZE = TypeDeserializer()


def _job_of(item: dict[str, Any] | None) -> Job | None:
    """The job an item of the table holds; None for any other item (an idempotency or batch record, the open-batch
    set, a capacity bucket, a breaker, an inline slot counter, usage counters): only a job has both a job status and
    a tenant, as lease_states reads them."""
    if item is None or item.get("status") not in _JOB_STATUSES or "tenant_id" not in item:
        return None
    return Job.from_dict(_plain(item))


def _listed(items: list[dict[str, Any]]) -> list[Job]:
    """The jobs of a page of items; an item that is no longer a job this code can read (a field it cannot
    take) is left out and logged, never the page's failure: the tenant can still list its other jobs."""
    jobs = []
    for item in items:
        try:
            jobs.append(Job.from_dict(_plain(item)))
        except (KeyError, TypeError, ValueError, AttributeError):
            log.exception("job %s: its item cannot be read as a job; left out of the list", item.get(JOBS_PARTITION_KEY))
    return jobs


def _item(job: Job, shards: IndexShards, *, lease_apart: bool = False) -> dict[str, Any]:
    """``job``'s item; ``lease_apart``: a running job whose lease is in its lease item (marked with its attempt,
    and out of the watch index: the lease item is in it)."""
    item = json.loads(json.dumps(job.to_dict()), parse_float=Decimal)
    item[schema.TENANT_INDEX_PARTITION_KEY] = _tenant_shard(job.tenant_id, _shard_of(job.job_id, shards.tenant))
    sweep_at = job.delivery.sweep_at() if job.delivery is not None else None
    if sweep_at is not None:  # only pending deliveries are in the (sparse) delivery index
        item[schema.DELIVERY_INDEX_PARTITION_KEY] = _delivery_shard(_shard_of(job.job_id, shards.delivery))
        item[schema.DELIVERY_INDEX_SORT_KEY] = sweep_at
    if lease_apart and job.status in ACTIVE:
        item[schema.LEASE_APART_MARK] = job.attempts
        return item
    watch = watch_at(job)
    if watch is not None:  # only jobs the sweeper watches are in the (sparse) watch index
        item[schema.WATCH_INDEX_PARTITION_KEY] = _watch_shard(_shard_of(job.job_id, shards.watch))
        item[schema.WATCH_INDEX_SORT_KEY] = watch
    return item


def _lease_item(job_id: str, *, owner: str, attempt: int, until_ms: int, shards: IndexShards) -> dict[str, Any]:
    """A worker's lease on ``attempt`` of a job, apart from the job's item (``schema.LEASE_ITEM_PREFIX``): in the
    watch index by its end, in the job's watch shard. Once it is written the job item holds no watch entry: the
    sweeper finds a dead worker's job by this item, and reads the lease's end from it (``DynamoJobStore.get``)."""
    return {JOBS_PARTITION_KEY: _lease_key(job_id), "lease_owner": owner, "lease_attempt": attempt,
            "lease_expires_at": until_ms, schema.WATCH_INDEX_PARTITION_KEY: _watch_shard(_shard_of(job_id, shards.watch)),
            schema.WATCH_INDEX_SORT_KEY: until_ms, schema.TTL_ATTRIBUTE: _lease_ttl(until_ms)}


# What ending a lease takes from its item (``DynamoJobStore._end_lease``): its owner and its watch entry.
_ENDED = ("lease_owner", schema.WATCH_INDEX_PARTITION_KEY, schema.WATCH_INDEX_SORT_KEY)


def _ended_lease_item(item: dict[str, Any]) -> dict[str, Any]:
    """A lease item once its lease has ended."""
    return {name: value for name, value in item.items() if name not in _ENDED}


def _lease_key(job_id: str) -> str:
    return schema.LEASE_ITEM_PREFIX + job_id


def _lease_ttl(until_ms: int) -> int:
    return until_ms // 1000 + _LEASE_TTL_S


def _shard_of(job_id: str, shards: int) -> int:
    return zlib.crc32(job_id.encode()) % shards


def _tenant_shard(tenant_id: str, shard: int) -> str:
    return f"{tenant_id}#{shard}"


def _delivery_shard(shard: int) -> str:
    return f"pending-{shard}"


def _watch_shard(shard: int) -> str:
    return f"watch-{shard}"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class DynamoBatchStore:
    """BatchStore on the jobs table: a record item per batch (written on its version, like a job) and the open
    batches' ids in one string set (added and removed atomically). Records expire with the jobs (TTL)."""

    def __init__(self, table: Any, *, ttl_days: int = 30):
        self._table = table
        self._ttl_s = ttl_days * 86_400

    @translated(_STORE)
    def open_batches(self) -> list[str]:
        item = self._table.get_item(Key={JOBS_PARTITION_KEY: schema.OPEN_BATCHES_KEY}, ConsistentRead=True).get("Item") or {}
        return sorted(item.get(schema.OPEN_BATCHES_ATTRIBUTE) or ())

    @translated(_STORE)
    def create_batch(self, record: BatchRecord) -> None:
        try:
            self._table.put_item(Item=self._item(record), ConditionExpression="attribute_not_exists(#pk)",
                                 ExpressionAttributeNames={"#pk": JOBS_PARTITION_KEY})
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(f"batch {record.batch_id} is already recorded") from None
            raise
        self._open(record.batch_id, add=True)

    @translated(_STORE)
    def get_batch(self, batch_id: str) -> BatchRecord | None:
        item = self._table.get_item(Key={JOBS_PARTITION_KEY: schema.BATCH_ITEM_PREFIX + batch_id}, ConsistentRead=True).get("Item")
        if item is None or schema.BATCH_MARK not in item:
            return None
        plain = _plain(item)
        jobs = tuple((job_id, int(count)) for job_id, _, count in (entry.rpartition(":") for entry in plain["jobs"].split(",") if entry))
        return BatchRecord(
            batch_id=plain["batch_id"], created_at=plain["created_at"], expires_at=plain["batch_expires_at"],
            model_id=plain["model_id"], jobs=jobs, status=plain["status"], cancel_requested_at=plain.get("cancel_requested_at"),
            ended_at=plain.get("ended_at"), counts=plain.get("counts"), version=plain["version"],
        )

    @translated(_STORE)
    def save_batch(self, record: BatchRecord, *, expected_version: int) -> None:
        try:
            self._table.put_item(Item=self._item(record), ConditionExpression="#v = :v",
                                 ExpressionAttributeNames={"#v": "version"}, ExpressionAttributeValues={":v": expected_version})
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(f"batch {record.batch_id} changed since version {expected_version}") from None
            raise
        if record.status == "done":
            self._open(record.batch_id, add=False)

    def _open(self, batch_id: str, *, add: bool) -> None:
        self._table.update_item(
            Key={JOBS_PARTITION_KEY: schema.OPEN_BATCHES_KEY},
            UpdateExpression=f"{'ADD' if add else 'DELETE'} #open :ids",
            ExpressionAttributeNames={"#open": schema.OPEN_BATCHES_ATTRIBUTE}, ExpressionAttributeValues={":ids": {batch_id}})

    def _item(self, record: BatchRecord) -> dict[str, Any]:
        item: dict[str, Any] = {
            JOBS_PARTITION_KEY: schema.BATCH_ITEM_PREFIX + record.batch_id, schema.BATCH_MARK: True,
            "batch_id": record.batch_id, "created_at": record.created_at, "batch_expires_at": record.expires_at,
            "model_id": record.model_id, "jobs": ",".join(f"{job_id}:{count}" for job_id, count in record.jobs),
            "status": record.status, "version": record.version,
            schema.TTL_ATTRIBUTE: record.created_at // 1000 + self._ttl_s,
        }
        for key in ("cancel_requested_at", "ended_at"):
            if getattr(record, key) is not None:
                item[key] = getattr(record, key)
        if record.counts is not None:
            item["counts"] = dict(record.counts)
        return item


class DynamoInlineSlots:
    """InlineSlots on the jobs table: ``slot_shards(limit)`` counter items per window of ``SLOT_WINDOW_S``
    (``inline#<shard>#<window>``), each taking a run only while under its share of ``limit`` (one conditional
    ADD), given back by a second ADD to the item it was taken from. A slot an execution never gave back (it died)
    counts until its window turns; a run that starts just after the turn does not see the runs of the window
    before, so the budget can be passed by at most the runs started in the last window that are still running."""

    def __init__(self, table: Any, *, limit: int, clock_s: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random):
        self._table = table
        self._shards = slot_shards(limit)
        self._cap = math.ceil(limit / self._shards)
        self._clock_s = clock_s
        self._rng = rng

    def take(self) -> str | None:
        window = int(self._clock_s() // SLOT_WINDOW_S)
        key = f"{schema.INLINE_SLOT_PREFIX}{min(int(self._rng() * self._shards), self._shards - 1)}#{window}"
        try:
            self._table.update_item(
                Key={JOBS_PARTITION_KEY: key}, UpdateExpression="ADD #n :one SET #ttl = :ttl",
                ConditionExpression="attribute_not_exists(#n) OR #n < :cap",
                ExpressionAttributeNames={"#n": "running", "#ttl": schema.TTL_ATTRIBUTE},
                ExpressionAttributeValues={":one": 1, ":cap": self._cap, ":ttl": (window + 2) * SLOT_WINDOW_S + 3600})
        except Exception as error:  # noqa: BLE001 - a count that failed must not refuse the job
            if isinstance(error, ClientError) and error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None  # every slot of the window taken
            log.warning("inline slots: not counted (%s); the run is admitted", error)
            return ""
        return key

    def give_back(self, token: str) -> None:
        if not token:
            return
        try:
            self._table.update_item(Key={JOBS_PARTITION_KEY: token}, UpdateExpression="ADD #n :minus",
                                    ExpressionAttributeNames={"#n": "running"}, ExpressionAttributeValues={":minus": -1})
        except Exception as error:  # noqa: BLE001 - forgotten when its window turns
            log.warning("inline slots: slot %s not given back (%s)", token, error)


class DynamoUsageStore:
    """UsageStore on the jobs table: one item per tenant and day whose counters (``task|lane|counter``) each
    finished job ADDs to (no read; its write units: the item's size, a few hundred bytes per task and lane used that
    day), in the transaction of its terminal write (DynamoJobStore.save); a range of days is read in one BatchGetItem
    (at most 100 days)."""

    def __init__(self, table: Any):
        self._table = table

    @staticmethod
    def key(tenant_id: str, day: str) -> str:
        return f"{schema.USAGE_ITEM_PREFIX}{tenant_id}#{day}"

    @translated(_STORE)
    def add(self, entry: UsageEntry) -> None:
        self._table.update_item(**_usage_update(entry))

    @translated(_STORE)
    def read(self, tenant_id: str, days: Sequence[str]) -> dict[str, dict[str, int]]:
        keys = {self.key(tenant_id, day): day for day in days}
        found: dict[str, dict[str, int]] = {}
        for item in _batch_get(self._table, list(keys)):
            if schema.USAGE_MARK in item:
                found[keys[item[JOBS_PARTITION_KEY]]] = {name: int(value) for name, value in item.items() if name.count("|") == 2}
        return found


def _usage_update(entry: UsageEntry) -> dict[str, Any]:
    """The UpdateItem (its key and expressions) that adds ``entry`` to its tenant's counter item of its day: alone
    (DynamoUsageStore.add) or in a job's terminal write (DynamoJobStore.save)."""
    counts = entry.attributes()
    names = {f"#c{n}": name for n, name in enumerate(counts)}
    values: dict[str, Any] = {f":c{n}": value for n, value in enumerate(counts.values())}
    adds = ", ".join(f"#c{n} :c{n}" for n in range(len(counts)))
    expires = _day_epoch_s(entry.day) + schema.USAGE_TTL_DAYS * 86_400
    return {"Key": {JOBS_PARTITION_KEY: DynamoUsageStore.key(entry.tenant_id, entry.day)},
            "UpdateExpression": f"SET #mark = :yes, #ttl = :ttl ADD {adds}",
            "ExpressionAttributeNames": {**names, "#mark": schema.USAGE_MARK, "#ttl": schema.TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {**values, ":yes": True, ":ttl": expires}}


def _batch_get(table: Any, keys: Sequence[str], **extra: Any) -> Iterator[dict[str, Any]]:
    """The items of the jobs table whose partition keys are ``keys`` (those that exist), read consistently by
    BatchGetItem, ``_BATCH_GET_MAX`` keys a call (a key asked for twice is asked for once: DynamoDB refuses the
    request otherwise); keys DynamoDB leaves unprocessed (throttling) are asked for again, ``_BATCH_GET_ROUNDS`` calls
    at most per chunk. ``extra``: more of the request's part for the table (a projection and its names)."""
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), _BATCH_GET_MAX):
        request: dict[str, Any] = {table.name: {
            "Keys": [{JOBS_PARTITION_KEY: key} for key in unique[start:start + _BATCH_GET_MAX]], "ConsistentRead": True, **extra}}
        for _ in range(_BATCH_GET_ROUNDS):
            # The Table's own client: boto3 converts the DynamoDB types for it, as for the Table's calls.
            answer = table.meta.client.batch_get_item(RequestItems=request)
            yield from answer.get("Responses", {}).get(table.name, [])
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break


def _day_epoch_s(day: str) -> int:
    return int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), tzinfo=dt.UTC).timestamp())
