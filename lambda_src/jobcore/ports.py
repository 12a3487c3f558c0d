"""The ports: what the core needs from the outside world, as Protocols.

Adapters in :mod:`jobadapters` implement them over DynamoDB, SQS, S3, the anthropic SDK and HTTP;
tests implement them in memory (``tests/fakes.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from jobcore.deliveries import AttemptResult
from jobcore.idempotency import IdempotencyRecord
from jobcore.model import Job, JobStatus


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

    def save(self, job: Job, *, expected_version: int) -> None:
        """Persist ``job`` only if the stored version is still ``expected_version``, else ConflictError."""

    def due_deliveries(self, *, until_ms: int, limit: int) -> list[tuple[str, int]]:
        """``(job id, ms)`` of the pending webhook deliveries the sweep must act on by ``until_ms``
        (:meth:`jobcore.deliveries.Delivery.sweep_at`), earliest first."""
        ...

    def watched(self, *, until_ms: int, limit: int) -> list[tuple[str, int]]:
        """``(job id, ms)`` of the jobs the sweeper must look at by ``until_ms``
        (:func:`jobcore.model.watch_at`: leases ending, queue deadlines passing), earliest first."""
        ...

    def renew_lease(self, job_id: str, *, owner: str, until_ms: int) -> JobStatus | None:
        """Extend ``owner``'s lease on a running (or canceling) job to ``until_ms``, without changing its
        version; the job's status, or None if ``owner`` no longer holds it."""
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


class JobQueue(Protocol):
    def enqueue(self, job: Job, *, delay_s: int = 0) -> None:
        """Hand the job id to its lane's queue, to be received no sooner than ``delay_s`` from now (at most
        SQS's 900 s); EnqueueError if that lane has no queue or SQS refuses."""


class BlobStore(Protocol):
    """Result and large-input documents, addressed by key. Reads and writes raise StoreUnavailableError
    when the store throttles or cannot be reached."""

    def put_json(self, key: str, document: Any) -> int:
        """Store the document; returns its size in bytes."""

    def get_json(self, key: str) -> Any:
        """The document; BlobNotFoundError if there is none (expired, or deleted)."""

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> int:
        """Store a binary document (a task's file); returns its size in bytes."""

    def url_for(self, key: str) -> str | None:
        """A URL the client can GET the document from (presigned), or None where there is none."""


class LanguageModel(Protocol):
    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        """One Messages API call; the response as a plain dict. Raises jobcore.errors.ModelError."""


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
