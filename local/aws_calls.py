"""AWS calls counted: every API call a set of boto3 clients makes, as ``service:Operation``.

Botocore emits ``before-call.<service>.<operation>`` once per API call (its retries happen below it, so a
call retried is counted once); registering on ``before-call`` sees them all. Presigning a URL makes no
call and is not counted. The bench (bench/bench_calls.py) and the tests count a path's round trips with
it::

    calls = AwsCalls(clients.table, clients.sqs, clients.s3)
    service.submit(...)
    calls.take()  # ['dynamodb:PutItem', 'dynamodb:PutItem']

:class:`CallRecorder` records every call of a local component process to a file instead (``record_process``;
``local.recorded`` runs a module with it), for the permission check (tools/iam_check.py).
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
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


# --- every call of a process, to a file: what tools/iam_check.py evaluates against the roles -----------------

# The directory a local component process appends its calls to (one JSON-lines file per process), when set.
RECORD_DIR_ENV = "AWS_CALLS_RECORD_DIR"
# The parameters that name what a call acts on (and the condition keys IAM reads from them); never item or
# message bodies.
IDENTIFYING = ("QueueUrl", "QueueName", "TableName", "IndexName", "Bucket", "Key", "Prefix", "CopySource", "SecretId", "cluster",
               "service", "services", "task", "tasks", "Namespace")
_acting: ContextVar[str | None] = ContextVar("aws_calls_acting", default=None)


@contextmanager
def acting_as(component: str) -> Iterator[None]:
    """Calls made in this block (this thread or task) are ``component``'s: a local process that does the work of two
    functions with two roles in AWS (the dispatcher and its sweep) says which one is calling."""
    token = _acting.set(component)
    try:
        yield
    finally:
        _acting.reset(token)


class CallRecorder:
    """Appends one JSON line per API call of the clients of ``events`` (a boto3 session's, so every client made
    from it) to ``path``: the component, ``service:Operation``, the identifying parameters, and whether it was
    only presigned (a presigned URL is used with the signer's permissions, so it counts as the signer's call).

    botocore emits ``before-parameter-build`` once per call and per presigned URL, with the call's parameters."""

    def __init__(self, path: Path, component: str):
        self.path, self.component = path, component
        self._lock = threading.Lock()

    def install(self, events: Any) -> CallRecorder:
        events.register("before-parameter-build", self._record, unique_id=f"call-recorder-{id(self)}")
        return self

    def _record(self, params: dict[str, Any], model: Any, context: dict[str, Any] | None = None, **_: Any) -> None:
        self.write(model.service_model.service_name, model.name, identifying(params),
                   presigned=bool((context or {}).get("is_presign_request")))

    def write(self, service: str, operation: str, params: Mapping[str, Any], *, presigned: bool = False) -> None:
        line = json.dumps({"component": _acting.get() or self.component, "service": service, "operation": operation,
                           "params": dict(params), "presigned": presigned})
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    def install_bedrock(self) -> CallRecorder:
        """Record the anthropic SDK's Bedrock client's calls too: it signs and sends them itself (httpx, not
        botocore), as ``bedrock-runtime:InvokeModel`` (or ``InvokeModelWithResponseStream``) with their ``modelId``."""
        from anthropic.lib.bedrock import _client as bedrock_client

        original = bedrock_client.AnthropicBedrock._prepare_request
        recorder = self

        def prepare(client: Any, request: Any) -> None:
            found = _BEDROCK_PATH.search(request.url.path)
            if found is not None:
                operation = "InvokeModelWithResponseStream" if found.group("stream") else "InvokeModel"
                recorder.write("bedrock-runtime", operation, {"modelId": urllib.parse.unquote(found.group("model"))})
            original(client, request)

        # Patched on the class, in this recording process only (local.recorded): the client is made inside the component.
        bedrock_client.AnthropicBedrock._prepare_request = prepare  # type: ignore[method-assign,assignment]
        return self


# The Bedrock runtime's invoke paths, as the SDK's Bedrock client builds them.
_BEDROCK_PATH = re.compile(r"/model/(?P<model>[^/]+)/invoke(?P<stream>-with-response-stream)?$")


def identifying(params: Mapping[str, Any]) -> dict[str, Any]:
    """What a call acts on: the ``IDENTIFYING`` parameters, and the table names of a batch or transaction."""
    kept = {key: params[key] for key in IDENTIFYING if key in params}
    if "RequestItems" in params:
        kept["RequestItems"] = sorted(params["RequestItems"])
    if "TransactItems" in params:
        kept["TransactItems"] = [{kind: {"TableName": item[kind].get("TableName")} for kind in item}
                                 for item in params["TransactItems"]]
    return kept


def record_process(component: str, env: Mapping[str, str] = os.environ) -> CallRecorder | None:
    """When ``RECORD_DIR_ENV`` names a directory: record every call this process makes through boto3's default
    session (``boto3.client``, ``boto3.resource``), and through the anthropic SDK's Bedrock client, to
    ``<dir>/<component>-<pid>.jsonl``. Call it before any client
    is made (a client copies the session's handlers when it is created)."""
    directory = env.get(RECORD_DIR_ENV)
    if not directory:
        return None
    import boto3

    Path(directory).mkdir(parents=True, exist_ok=True)
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    recorder = CallRecorder(Path(directory) / f"{component}-{os.getpid()}.jsonl", component)
    return recorder.install(boto3.DEFAULT_SESSION.events).install_bedrock()


def read_records(directory: Path) -> list[dict[str, Any]]:
    """Every call recorded under ``directory``, file by file."""
    return [json.loads(line) for path in sorted(directory.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
