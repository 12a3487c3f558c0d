"""JobStore over a DynamoDB table: every write is conditional (create-if-absent, save-if-version)."""

from __future__ import annotations

import json
import zlib
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from jobadapters.schema import (
    DELIVERY_INDEX,
    DELIVERY_INDEX_PARTITION_KEY,
    DELIVERY_INDEX_SORT_KEY,
    DELIVERY_SHARDS,
    JOBS_PARTITION_KEY,
)
from jobcore.errors import ConflictError
from jobcore.model import Job


class DynamoJobStore:
    def __init__(self, table: Any):
        """``table``: a boto3 ``dynamodb.Table`` resource (it converts types; floats need Decimal)."""
        self._table = table

    def create(self, job: Job) -> None:
        self._put(job, "attribute_not_exists(#pk)", {"#pk": JOBS_PARTITION_KEY}, {}, f"job {job.job_id} already exists")

    def save(self, job: Job, *, expected_version: int) -> None:
        self._put(job, "#v = :v", {"#v": "version"}, {":v": expected_version}, f"job {job.job_id} changed since version {expected_version}")

    def due_deliveries(self, *, until_ms: int, limit: int) -> list[tuple[str, int]]:
        due: list[tuple[int, str]] = []
        for shard in range(DELIVERY_SHARDS):  # each shard is sorted by due time: its first ``limit`` suffice
            due += self._due_in(_shard_name(shard), until_ms, limit)
        return [(job_id, at) for at, job_id in sorted(due)[:limit]]

    def _due_in(self, shard: str, until_ms: int, limit: int) -> list[tuple[int, str]]:
        condition = Key(DELIVERY_INDEX_PARTITION_KEY).eq(shard) & Key(DELIVERY_INDEX_SORT_KEY).lte(until_ms)
        kwargs: dict[str, Any] = {"IndexName": DELIVERY_INDEX, "KeyConditionExpression": condition, "Limit": limit}
        found: list[tuple[int, str]] = []
        while len(found) < limit:
            page = self._table.query(**kwargs)
            found += [(int(item[DELIVERY_INDEX_SORT_KEY]), item[JOBS_PARTITION_KEY]) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found[:limit]

    def get(self, job_id: str) -> Job | None:
        item = self._table.get_item(Key={JOBS_PARTITION_KEY: job_id}, ConsistentRead=True).get("Item")
        return None if item is None else Job.from_dict(_plain(item))

    def _put(self, job: Job, condition: str, names: dict[str, str], values: dict[str, Any], conflict: str) -> None:
        kwargs: dict[str, Any] = {"Item": _item(job), "ConditionExpression": condition, "ExpressionAttributeNames": names}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._table.put_item(**kwargs)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(conflict) from None
            raise


def _item(job: Job) -> dict[str, Any]:
    item = json.loads(json.dumps(job.to_dict()), parse_float=Decimal)
    sweep_at = job.delivery.sweep_at() if job.delivery is not None else None
    if sweep_at is not None:  # only pending deliveries are in the (sparse) index
        item[DELIVERY_INDEX_PARTITION_KEY] = _shard_name(zlib.crc32(job.job_id.encode()) % DELIVERY_SHARDS)
        item[DELIVERY_INDEX_SORT_KEY] = sweep_at
    return item


def _shard_name(shard: int) -> str:
    return f"pending-{shard}"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
