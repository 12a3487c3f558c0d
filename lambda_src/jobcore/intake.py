"""S3-triggered jobs: an object created under ``intake/<task>/<name>`` of the results bucket becomes a job of
that task, with the object as its input.

What each task accepts: ``invoice.extract`` takes the object's bytes as text (UTF-8, at most
:data:`MAX_OBJECT_BYTES`), as ``{"text": ...}``; every other task takes a JSON document, the task's ``input``.
An event-triggered job has no client waiting: it is submitted with mode ``async`` (its route reason says so).

The same object delivered twice (S3 and SQS deliver at least once; the local lister sees it on every pass)
makes one job: the submit reserves an idempotency key made of the object's bucket, key and ETag (or the
event's sequencer), the reservation of :mod:`jobcore.idempotency`. An object that cannot become a job
(an unknown task, too big, not UTF-8, not JSON, invalid for its task) becomes a *failed* job with the reason,
which the operator sees in ``GET /v1/jobs``, never a message retried forever.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobcore import idempotency, jsonbody
from jobcore.errors import BadRequestError, InvalidInputError, JobError, UnknownTaskError, UnroutableError
from jobcore.model import Job, JobStatus, Mode, Webhook
from jobcore.requests import SubmitRequest
from jobcore.service import DAY_S, JobService
from jobcore.tasks import lookup

log = logging.getLogger(__name__)

PREFIX = "intake/"
TEXT_TASKS = frozenset({"invoice.extract"})  # the object's bytes are the text
MAX_OBJECT_BYTES = 256 * 1024  # above this an object is refused (a failed job), never read
NOT_ROUTED = "none"  # the lane of an intake job that never became a runnable job
# The intake queue (S3 notifications → SQS → the intake function), in AWS and locally: a message is held this long
# while one invocation (30 s at most) takes it, and moved to the dead-letter queue after MAX_RECEIVES receives.
FUNCTION_TIMEOUT_S = 30
QUEUE_VISIBILITY_S = 6 * FUNCTION_TIMEOUT_S  # AWS's advice for a Lambda event source
MAX_RECEIVES = 5
BATCH_SIZE = 10
_OBJECT = "the object"  # how messages name an intake object's content


class IntakeError(JobError):
    """Why an intake object could not become a runnable job; its job fails with this message."""

    type = "intake_rejected"


@dataclass(frozen=True, kw_only=True)
class IntakeObject:
    """One created object, as its S3 event names it (the key already URL-decoded)."""

    bucket: str
    key: str
    size: int
    etag: str = ""
    sequencer: str = ""

    @property
    def source(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def version_tag(self) -> str:
        """What tells two writes of the same key apart: the ETag (the content), else the event's sequencer."""
        return self.etag.strip('"') or self.sequencer


def task_of(key: str) -> str:
    """``intake/<task>/<name>`` → ``<task>``; IntakeError for any other key."""
    if not key.startswith(PREFIX):
        raise IntakeError(f"the key {key!r} is not under {PREFIX}")
    task, slash, name = key[len(PREFIX):].partition("/")
    if not task or not slash or not name or name.endswith("/"):
        raise IntakeError(f"the key {key!r} is not of the form {PREFIX}<task>/<name>")
    return task


def decode_input(task: str, data: bytes) -> Any:
    """The task's input from the object's bytes: text for :data:`TEXT_TASKS`, a JSON document for the others."""
    if len(data) > MAX_OBJECT_BYTES:
        raise IntakeError(f"the object is {len(data):,} bytes; an intake object may have at most {MAX_OBJECT_BYTES:,}")
    try:
        text = jsonbody.decode(data, document=_OBJECT)
    except BadRequestError as error:
        raise IntakeError(str(error)) from None
    if task in TEXT_TASKS:
        if not text.strip():
            raise IntakeError("the object is empty; an invoice.extract object holds the invoice's text")
        return {"text": text}
    if not text.strip():
        raise IntakeError(f"the object is empty; a {task} object holds the task's input as a JSON document")
    try:  # the one parser of every input: what a request body may not carry, an intake object may not either
        return jsonbody.parse(text, document=_OBJECT, root="input")
    except (BadRequestError, InvalidInputError) as error:
        raise IntakeError(f"the object is not a JSON document the pipeline can keep ({error})") from None


def idempotency_key(obj: IntakeObject) -> str:
    """The reservation's key: bucket, key and version tag, hashed (an object key may hold any character)."""
    digest = hashlib.sha256(f"{obj.bucket}\n{obj.key}\n{obj.version_tag}".encode()).hexdigest()
    return f"intake:{digest}"


def submit_object(service: JobService, obj: IntakeObject, read: Callable[[], bytes], *, tenant_id: str,
                  webhook_url: str = "") -> Job:
    """The job ``obj`` becomes (the one it already became, when delivered again). ``read`` gets its bytes,
    called only for an object of a known task within the size limit."""
    webhook = Webhook(webhook_url) if webhook_url else None
    key = idempotency_key(obj)
    try:
        task = task_of(obj.key)
        lookup(task, service.context.catalogue)
        if obj.size > MAX_OBJECT_BYTES:
            raise IntakeError(f"the object is {obj.size:,} bytes; an intake object may have at most {MAX_OBJECT_BYTES:,}")
        request = SubmitRequest(task=task, input=decode_input(task, read()), mode=Mode.ASYNC, webhook=webhook)
        return service.submit(request, tenant_id=tenant_id, idempotency_key=key, source=obj.source).job
    except (IntakeError, UnknownTaskError, UnroutableError, InvalidInputError, BadRequestError) as error:
        return _failed(service, obj, error, tenant_id=tenant_id, webhook=webhook, key=key)


def _failed(service: JobService, obj: IntakeObject, error: JobError, *, tenant_id: str, webhook: Webhook | None,
            key: str) -> Job:
    """A failed job recording why ``obj`` could not run (once per object version, like a runnable one)."""
    runner, context = service.runner, service.context
    now = context.clock_ms()
    task = obj.key[len(PREFIX):].partition("/")[0] if obj.key.startswith(PREFIX) else ""
    record = idempotency.new_record(tenant_id=tenant_id, key=key, job_id=service.new_id(), body={"source": obj.source},
                                    now_ms=now)
    replay = service.reserve(record)
    if replay is not None:
        return replay.job
    job = Job(
        job_id=record.job_id, tenant_id=tenant_id, task=task or "unknown", status=JobStatus.QUEUED, lane=NOT_ROUTED,
        route_reason=f"not routed: the S3 intake object {obj.source} could not become a job", mode=Mode.ASYNC,
        created_at=now, updated_at=now, webhook=webhook, expires_at=now // 1000 + service.job_ttl_days * DAY_S,
        source=obj.source,
    )
    context.store.create(job)
    failed = runner.fail(job, IntakeError(f"S3 intake {obj.source}: {error}"))
    context.store.complete_key(record.record_id, status_code=200)
    log.warning("intake object %s became failed job %s: %s", obj.source, job.job_id, error)
    return failed
