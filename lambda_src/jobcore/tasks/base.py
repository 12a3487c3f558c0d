"""What a task is, in two halves.

- A :class:`TaskSpec` is what the router needs: a name, a profile for routing, a validator for the
  input and an expected duration. The router imports every spec, so a spec module imports nothing heavy.
- An executor runs the task where its lane runs it, loaded on first use from the spec's ``executor``
  (``"module:attribute"``), so a task whose executor needs a large library (an ONNX runtime, say)
  never burdens the router Lambda.

Most tasks only call Claude. Their executor is a :class:`ModelCallsExecutor`: it *describes* its model
calls as :class:`ModelRequest` values and *assembles* the result from the responses. Who makes the
calls is the runner's business: inline in the router under a deadline, concurrently on a worker, or
through a batch API, with the same task code. A task that computes rather than calls (a GPU task) is a
:class:`RunExecutor` and runs itself.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from jobcore.model import Usage
from jobcore.ports import LanguageModel
from jobcore.routing import TaskProfile


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """What a running task may use: the model port, the default model and how wide to fan out.

    ``check`` is called between model calls; it raises to stop the job (a cancel, a deadline).
    """

    llm: LanguageModel
    model_id: str
    concurrency: int = 8  # model calls of one job in flight at once (Claude work waits on the network)
    call_timeout_s: float | None = None
    check: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class OutputFile:
    """A file a task produces besides its JSON output (vectors, say): stored next to the result."""

    data: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class TaskResult:
    output: dict[str, Any]
    usage: Usage
    files: Mapping[str, OutputFile] = field(default_factory=dict)  # by file name, e.g. "vectors.npy"


@dataclass(frozen=True)
class ModelRequest:
    """One Messages API call of a job: ``key`` is unique within the job (a batch's custom id suffix)."""

    key: str
    params: dict[str, Any]


class TaskSpec(Protocol):
    name: str
    description: str
    profile: TaskProfile
    executor: str  # "module:attribute" of the executor, imported only where the task runs
    input_schema: dict[str, Any]  # the input as a JSON Schema, for the API description (validate decides)

    def validate(self, payload: Any) -> dict[str, Any]:
        """The input, checked and normalised; InvalidInputError naming the field otherwise."""
        ...

    def expected_duration_s(self, payload: dict[str, Any]) -> float:
        """How long this input should take, for routing (the profile's figure scaled to the input)."""
        ...


@runtime_checkable
class ModelCallsExecutor(Protocol):
    def requests(self, payload: dict[str, Any], *, model_id: str) -> list[ModelRequest]:
        """The model calls this job makes, each complete (model included)."""
        ...

    def assemble(self, payload: dict[str, Any], responses: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        """The job's output from every request's response, by key; TaskOutputError if they do not add up."""
        ...


@runtime_checkable
class RunExecutor(Protocol):
    def run(self, payload: dict[str, Any], ctx: RunContext) -> TaskResult: ...


Executor = ModelCallsExecutor | RunExecutor


@functools.cache
def load_executor(path: str) -> Executor:
    """The executor named ``module:attribute`` (a class is instantiated), imported on first use."""
    module_name, _, attribute = path.partition(":")
    target = getattr(importlib.import_module(module_name), attribute)
    executor = target() if isinstance(target, type) else target
    if not isinstance(executor, (ModelCallsExecutor, RunExecutor)):
        raise TypeError(f"{path} is neither a ModelCallsExecutor nor a RunExecutor")
    return executor


def usage_of(response: Mapping[str, Any]) -> Usage:
    """One Messages API response's tokens: uncached input, output, and the cached prefix written or read
    (``cache_creation.ephemeral_1h_input_tokens``: the part of the writes with the 1-hour TTL)."""
    usage = response.get("usage") or {}
    creation = usage.get("cache_creation") or {}

    def count(source: Mapping[str, Any], key: str) -> int:
        return int(source.get(key) or 0)  # absent or null (exclude_none drops it; the API sends null) is 0

    counted = Usage(
        input_tokens=count(usage, "input_tokens"), output_tokens=count(usage, "output_tokens"), model_calls=1,
        cache_creation_input_tokens=count(usage, "cache_creation_input_tokens"),
        cache_read_input_tokens=count(usage, "cache_read_input_tokens"),
        cache_creation_1h_input_tokens=count(creation, "ephemeral_1h_input_tokens"),
    )
    provider = response.get("provider")  # named by jobcore.failover.FailoverModel
    return replace(counted, by_provider={provider: counted}) if isinstance(provider, str) else counted


def text_of(response: Mapping[str, Any]) -> str:
    return "".join(block.get("text", "") for block in response.get("content", []) if block.get("type") == "text")


class IncompleteCallsError(Exception):
    """Some of a job's model calls failed (``error``, the first) while others answered (``responses``, by key):
    the runner keeps those answers, so that the job's next run makes only the calls that failed."""

    def __init__(self, error: Exception, responses: dict[str, dict[str, Any]]):
        super().__init__(str(error))
        self.error = error
        self.responses = responses


def run_task(spec: TaskSpec, payload: dict[str, Any], ctx: RunContext,
             known: Mapping[str, dict[str, Any]] | None = None) -> TaskResult:
    """Run one job of ``spec`` with ``ctx``: its model calls concurrently (those whose answer is ``known`` from an
    earlier run are not made again), or the executor itself."""
    executor = load_executor(spec.executor)
    if isinstance(executor, ModelCallsExecutor):
        known = dict(known or {})
        requests = [r for r in executor.requests(payload, model_id=ctx.model_id) if r.key not in known]
        responses = {**known, **call_all(requests, ctx, answered=known)}
        usage = sum((usage_of(response) for response in responses.values()), Usage())
        return TaskResult(executor.assemble(payload, responses), usage)
    return executor.run(payload, ctx)


def call_all(requests: Sequence[ModelRequest], ctx: RunContext,
             answered: Mapping[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Every request's response by key, ``ctx.concurrency`` at a time; ``ctx.check`` before each call. When some
    fail, the others still run to their end, and when the first failure is retryable IncompleteCallsError carries it
    with the answers (``answered`` too)."""

    def call(request: ModelRequest) -> tuple[str, dict[str, Any]]:
        ctx.check()
        return request.key, ctx.llm.create(request.params, timeout_s=ctx.call_timeout_s)

    if not requests:
        return {}
    if len(requests) == 1 and not answered:
        return dict([call(requests[0])])
    with ThreadPoolExecutor(max_workers=max(1, min(ctx.concurrency, len(requests))), thread_name_prefix="model") as pool:
        # Each call runs in the caller's context (its current span), copied per call: one context is entered by one thread.
        futures = [pool.submit(contextvars.copy_context().run, call, request) for request in requests]
        responses, failures = {}, []
        for future in futures:
            try:
                key, response = future.result()
                responses[key] = response
            except Exception as error:  # noqa: BLE001 - re-raised below, with the answers that did come
                failures.append(error)
    if failures:
        # Only a failure worth retrying (the model refused or failed) keeps the answers; any other ends the job.
        if (responses or answered) and getattr(failures[0], "retryable", False):
            raise IncompleteCallsError(failures[0], {**(answered or {}), **responses}) from failures[0]
        raise failures[0]
    return responses
