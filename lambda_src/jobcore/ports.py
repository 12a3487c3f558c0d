"""The ports: what the core needs from the outside world, as Protocols.

Adapters in :mod:`jobadapters` implement them over DynamoDB, SQS, S3, the anthropic SDK and HTTP;
tests implement them in memory (``tests/fakes.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

from jobcore.capacity import SharedBucket
from jobcore.deliveries import AttemptResult
from jobcore.idempotency import IdempotencyRecord
from jobcore.model import Job, JobStatus
from jobcore.usage import UsageEntry

if TYPE_CHECKING:
    from jobcore.breaker import BreakerState


@dataclass(frozen=True)
class Cursor:
    """Where a page of a tenant's jobs ended: the last job's creation time and id."""

    created_at: int
    job_id: str


class JobStore(Protocol):
    """Jobs and idempotency keys. Every method raises StoreUnavailableError when the store throttles,
    fails or cannot be reached."""

    def create(self, job: Job) -> None:
        """Persist a new job; ConflictError if the id exists."""

    def get(self, job_id: str) -> Job | None: ...

    def save(self, job: Job, *, expected_version: int, usage: UsageEntry | None = None) -> None:
        """Persist ``job`` only if the stored version is still ``expected_version``, else ConflictError. With
        ``usage`` (a terminal write), add it to its tenant's counters (:class:`UsageStore`) in the same atomic write:
        both or neither, so a job is counted exactly once whatever fails or dies around it."""

    def claim(self, job_id: str, *, owner: str, now_ms: int, lease_expires_at: int) -> tuple[Job | None, bool]:
        """A worker's claim in one conditional write, without reading the job first: a job that is queued, not
        past its queue deadline and not waiting for the model becomes ``transition(job, RUNNING, now_ms=now_ms,
        lease_owner=owner, lease_expires_at=lease_expires_at)``, returned with True. Any other job is left as
        it is and returned as it stands (None: no such job) with False, for the runner to decide from."""
        ...

    def due_deliveries(self, *, until_ms: int, limit: int) -> list[tuple[str, int]]:
        """``(job id, ms)`` of the pending webhook deliveries the sweep must act on by ``until_ms``
        (:meth:`jobcore.deliveries.Delivery.sweep_at`), earliest first."""
        ...

    def watched(self, *, until_ms: int, limit: int) -> list[tuple[str, int]]:
        """``(job id, ms)`` of the jobs the sweeper must look at by ``until_ms``
        (:func:`jobcore.model.watch_at`: leases ending, queue deadlines passing), earliest first."""
        ...

    def renew_lease(self, job_id: str, *, owner: str, until_ms: int) -> bool:
        """Extend ``owner``'s lease on a running (or canceling) job to ``until_ms``, without changing its
        version; False if ``owner`` no longer holds it (its job re-queued, settled or claimed by another). It
        says nothing of a cancel: :meth:`lease_states` does (DynamoDB renews the lease in an item of its own, a
        write unit whatever the job's size, that knows nothing of the job's status)."""
        ...

    def lease_states(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        """The status and lease owner of each of ``job_ids`` that exists, read at once (strongly consistent,
        no write): how a worker's heartbeat sees, between renewals, that a job in flight is being canceled
        or is no longer its own."""
        ...

    def list_jobs(self, tenant_id: str, *, status: JobStatus | None, limit: int, after: Cursor | None) -> tuple[list[Job], Cursor | None]:
        """The tenant's jobs, newest first, ``status`` only if given; a cursor when there may be more."""
        ...

    def reserve_key(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Store ``record`` if its id is free (None), else return the record already there."""
        ...

    def complete_key(self, record_id: str, *, status_code: int) -> None:
        """Record the status code the reserved key's request answered."""

    def release_key(self, record_id: str) -> None:
        """Forget a reservation whose request was not accepted (so a retry may use the key)."""


class InlineSlots(Protocol):
    """The router's inline runs in flight, counted across its executions (:mod:`jobcore.concurrency`)."""

    def take(self) -> str | None:
        """A slot for one inline run (a token to give back), or None when the budget is in use. Never raises:
        a store that cannot count admits the run (None only means "full")."""
        ...

    def give_back(self, token: str) -> None:
        """The run is over. Never raises: a slot not given back is forgotten when its window turns."""


class JobQueue(Protocol):
    def enqueue(self, job: Job, *, delay_s: int = 0) -> None:
        """Hand the job id to its lane's queue, to be received no sooner than ``delay_s`` from now (at most
        SQS's 900 s); EnqueueError if that lane has no queue or SQS refuses."""


class LaneWaker(Protocol):
    def wake(self, lane: str) -> bool:
        """Ask for a worker on ``lane`` now if its service has no task at all (none running, none pending);
        True when it did. Never raises: the job is already queued, and the lane's backlog scaling is the
        fallback (:mod:`jobcore.wake`)."""
        ...


class BlobStore(Protocol):
    """Result and large-input documents, addressed by key. Reads and writes raise StoreUnavailableError
    when the store throttles or cannot be reached."""

    def put_json(self, key: str, document: Any) -> int:
        """Store the document; returns its size in bytes."""

    def get_json(self, key: str) -> Any:
        """The document; BlobNotFoundError if there is none (expired, or deleted)."""

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> int:
        """Store a binary document (a task's file); returns its size in bytes."""

    def open_stream(self, key: str) -> tuple[IO[bytes], str]:
        """A document's body as a stream (an upload, read without holding it twice) and its content type;
        BlobNotFoundError if there is none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a document is stored at ``key`` (without reading it)."""
        ...

    def url_for(self, key: str) -> str | None:
        """A URL the client can GET the document from (presigned), or None where there is none."""


class LanguageModel(Protocol):
    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        """One Messages API call; the response as a plain dict. Raises jobcore.errors.ModelError.

        Behind :class:`jobcore.failover.FailoverModel` the dict also names the provider that answered
        (``"provider": "bedrock"``), which the job's usage records per provider."""


class BreakerStore(Protocol):
    """The providers' circuit breakers, shared by every process (jobcore.breaker)."""

    def load(self, provider: str) -> BreakerState:
        """The provider's breaker; a closed one at version 0 when none is stored."""

    def save(self, provider: str, state: BreakerState, *, expected_version: int) -> bool:
        """Write it if the stored version is still ``expected_version``; False when another process won."""


class CapacityStore(Protocol):
    """The shared model budgets (jobcore.capacity), one per model family, where every process reaches them.
    StoreUnavailableError when the store fails."""

    def load(self, family: str) -> SharedBucket | None:
        """The family's bucket as stored (strongly consistent), None if none is stored yet."""
        ...

    def swap(self, family: str, bucket: SharedBucket, *, expected_version: int) -> SharedBucket | None:
        """Store ``bucket`` (its ``version`` the next one) if the stored version is still ``expected_version``
        (0: none is stored); None when written, else the bucket as it is stored now (the race lost), from the
        refused write itself, so that the retry needs no read."""
        ...


class DeliveryQueue(Protocol):
    def schedule(self, job_id: str, *, due_at: int, delay_s: int = 0) -> None:
        """Ask the dispatcher to make the job's delivery attempt due at ``due_at`` (epoch ms), in
        ``delay_s`` seconds (at most SQS's 900).

        Raises on failure; callers log it: the dispatcher's sweep finds every due delivery anyway.
        """


class WebhookSender(Protocol):
    def post(self, url: str, *, event_id: str, body: bytes, timeout_s: float) -> AttemptResult:
        """One signed POST of ``body``; what it came to, never an exception for the receiver's failures."""
        ...


# --- the batch lane (jobcore.batches) ------------------------------------------------------------


@dataclass(frozen=True)
class BatchRequest:
    """One request of a Message Batch: ``custom_id`` (``^[a-zA-Z0-9_-]{1,64}$``) and the Messages API params."""

    custom_id: str
    params: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class BatchInfo:
    """A Message Batch as the API reports it."""

    batch_id: str
    status: str  # "in_progress", "canceling" or "ended"
    created_at: int  # epoch ms
    expires_at: int  # epoch ms: the API ends it (its unfinished requests expired) 24 h after creation
    ended_at: int | None = None
    counts: Mapping[str, int] | None = None  # processing, succeeded, errored, canceled, expired


@dataclass(frozen=True, kw_only=True)
class BatchResult:
    """One line of a batch's results: ``kind`` is ``succeeded`` (``message``: the Message as a dict),
    ``errored`` (``error``: ``{"type", "message"}``, the API's error object), ``canceled`` or ``expired``."""

    custom_id: str
    kind: str
    message: dict[str, Any] | None = None
    error: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class BatchRecord:
    """What the pipeline keeps of a batch it sent (the jobs table, its own item): the jobs in it, in order, each
    with its number of requests (request ``m`` of job ``n`` has the custom id ``j{n}-r{m}``; the keys are the
    executor's, rebuilt from the job's input when the results come back), and where it stands."""

    batch_id: str
    created_at: int  # epoch ms
    expires_at: int  # epoch ms, the API's
    model_id: str  # the default model its requests were built with (a job's own "model" wins)
    jobs: tuple[tuple[str, int], ...]  # (job id, requests)
    status: str = "open"  # "open", "done"
    cancel_requested_at: int | None = None  # we asked the API to cancel it (every job in it was being canceled)
    ended_at: int | None = None
    counts: Mapping[str, int] | None = None
    version: int = 0


class BatchApi(Protocol):
    """The Message Batches API. Every method raises jobcore.errors.ModelError (retryable when the API is
    rate-limited, overloaded, failing or unreachable)."""

    def create(self, requests: Sequence[BatchRequest]) -> BatchInfo: ...

    def retrieve(self, batch_id: str) -> BatchInfo: ...

    def results(self, batch_id: str) -> Iterable[BatchResult]:
        """Every request's result of an ended batch (in no particular order)."""
        ...

    def cancel(self, batch_id: str) -> BatchInfo: ...


class BatchStore(Protocol):
    """The batch records (jobcore.batches), next to the jobs. StoreUnavailableError when the store fails."""

    def open_batches(self) -> list[str]:
        """The ids of the batches not yet settled."""
        ...

    def create_batch(self, record: BatchRecord) -> None:
        """Persist a new record and count it open; ConflictError if it exists."""

    def get_batch(self, batch_id: str) -> BatchRecord | None: ...

    def save_batch(self, record: BatchRecord, *, expected_version: int) -> None:
        """Persist ``record`` if the stored version is still ``expected_version`` (else ConflictError); a
        record whose status is ``done`` is no longer open."""


class BatchInbox(Protocol):
    """The batch lane's queue, as its collector consumes it."""

    def receive(self, *, limit: int) -> list[tuple[str | None, str]]:
        """Up to ``limit`` messages waiting now: ``(job id or None if not a job message, receipt)``."""
        ...

    def delete(self, receipt: str) -> None: ...

    def release(self, receipt: str, *, delay_s: int) -> None:
        """Make the message visible again in ``delay_s`` seconds."""


# --- operating it: usage counters, traces and metrics ---------------------------------------------


class UsageStore(Protocol):
    """Per-tenant, per-day usage counters (:mod:`jobcore.usage`). StoreUnavailableError when the store fails."""

    def add(self, entry: UsageEntry) -> None:
        """Add ``entry``'s counts to its tenant's item of its day, in one write."""

    def read(self, tenant_id: str, days: Sequence[str]) -> dict[str, dict[str, int]]:
        """The tenant's counters of each of ``days`` that has any (``task|lane|counter`` → value), by day."""
        ...


class Span(Protocol):
    def set_attribute(self, key: str, value: Any) -> None: ...


class Observer(Protocol):
    """Traces and metrics (OpenTelemetry and EMF in :mod:`jobadapters.observer`); no method raises."""

    def span(self, name: str, *, parent: str | None = None, link: str | None = None,
             attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Span]:
        """A span around a block: a child of the current span, or of ``parent`` (a W3C traceparent) when given;
        ``link``: a traceparent it is linked to (a queued job's submit)."""
        ...

    def traceparent(self) -> str | None:
        """The current span's W3C traceparent (None when not tracing): what a new job records."""
        ...

    def submitted(self, job: Job) -> None: ...

    def started(self, job: Job, *, now_ms: int) -> None: ...

    def finished(self, job: Job) -> None: ...

    def capacity_wait(self, job: Job) -> None:
        """``job`` was queued again to wait for the model's capacity (rate-limited, overloaded, failing)."""

    def flush(self) -> None:
        """Export what is buffered (before a Lambda returns, before a worker exits)."""
