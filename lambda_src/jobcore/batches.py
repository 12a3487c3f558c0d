"""The batch lane's collector: jobs whose client can wait go through the Message Batches API, at half price.

A job routed to the batch lane (``mode: "batch"``, or rule 1b of :mod:`jobcore.routing`) is queued like any
other (``JobQueue.enqueue`` to the lane's SQS queue), but no worker runs it: the **collector** does, one
:meth:`Collector.collect` pass at a time (a scheduled Lambda every minute in AWS, ``python -m
local.collector`` every second locally). A pass

1. **polls** every open batch (:class:`jobcore.ports.BatchRecord` in the jobs table). An ``ended`` one is
   settled job by job from its results: a job all of whose requests succeeded is assembled by its task's
   executor (:meth:`ModelCallsExecutor.assemble`, the same code the workers run) and finished with the
   runner's ``succeed`` (usage summed over the responses; cost at batch prices, the lane's compute is
   :class:`jobcore.lanes.BatchCompute`). A request ``errored`` with a retryable error (rate limit,
   overload, API error), ``expired``, or ``canceled`` without the job being canceled, puts the job back in the
   queue for a new batch, at most ``max_batch_attempts`` batches in all, then it fails saying why; any other
   error fails the job with the request's error (its type and message, bounded). A batch the API has not
   ended ``EXPIRY_GRACE_MS`` after its ``expires_at`` (24 h) is settled as expired. Then the record is closed.
2. **cancels**: a job canceled while its batch is open goes ``canceling`` (:meth:`jobcore.service.JobService.cancel`).
   The API cancels whole batches only, so the collector cancels a batch once every job in it is canceling
   (or already finished); the jobs end ``canceled`` when the batch ends. A canceling job in a batch with
   other live jobs stays ``canceling`` until its batch ends; whatever results it gets are discarded, and
   its tokens are still billed. A job canceled while it waits in the queue is canceled at once and never sent.
3. **submits**: drains the lane's queue (up to ``max_jobs`` messages), skips finished jobs and duplicates,
   builds each job's requests with its executor, groups them into batches within the API's limits
   (``MAX_BATCH_REQUESTS`` requests, ``MAX_BATCH_BYTES``; a job never spans batches; at most
   ``MAX_JOBS_PER_BATCH`` jobs, so the record fits a DynamoDB item), optionally waiting ``window_s`` for
   more, creates each batch (custom ids ``j{n}-r{m}``: request ``m`` of the record's job ``n``), records it,
   moves its jobs to ``running`` (``batch_id``, a lease that ends an hour after the batch must have ended:
   the sweeper leaves them alone while the collector owns them) and deletes their messages.

Every job change is a conditional write, and settling a batch is idempotent (a job already settled, or sent
in a newer batch, is skipped; the record is closed last), so a pass that dies is finished by the next. A
re-queued job's message is sent before its state is written: if the pass dies between the two, the message
finds the job still in its batch and is dropped, and the next pass settles the still-open record again.
The one window that can leak is between the API's ``create`` and the record's write: if the record cannot
be written the collector cancels the batch it just created; if the process dies right there, that batch
runs unread (its jobs' messages come back and they are sent again).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from jobcore.context import JobContext
from jobcore.errors import ConflictError, EnqueueError, JobError, ModelError, ModelRequestError, TaskOutputError
from jobcore.model import ACTIVE, Job, JobStatus, Usage, transition
from jobcore.ports import BatchApi, BatchInbox, BatchInfo, BatchRecord, BatchRequest, BatchResult, BatchStore, JobQueue
from jobcore.requests import well_formed_job_id
from jobcore.runner import JobRunner, expired_error
from jobcore.tasks import TaskResult, lookup
from jobcore.tasks.base import ModelCallsExecutor, ModelRequest, load_executor, usage_of

log = logging.getLogger(__name__)

# The Message Batches API's limits on one batch.
MAX_BATCH_REQUESTS = 100_000
MAX_BATCH_BYTES = 256 * 1024 * 1024
# Ours: the record lists its jobs (about 40 bytes each) in one DynamoDB item (400 KB at most).
MAX_JOBS_PER_BATCH = 5_000
# A batch the API has not ended this long after its expires_at is settled as expired.
EXPIRY_GRACE_MS = 3_600_000
# A job in a batch holds a lease until this long after its batch's expires_at: past it, the collector has
# not settled the batch (it is gone), and the sweeper queues the job again.
LEASE_GRACE_MS = 2 * EXPIRY_GRACE_MS
# Errors of a request in a batch that a new batch may not repeat.
RETRYABLE_ERRORS = frozenset({"rate_limit_error", "overloaded_error", "api_error", "timeout_error", "gateway_timeout_error"})
# A message whose job could not be sent (the API refused the create for a reason that may pass) is seen again after this.
RETRY_CREATE_S = 30
MAX_ERROR_CHARS = 300  # the API's words about a request, passed on to the tenant this long at most
_CUSTOM_ID = re.compile(r"^j(\d+)-r(\d+)$")
_ENVELOPE_BYTES = 64  # per request in the create body, besides its params: the custom id and the JSON around it


class BatchGoneError(ModelRequestError):
    """The API has no such batch (404): its requests will never come back."""


def custom_id(job_index: int, request_index: int) -> str:
    """Request ``request_index`` of the record's job ``job_index``: matches the API's ``^[a-zA-Z0-9_-]{1,64}$``."""
    return f"j{job_index}-r{request_index}"


def parse_custom_id(value: str) -> tuple[int, int] | None:
    match = _CUSTOM_ID.fullmatch(value)
    return (int(match[1]), int(match[2])) if match else None


@dataclass
class CollectReport:
    """What one pass did; the Lambda publishes it as metrics."""

    batches_created: int = 0
    requests_sent: int = 0
    jobs_sent: int = 0
    batches_ended: int = 0
    batches_canceled: int = 0  # cancels asked of the API
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    open_batches: int = 0  # after the pass
    oldest_open_s: float = 0.0  # the age of the oldest batch still open after the pass
    deferred: int = 0  # messages held back for the window
    errors: int = 0  # API or store failures this pass (retried next pass)
    poison: int = 0  # messages that named no job (not job messages, malformed ids), logged and deleted

    def __bool__(self) -> bool:
        return bool(self.batches_created or self.batches_ended or self.succeeded or self.failed or self.requeued
                    or self.canceled or self.expired or self.batches_canceled or self.poison)


@dataclass
class _Pending:
    job: Job
    receipt: str
    requests: list[ModelRequest]
    size: int


@dataclass(kw_only=True)
class Collector:
    runner: JobRunner  # settles the jobs: terminal writes, webhook hand-over, cost
    batches: BatchStore
    api: BatchApi
    inbox: BatchInbox  # the batch lane's queue, consumed
    queue: JobQueue  # to put a job back in the batch lane's queue
    model_id: str  # a request's model when the job names none
    lane: str = "batch"
    window_s: float = 0  # hold queued jobs up to this long for a fuller batch (0: send what is there each pass)
    max_batch_attempts: int = 3  # batches a job may be sent in before a retryable failure fails it
    max_jobs: int = MAX_JOBS_PER_BATCH  # messages one pass drains
    # How long one pass drains at most: jobs arriving as fast as they are read would otherwise keep the pass
    # draining, and none would be sent until they stopped coming.
    drain_ms: int = 5_000
    max_requests: int = MAX_BATCH_REQUESTS
    max_bytes: int = MAX_BATCH_BYTES
    max_jobs_per_batch: int = MAX_JOBS_PER_BATCH
    keep_going: Callable[[], bool] = lambda: True  # the Lambda stops before its timeout; the next pass goes on

    @property
    def context(self) -> JobContext:
        """The store, clock and catalogue the collector reads: its runner's (jobcore.context)."""
        return self.runner.context

    def collect(self) -> CollectReport:
        """One pass: settle ended batches and cancels, then send what waits in the queue."""
        report = CollectReport()
        self.poll(report)
        if self.keep_going():
            self.submit(report)
        self._open_figures(report)
        return report

    # --- 1. open batches ---------------------------------------------------------------------------

    def poll(self, report: CollectReport) -> None:
        for batch_id in self.batches.open_batches():
            if not self.keep_going():
                return
            try:
                self._poll_one(batch_id, report)
            except (ModelError, JobError) as error:
                report.errors += 1
                log.warning("batch %s: not polled this pass (%s)", batch_id, error)

    def _poll_one(self, batch_id: str, report: CollectReport) -> None:
        record = self.batches.get_batch(batch_id)
        if record is None or record.status == "done":
            return
        now = self.context.clock_ms()
        try:
            info = self.api.retrieve(batch_id)
        except BatchGoneError as error:  # 404: the API no longer has it; its requests will never come back
            log.warning("batch %s: the API refused to retrieve it (%s); settling its jobs as expired", batch_id, error)
            self._settle(record, None, report, why="its batch is gone from the API")
            return
        if info.status == "ended":
            self._settle(record, info, report)
            return
        if now > record.expires_at + EXPIRY_GRACE_MS:
            self._cancel_quietly(batch_id)
            self._settle(record, None, report, why=f"its batch did not end within 24 h (by {record.expires_at} ms)")
            return
        if record.cancel_requested_at is None and self._all_canceling(record):
            self.api.cancel(batch_id)
            report.batches_canceled += 1
            self.batches.save_batch(replace(record, cancel_requested_at=now, version=record.version + 1),
                                    expected_version=record.version)
            log.info("batch %s: every job in it is canceled; the batch is canceled", batch_id)

    def _all_canceling(self, record: BatchRecord) -> bool:
        """Every job still in this batch is being canceled (or has finished some other way)."""
        for job_id, _ in record.jobs:  # the common case stops at the first job: one read
            job = self.context.store.get(job_id)
            if job is not None and self._in(job, record) and job.status is not JobStatus.CANCELING:
                return False
        return True

    def _settle(self, record: BatchRecord, info: BatchInfo | None, report: CollectReport, *, why: str = "") -> None:
        """Finish every job of an ended batch (``info``), or of one that will never end (``info`` None: every
        request counts as expired, for ``why``), then close its record."""
        by_job: dict[int, dict[int, BatchResult]] = {}
        if info is not None:
            for result in self.api.results(record.batch_id):
                where = parse_custom_id(result.custom_id)
                if where is None or where[0] >= len(record.jobs):
                    log.warning("batch %s: a result for %r, which it never sent", record.batch_id, result.custom_id)
                    continue
                by_job.setdefault(where[0], {})[where[1]] = result
        for index, (job_id, count) in enumerate(record.jobs):
            if not self.keep_going():
                return  # the record stays open: the next pass settles the rest
            job = self.context.store.get(job_id)
            if job is None or not self._in(job, record):
                continue  # settled already (a pass that died), or canceled while queued
            try:
                self._settle_job(job, record, by_job.get(index, {}), count, report, why=why)
            except ConflictError:
                self._settle_changed(job_id, report)
        now = self.context.clock_ms()
        counts = dict(info.counts or {}) if info is not None else None
        ended_at = (info.ended_at or now) if info is not None else now
        self.batches.save_batch(replace(record, status="done", ended_at=ended_at, counts=counts,
                                        version=record.version + 1), expected_version=record.version)
        report.batches_ended += 1
        log.info("batch %s settled: %s", record.batch_id, counts or why)

    def _settle_job(self, job: Job, record: BatchRecord, results: Mapping[int, BatchResult], count: int,
                    report: CollectReport, *, why: str) -> None:
        if job.status is JobStatus.CANCELING:
            self.runner.finish(job, JobStatus.CANCELED)
            report.canceled.append(job.job_id)
            return
        if not why and len(results) == count and all(r.kind == "succeeded" for r in results.values()):
            self._succeed(job, record, results, count, report)
            return
        refused = [(m, r) for m, r in sorted(results.items()) if r.kind == "errored" and not _retryable(r)]
        if refused:
            m, result = refused[0]
            self._fail(job, _refusal(result, m), report)
            return
        self._retry(job, why or _retry_reason(results, count), report)

    def _succeed(self, job: Job, record: BatchRecord, results: Mapping[int, BatchResult], count: int,
                 report: CollectReport) -> None:
        payload = self.runner.load_input(job)
        model_id = payload.get("model") or record.model_id
        try:
            executor = self._executor(job)
            requests = executor.requests(payload, model_id=record.model_id)
            if len(requests) != count:  # the task's code changed while the batch ran: send it again
                self._retry(job, f"its task now makes {len(requests)} requests, not the {count} sent", report)
                return
            responses = {request.key: dict(results[m].message or {}) for m, request in enumerate(requests)}
            output = executor.assemble(payload, responses)
        except (JobError, KeyError, TypeError, ValueError) as error:
            failure = error if isinstance(error, JobError) else TaskOutputError(
                f"the task could not use the batch's answers ({type(error).__name__})")
            self._fail(job, failure, report)
            return
        usage = sum((usage_of(response) for response in responses.values()), Usage())
        self.runner.succeed(job, TaskResult(output, usage), model_id=model_id)
        report.succeeded.append(job.job_id)

    def _retry(self, job: Job, why: str, report: CollectReport) -> None:
        if job.batch_attempts >= self.max_batch_attempts:
            self._fail(job, ModelError(f"gave up after {job.batch_attempts} batches: {why}"), report)
            return
        now = self.context.clock_ms()
        error = {"type": "model_unavailable", "message": f"{why}; sent again in a new batch"}
        queued = transition(job, JobStatus.QUEUED, now_ms=now, error=error)
        if job.queue_deadline_at is not None and now > job.queue_deadline_at:
            self.runner.finish(job, JobStatus.EXPIRED, error=expired_error(job))
            report.expired.append(job.job_id)
            return
        try:
            self.queue.enqueue(queued)  # first: a message that finds its job still in its batch is dropped
        except EnqueueError as failure:
            self._fail(job, failure, report)
            return
        self.runner.save(job, queued)
        report.requeued.append(job.job_id)

    def _fail(self, job: Job, error: Exception, report: CollectReport) -> None:
        self.runner.fail(job, error)  # a job canceled meanwhile ends canceled (runner.finish)
        report.failed.append(job.job_id)

    def _settle_changed(self, job_id: str, report: CollectReport) -> None:
        """A job changed under the settling write: a cancel is confirmed; anything else stands."""
        current = self.context.store.get(job_id)
        if current is not None and current.status is JobStatus.CANCELING:
            self.runner.finish(current, JobStatus.CANCELED)
            report.canceled.append(job_id)

    def _cancel_quietly(self, batch_id: str) -> None:
        try:
            self.api.cancel(batch_id)
        except ModelError as error:
            log.warning("batch %s: cancel refused (%s)", batch_id, error)

    # --- 2. the queue --------------------------------------------------------------------------------

    def submit(self, report: CollectReport) -> None:
        pending = self._drain(report)
        for group in self._groups(pending):
            if not self.keep_going():
                for item in group:
                    self.inbox.release(item.receipt, delay_s=0)
                continue
            if self.window_s > 0 and not self._due(group):
                wait_s = self._window_left_s(group)
                for item in group:
                    self.inbox.release(item.receipt, delay_s=wait_s)
                report.deferred += len(group)
                continue
            self._send(group, report)

    def _drain(self, report: CollectReport) -> list[_Pending]:
        pending: list[_Pending] = []
        seen: set[str] = set()
        until = self.context.clock_ms() + self.drain_ms
        while len(pending) < self.max_jobs and self.keep_going() and self.context.clock_ms() < until:
            messages = self.inbox.receive(limit=min(10, self.max_jobs - len(pending)))
            if not messages:
                break
            for job_id, receipt in messages:
                if job_id is None or not well_formed_job_id(job_id):
                    log.warning("collector: dropped a poison message from the batch queue (job id %r)", job_id)
                    report.poison += 1
                    self.inbox.delete(receipt)
                    continue
                if job_id in seen:
                    self.inbox.delete(receipt)  # a duplicate of one in hand
                    continue
                seen.add(job_id)
                item = self._admit(job_id, receipt, report)
                if item is not None:
                    pending.append(item)
        return pending

    def _admit(self, job_id: str, receipt: str, report: CollectReport) -> _Pending | None:
        """The job of a message, ready to send; None when the message was settled here (and deleted)."""
        job = self.context.store.get(job_id)
        if job is None or job.status is not JobStatus.QUEUED:
            self.inbox.delete(receipt)  # finished, canceled, or already in a batch (a duplicate message)
            return None
        now = self.context.clock_ms()
        try:
            if job.queue_deadline_at is not None and now > job.queue_deadline_at:
                self.runner.finish(job, JobStatus.EXPIRED, error=expired_error(job))
                report.expired.append(job.job_id)
                self.inbox.delete(receipt)
                return None
            try:
                requests = self._executor(job).requests(self.runner.load_input(job), model_id=self.model_id)
                size = sum(_request_bytes(request) for request in requests)
                if not requests or len(requests) > self.max_requests or size > self.max_bytes:
                    raise ModelRequestError(f"its {len(requests)} requests ({size:,} bytes) do not fit one Message Batch "
                                            f"({self.max_requests:,} requests, {self.max_bytes:,} bytes)")
            except JobError as error:
                if error.retryable:
                    raise
                self._fail(job, error, report)
                self.inbox.delete(receipt)
                return None
        except ConflictError:
            self.inbox.delete(receipt)  # changed meanwhile (canceled): its new state stands
            return None
        return _Pending(job, receipt, requests, size)

    def _groups(self, pending: Sequence[_Pending]) -> list[list[_Pending]]:
        groups: list[list[_Pending]] = []
        current: list[_Pending] = []
        requests = size = 0
        for item in pending:
            if current and (requests + len(item.requests) > self.max_requests or size + item.size > self.max_bytes
                            or len(current) >= self.max_jobs_per_batch):
                groups.append(current)
                current, requests, size = [], 0, 0
            current.append(item)
            requests += len(item.requests)
            size += item.size
        if current:
            groups.append(current)
        return groups

    def _due(self, group: Sequence[_Pending]) -> bool:
        """Send now: the group is full, or its oldest job has waited the window."""
        full = (sum(len(item.requests) for item in group) >= self.max_requests or len(group) >= self.max_jobs_per_batch)
        return full or self._window_left_s(group) <= 0

    def _window_left_s(self, group: Sequence[_Pending]) -> int:
        oldest = min(item.job.updated_at for item in group)  # when it was (last) queued
        return max(0, math.ceil((oldest + self.window_s * 1000 - self.context.clock_ms()) / 1000))

    def _send(self, group: list[_Pending], report: CollectReport) -> None:
        requests = [BatchRequest(custom_id(n, m), request.params)
                    for n, item in enumerate(group) for m, request in enumerate(item.requests)]
        try:
            info = self.api.create(requests)
        except ModelError as error:
            if error.retryable:
                report.errors += 1
                log.warning("batch of %d jobs not created (%s); their messages come back in %d s", len(group), error,
                            RETRY_CREATE_S)
                for item in group:
                    self.inbox.release(item.receipt, delay_s=RETRY_CREATE_S)
                return
            if len(group) == 1:  # the API refused this one job's requests
                self._fail(group[0].job, error, report)
                self.inbox.delete(group[0].receipt)
                return
            half = len(group) // 2  # find the job it refused: each half on its own
            self._send(group[:half], report)
            self._send(group[half:], report)
            return
        record = BatchRecord(batch_id=info.batch_id, created_at=info.created_at, expires_at=info.expires_at,
                             model_id=self.model_id, jobs=tuple((item.job.job_id, len(item.requests)) for item in group))
        try:
            self.batches.create_batch(record)
        except Exception:
            self._cancel_quietly(info.batch_id)  # nobody would read its results
            for item in group:
                self.inbox.release(item.receipt, delay_s=RETRY_CREATE_S)
            raise
        report.batches_created += 1
        report.requests_sent += len(requests)
        lease = {"lease_owner": f"batch:{info.batch_id}", "lease_expires_at": info.expires_at + LEASE_GRACE_MS}
        for item in group:
            job = item.job
            try:
                self.runner.save(job, transition(job, JobStatus.RUNNING, now_ms=self.context.clock_ms(), batch_id=info.batch_id,
                                                 batch_attempts=job.batch_attempts + 1, model_wait=None, **lease))
                report.jobs_sent += 1
            except ConflictError:
                pass  # canceled meanwhile: it ends canceled, and its results are never read
            self.inbox.delete(item.receipt)
        log.info("batch %s: %d requests of %d jobs", info.batch_id, len(requests), len(group))

    # --- internals -----------------------------------------------------------------------------------

    def _executor(self, job: Job) -> ModelCallsExecutor:
        executor = load_executor(lookup(job.task, self.context.catalogue).executor)
        if not isinstance(executor, ModelCallsExecutor):
            raise ModelRequestError(f"task {job.task} computes its result itself; the batch lane only sends Claude requests")
        return executor

    def _in(self, job: Job, record: BatchRecord) -> bool:
        return job.status in ACTIVE and job.batch_id == record.batch_id

    def _open_figures(self, report: CollectReport) -> None:
        now = self.context.clock_ms()
        ages = []
        for batch_id in self.batches.open_batches():
            record = self.batches.get_batch(batch_id)
            if record is not None and record.status != "done":
                ages.append((now - record.created_at) / 1000)
        report.open_batches = len(ages)
        report.oldest_open_s = max(ages, default=0.0)


def _request_bytes(request: ModelRequest) -> int:
    return len(json.dumps(request.params, separators=(",", ":")).encode()) + _ENVELOPE_BYTES


def _retryable(result: BatchResult) -> bool:
    return (result.error or {}).get("type") in RETRYABLE_ERRORS


def _refusal(result: BatchResult, index: int) -> ModelError:
    error = result.error or {}
    kind, message = str(error.get("type") or "error"), str(error.get("message") or "")[:MAX_ERROR_CHARS]
    text = f"request {index + 1} of the job errored in its batch: {kind}: {message}".rstrip(": ")
    return ModelRequestError(text) if kind == "invalid_request_error" else ModelError(text)


def _retry_reason(results: Mapping[int, BatchResult], count: int) -> str:
    kinds: dict[str, int] = {}
    for result in results.values():
        if result.kind != "succeeded":
            label = f"errored ({(result.error or {}).get('type', 'error')})" if result.kind == "errored" else result.kind
            kinds[label] = kinds.get(label, 0) + 1
    missing = count - len(results)
    if missing > 0:
        kinds["without a result"] = missing
    shown = ", ".join(f"{n} {label}" for label, n in sorted(kinds.items()))
    return f"{sum(kinds.values())} of its {count} requests came back {shown}" if shown else "its batch gave no result"

