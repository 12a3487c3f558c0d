"""The job, its states and the moves between them.

Every change of a job is a *transition*: a pure function from the job as read to the job to write,
which the store persists with a condition on the version it read. Two workers that receive the same
message (SQS delivers at least once) therefore cannot both finish the job: the second write loses.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from jobcore.deliveries import Delivery
from jobcore.errors import InvalidTransitionError
from jobcore.limits import MAX_QUEUED_S


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELING = "canceling"  # a cancel reached a running job; its worker stops it, then it is canceled
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({
    JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.EXPIRED, JobStatus.TIMED_OUT,
})

# running → running: a redelivered message re-claims a job whose worker died mid-run (its lease expired).
# running → queued: an inline run fell back to the queue, a worker released the job on shutdown, or the
# sweeper re-queued a job whose worker stopped renewing its lease.
# running → expired: an inline run fell back to the queue after its max_queue_s had passed.
# canceling → canceled: the worker (or the sweeper, for a dead worker) confirms the cancel; a job being
# canceled can end no other way.
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELED, JobStatus.EXPIRED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({
        JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELING,
        JobStatus.TIMED_OUT, JobStatus.EXPIRED,
    }),
    JobStatus.CANCELING: frozenset({JobStatus.CANCELED}),
}
ACTIVE = frozenset({JobStatus.RUNNING, JobStatus.CANCELING})  # someone holds a lease on the job


class Mode(enum.StrEnum):
    AUTO = "auto"
    SYNC = "sync"
    ASYNC = "async"
    BATCH = "batch"  # the client can wait (up to 24 h): the batch lane, Message Batches API prices


@dataclass(frozen=True)
class Usage:
    """Claude tokens a job used, as the Messages API counts them: ``input_tokens`` are the uncached input
    only (after the last cache breakpoint); a cached prefix is counted in ``cache_creation_input_tokens``
    (written this call; ``cache_creation_1h_input_tokens`` of them with the 1-hour TTL) or in
    ``cache_read_input_tokens`` (a hit). Items stored before caching lack them: 0."""

    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    # The part of it each model provider answered (jobcore.failover): provider → its Usage. Empty for the calls
    # of a deployment with one provider, and for items stored before there were providers.
    by_provider: Mapping[str, Usage] = field(default_factory=dict)

    def __add__(self, other: Usage) -> Usage:
        counts = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Usage) if f.name != "by_provider"}
        merged = dict(self.by_provider)
        for name, part in other.by_provider.items():
            merged[name] = merged[name] + part if name in merged else part
        return Usage(**counts, by_provider=merged)

    def to_dict(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in _USAGE_COUNTS},
                "by_provider": {name: part.to_dict() for name, part in self.by_provider.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        fields_ = dict(data)
        fields_["by_provider"] = {name: cls.from_dict(part) for name, part in (fields_.get("by_provider") or {}).items()}
        return cls(**fields_)


@dataclass(frozen=True)
class Webhook:
    url: str
    events: tuple[str, ...] = ("completed",)


@dataclass(frozen=True)
class ModelWait:
    """A job's wait for the model (rate-limited, overloaded, failing): a worker re-queues the job with a
    delay instead of spending its receives, for at most the runner's ``model_wait_limit_s`` from ``since``."""

    since: int  # epoch ms of the first failure this job waited out
    waits: int  # times it was re-queued to wait for the model
    reason: str  # the last one, as the job's view says it: "model rate-limited (429)"
    next_attempt_at: int | None = None  # while queued to wait: when it runs again (None once it runs)
    # The last wait was for the model's shared budget (jobcore.capacity): the next grant expected at next_attempt_at.
    capacity: bool = False
    # Of the time since ``since``, how long it waited for the budget rather than for the model: not counted
    # toward the runner's model_wait_limit_s.
    excluded_ms: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelWait:
        return cls(since=int(data["since"]), waits=int(data["waits"]), reason=str(data["reason"]),
                   next_attempt_at=None if data.get("next_attempt_at") is None else int(data["next_attempt_at"]),
                   capacity=bool(data.get("capacity", False)), excluded_ms=int(data.get("excluded_ms") or 0))


# The attempt history kept on a job: its last attempts' errors, each message cut to this length.
ATTEMPT_ERRORS_KEPT = 10
ERROR_MESSAGE_CHARS = 500


@dataclass(frozen=True, kw_only=True)
class Job:
    job_id: str
    tenant_id: str
    task: str
    status: JobStatus
    lane: str  # jobcore.lanes: where it runs ("inline", "cpu", "gpu", ...)
    route_reason: str  # why the router chose that lane
    mode: Mode = Mode.AUTO
    created_at: int  # epoch milliseconds, like every timestamp here
    updated_at: int
    input: dict[str, Any] | None = None
    input_ref: str | None = None  # S3 key when the input is too big for the item
    hints: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    webhook: Webhook | None = None
    started_at: int | None = None
    finished_at: int | None = None
    attempts: int = 0
    result_ref: str | None = None  # S3 key of a result too big for the item (jobcore.limits.RESULT_IN_ITEM_BYTES)
    result_bytes: int | None = None  # the result's size as JSON, wherever it is kept
    result_json: str | None = None  # a small result's JSON text, kept in the item itself (then result_ref is None)
    error: dict[str, str] | None = None
    usage: Usage = Usage()
    cost: dict[str, Any] = field(default_factory=dict)
    expires_at: int | None = None  # epoch seconds (DynamoDB TTL)
    queue_deadline_at: int | None = None  # a queued job not started by then expires (the request's max_queue_s)
    # Queued, but its lane's queue refused its message then (epoch ms): the sweeper sends it (jobcore.sweeper).
    unsent_since: int | None = None
    lease_owner: str | None = None  # who runs it (a worker, or the router inline), while running
    lease_expires_at: int | None = None  # renewed by its runner's heartbeat; past it, the job is stale
    result_expires_at: int | None = None  # when the stored result is deleted (the bucket's lifecycle)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # a task's files: name → key, bytes, content_type
    delivery: Delivery | None = None  # the webhook outbox entry, opened with the terminal state
    model_wait: ModelWait | None = None  # waiting for the model (and since when), see ModelWait
    capacity_wait_ms: int = 0  # how long it waited, in all, for grants from the model's shared budget (jobcore.capacity)
    # The errors of its failed attempts, oldest first, the last ATTEMPT_ERRORS_KEPT: {attempt, at, type, message}.
    attempt_errors: tuple[dict[str, Any], ...] = ()
    # The batch lane (jobcore.batches): the Message Batch its requests are in (the last one, once it ended),
    # and how many batches it has been sent in.
    batch_id: str | None = None
    batch_attempts: int = 0
    # Tracing (jobadapters.tracing): the W3C traceparent of the submit's span, carried by every message of the
    # job (SQS message attributes) and the webhook; its trace id is the job view's ``trace_id``.
    trace_parent: str | None = None
    max_cost_usd: float | None = None  # the request's cap: its run stops between model calls on reaching it
    source: str | None = None  # an S3-triggered job's object, "s3://bucket/intake/<task>/<name>" (jobcore.intake)
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The job as plain data, None fields left out. Its documents (``input``, ``hints``, ``metadata``, ``cost``,
        ``files``) are the job's own, not copies: whoever keeps or changes the result copies them (the store's items
        are JSON round trips). ``dataclasses.asdict`` deep-copied them on every write, a large input's every list
        and map again (a store write of a 20,000-list input spent seconds there)."""
        data = {name: getattr(self, name) for name in _JOB_FIELDS}
        data["status"] = self.status.value
        data["mode"] = self.mode.value
        data["usage"] = self.usage.to_dict()
        if self.webhook is not None:
            data["webhook"] = {"url": self.webhook.url, "events": list(self.webhook.events)}
        if self.delivery is not None:
            data["delivery"] = self.delivery.to_dict()
        if self.model_wait is not None:
            data["model_wait"] = {name: getattr(self.model_wait, name) for name in _MODEL_WAIT_FIELDS}
        data["attempt_errors"] = [dict(entry) for entry in self.attempt_errors]
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        fields = dict(data)
        fields["status"] = JobStatus(fields["status"])
        if "lane" not in fields and "route" in fields:  # items written before lanes had their name
            fields["lane"] = fields["route"]
        fields["mode"] = Mode(fields.get("mode", "auto"))
        if fields.get("webhook"):
            fields["webhook"] = Webhook(fields["webhook"]["url"], tuple(fields["webhook"].get("events", ())))
        fields["usage"] = Usage.from_dict(fields.get("usage", {}))
        if fields.get("delivery"):
            fields["delivery"] = Delivery.from_dict(fields["delivery"])
        if fields.get("model_wait"):
            fields["model_wait"] = ModelWait.from_dict(fields["model_wait"])
        fields["attempt_errors"] = tuple(dict(entry) for entry in fields.get("attempt_errors") or ())
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in fields.items() if k in known})


_USAGE_COUNTS = tuple(f.name for f in fields(Usage) if f.name != "by_provider")
_MODEL_WAIT_FIELDS = tuple(f.name for f in fields(ModelWait))
_JOB_FIELDS = tuple(f.name for f in fields(Job))


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``); None for anything else."""
    parts = (traceparent or "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    return parts[1] if all(c in "0123456789abcdef" for c in parts[1]) else None


def transition(job: Job, to: JobStatus, *, now_ms: int, **changes: Any) -> Job:
    """The job after moving to ``to``; raises if the lifecycle forbids that move."""
    if to not in ALLOWED.get(job.status, frozenset()):
        raise InvalidTransitionError(f"job {job.job_id} cannot go from {job.status.value} to {to.value}")
    if to is JobStatus.RUNNING:
        changes.setdefault("started_at", now_ms)
        changes["attempts"] = job.attempts + 1
        changes.setdefault("unsent_since", None)  # it was received: its message was sent after all
        if job.model_wait is not None and job.model_wait.next_attempt_at is not None:  # its wait is over
            changes.setdefault("model_wait", replace(job.model_wait, next_attempt_at=None))
    if to is JobStatus.SUCCEEDED:  # an earlier attempt's error stays in attempt_errors only
        changes.setdefault("error", None)
    if changes.get("error") and job.status in ACTIVE:  # the error ends this attempt: keep it in the history
        changes.setdefault("attempt_errors", _with_attempt_error(job, changes["error"], now_ms))
    if to not in ACTIVE:  # the lease ends with the run
        changes.setdefault("lease_owner", None)
        changes.setdefault("lease_expires_at", None)
    if to.terminal:
        changes.setdefault("finished_at", now_ms)
    return replace(job, status=to, updated_at=now_ms, version=job.version + 1, **changes)


def bounded_error(error: dict[str, Any]) -> dict[str, str]:
    """An error record whose message is at most ERROR_MESSAGE_CHARS long."""
    message = str(error.get("message", ""))
    if len(message) > ERROR_MESSAGE_CHARS:
        message = message[: ERROR_MESSAGE_CHARS - 1] + "…"
    return {"type": str(error.get("type", "internal_error")), "message": message}


def _with_attempt_error(job: Job, error: dict[str, Any], now_ms: int) -> tuple[dict[str, Any], ...]:
    entry = {"attempt": job.attempts, "at": now_ms, **bounded_error(error)}
    return (*job.attempt_errors, entry)[-ATTEMPT_ERRORS_KEPT:]


def watch_at(job: Job) -> int | None:
    """When the sweeper must look at this job: its lease's end while it runs; while queued, the first of its
    queue deadline, its unsent message (at once) and :func:`queued_limit_at` (so every queued job is watched);
    None when there is nothing to watch. The jobs table indexes this (sparse)."""
    if job.status in ACTIVE:
        return job.lease_expires_at
    if job.status is JobStatus.QUEUED:
        return min(at for at in (job.queue_deadline_at, job.unsent_since, queued_limit_at(job)) if at is not None)
    return None


def queued_limit_at(job: Job) -> int:
    """When a job still queued expires whatever its ``max_queue_s``: MAX_QUEUED_S after its submission,
    before its lane queue's retention could drop its message (jobcore.limits)."""
    return job.created_at + MAX_QUEUED_S * 1000
