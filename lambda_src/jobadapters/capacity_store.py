"""CapacityStore over the jobs table: one item per model family, written only on its version.

A lease is one PutItem (the item is a few hundred bytes: one write unit); a lost race costs that write and
returns the winner's item in the same answer (ReturnValuesOnConditionCheckFailure), so no read follows it.
"""

from __future__ import annotations

import json
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from jobadapters import schema
from jobadapters.aws_errors import translated
from jobadapters.schema import JOBS_PARTITION_KEY
from jobcore.capacity import SharedBucket

_STORE = "the capacity store"
_DESERIALIZE = TypeDeserializer()


class DynamoCapacityStore:
    def __init__(self, table: Any):
        self._table = table

    @translated(_STORE)
    def load(self, family: str) -> SharedBucket | None:
        item = self._table.get_item(Key={JOBS_PARTITION_KEY: schema.CAPACITY_ITEM_PREFIX + family}, ConsistentRead=True).get("Item")
        return _bucket_of(item)

    @translated(_STORE)
    def swap(self, family: str, bucket: SharedBucket, *, expected_version: int) -> SharedBucket | None:
        item = {JOBS_PARTITION_KEY: schema.CAPACITY_ITEM_PREFIX + family, "version": bucket.version,
                schema.CAPACITY_ATTRIBUTE: json.dumps(bucket.to_dict(), separators=(",", ":"))}
        condition = schema.versioned_put(expected_version)
        try:
            self._table.put_item(Item=item, ReturnValuesOnConditionCheckFailure="ALL_OLD", **condition)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item")  # the low-level shape: the Table resource converts only answers
            current = _bucket_of({k: _DESERIALIZE.deserialize(v) for k, v in old.items()} if old else None)
            return current if current is not None else self.load(family)
        return None


def _bucket_of(item: dict[str, Any] | None) -> SharedBucket | None:
    if not item or schema.CAPACITY_ATTRIBUTE not in item:
        return None
    return SharedBucket.from_dict(json.loads(item[schema.CAPACITY_ATTRIBUTE]))
