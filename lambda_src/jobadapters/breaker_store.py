"""BreakerStore over the jobs table: one item per provider, written only on its version (jobcore.breaker)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from jobadapters import schema
from jobadapters.aws_errors import translated
from jobadapters.schema import JOBS_PARTITION_KEY
from jobcore.breaker import BreakerState

_STORE = "the breaker store"


class DynamoBreakerStore:
    def __init__(self, table: Any):
        self._table = table

    @translated(_STORE)
    def load(self, provider: str) -> BreakerState:
        item = self._table.get_item(Key={JOBS_PARTITION_KEY: schema.BREAKER_ITEM_PREFIX + provider},
                                    ConsistentRead=True).get("Item")
        if not item or schema.BREAKER_ATTRIBUTE not in item:
            return BreakerState()
        data = json.loads(item[schema.BREAKER_ATTRIBUTE])
        return BreakerState(failures_at=tuple(data["failures_at"]), opened_at=data["opened_at"],
                            probe_until=data["probe_until"], version=int(item["version"]))

    @translated(_STORE)
    def save(self, provider: str, state: BreakerState, *, expected_version: int) -> bool:
        document = {"failures_at": list(state.failures_at), "opened_at": state.opened_at, "probe_until": state.probe_until}
        item = {JOBS_PARTITION_KEY: schema.BREAKER_ITEM_PREFIX + provider, "version": state.version,
                schema.BREAKER_ATTRIBUTE: json.dumps(document, separators=(",", ":"))}
        condition = schema.versioned_put(expected_version)
        try:
            self._table.put_item(Item=item, **condition)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True
