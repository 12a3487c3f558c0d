"""AWS calls counted: every API call a set of boto3 clients makes, as ``service:Operation``.

Botocore emits ``before-call.<service>.<operation>`` once per API call (its retries happen below it, so a
call retried is counted once); registering on ``before-call`` sees them all. Presigning a URL makes no
call and is not counted. The bench (bench/bench_calls.py) and the tests count a path's round trips with
it::

    calls = AwsCalls(clients.table, clients.sqs, clients.s3)
    service.submit(...)
    calls.take()  # ['dynamodb:PutItem', 'dynamodb:PutItem']
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class AwsCalls:
    """Records the calls of the given clients (a boto3 client, or a resource such as a DynamoDB Table)."""

    def __init__(self, *clients: Any):
        self._lock = threading.Lock()
        self._calls: list[str] = []
        for client in clients:
            low_level = getattr(getattr(client, "meta", None), "client", None) or client  # a resource's client
            low_level.meta.events.register("before-call", self._record, unique_id=f"aws-calls-{id(self)}")

    def _record(self, model: Any, **_: Any) -> None:
        with self._lock:
            self._calls.append(f"{model.service_model.service_name}:{model.name}")

    def take(self) -> list[str]:
        """The calls made since the last take, in order; the record starts again."""
        with self._lock:
            taken, self._calls = self._calls, []
        return taken


def summary(calls: list[str]) -> str:
    """``2 (dynamodb:PutItem ×2)``: how many calls, and which."""
    counted = Counter(calls)
    which = ", ".join(f"{name} ×{n}" if n > 1 else name for name, n in counted.items())
    return f"{len(calls)} ({which})" if calls else "0"
