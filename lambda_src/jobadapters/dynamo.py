"""JobStore over a DynamoDB table: every write is conditional (create-if-absent, save-if-version)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from jobadapters.schema import JOBS_PARTITION_KEY
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
    return json.loads(json.dumps(job.to_dict()), parse_float=Decimal)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
