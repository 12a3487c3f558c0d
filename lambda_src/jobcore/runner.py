"""Running a job: claim it, run its task, store the result, record the outcome.

Shared by the inline path (router) and the worker. Every state change is a conditional write
(:func:`jobcore.model.transition` + ``JobStore.save(expected_version=...)``), so a duplicate or
redelivered message can neither run a finished job again nor write a second result.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import random
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from jobcore import uploads, webhooks
from jobcore.capacity_pacer import Pacing, current_pacing, pacing
from jobcore.context import JobContext
from jobcore.costing import with_attempt
from jobcore.deliveries import redeliver as new_series
from jobcore.errors import (
    BlobNotFoundError,
    CapacityWaitError,
    ConflictError,
    EnqueueError,
    InvalidInputError,
    JobCanceledError,
    JobError,
    ModelError,
    ModelUnavailableError,
    NoDeliveryError,
    TaskTimeoutError,
)
from jobcore.lanes import Lanes
from jobcore.limits import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    LEASE_S,
    MODEL_WAIT_LIMIT_S,
    RESULT_IN_ITEM_BYTES,
    SQS_MAX_DELAY_S,
    SQS_MAX_VISIBILITY_S,
)
from jobcore.metering import MeteredModel
from jobcore.model import ACTIVE, Job, JobStatus, ModelWait, Usage, bounded_error, transition
from jobcore.ports import BlobStore, DeliveryQueue, JobStore, Observer, UsageStore
from jobcore.schema_keys import file_key, partial_key, result_key
from jobcore.tasks import OutputFile, RunContext, TaskResult, TaskSpec, lookup, run_task
from jobcore.tasks.base import IncompleteCallsError, ModelCallsExecutor, load_executor, usage_of
from jobcore.usage import entry_for
from jobcore.views import iso

log = logging.getLogger(__name__)
# A message for a job waiting for the model that arrives this much before the job's next attempt is a stray copy.
MODEL_WAIT_EARLY_MS = 5_000
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Backoff:
    """Seconds before attempt ``n + 1`` after ``n`` failed: ``base_s`` doubled per attempt, capped, with
    equal jitter (half the delay fixed, half drawn from ``rng``, so jobs that failed together do not all
    come back together).

    A ``retry_after_s`` the failure carries (a 429's Retry-After) is a floor, never a replacement: the
    delay is the larger of the two (capped too). A model that asks for one second while it rate-limits
    for a minute must not make every job spend its attempts within seconds.
    """

    base_s: float = BACKOFF_BASE_S
    cap_s: float = BACKOFF_CAP_S
    jitter: bool = True
    rng: Callable[[], float] = field(default=random.random, repr=False, compare=False)  # uniform in [0, 1)

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s <= SQS_MAX_VISIBILITY_S:
            raise ValueError(f"{self!r}: need 0 < base_s <= cap_s <= {SQS_MAX_VISIBILITY_S} (SQS visibility)")

    def delay_s(self, failed_attempts: int, *, retry_after_s: float | None = None) -> int:
        computed = min(self.base_s * 2 ** max(0, failed_attempts - 1), self.cap_s)
        if self.jitter:
            computed = computed / 2 + self.rng() * computed / 2
        floor = min(retry_after_s or 0, self.cap_s)
        return max(1, math.ceil(max(computed, floor)))


@dataclass(frozen=True)
class Outcome:
    """A job as it now stands, with the task's output when it has just run and succeeded."""

    job: Job
    output: dict[str, Any] | None = None


@dataclass(frozen=True)
class Disposition:
    """What the worker does with the message: delete it, or make it visible again after a delay."""

    delete: bool
    job: Job | None = None
    retry_in_s: int = 0
    note: str = ""
    # Instead of making this message visible again: send the job as a new message delayed by ``retry_in_s``
    # (at most SQS's 900 s), then delete this one, so that waiting for the model spends none of the
    # job's receives (their count starts again with the new message). If the send fails, the message is
    # made visible again after ``retry_in_s`` as for any retry.
    requeue: bool = False

    @classmethod
    def settled(cls, job: Job | None = None, *, note: str = "") -> Disposition:
        """Delete the message: its job is settled (or there is nothing to run)."""
        return cls(True, job, note=note)

    @classmethod
    def retry(cls, job: Job, *, in_s: int, note: str = "") -> Disposition:
        """Make the message visible again in ``in_s`` seconds (a receive spent)."""
        return cls(False, job, retry_in_s=in_s, note=note)

    @classmethod
    def requeued(cls, job: Job, *, in_s: int, note: str = "") -> Disposition:
        """Send the job again as a new message delayed by ``in_s`` seconds, then delete this one."""
        return cls(False, job, retry_in_s=in_s, note=note, requeue=True)


class CostModel(Protocol):
    """What the runner needs of :class:`jobcore.costing.CostModel` (None: no cost recorded)."""

    def actual(self, *, lane: str, model_id: str, usage: Usage, duration_s: float) -> dict[str, Any]: ...


@dataclass(kw_only=True)
class JobRunner:
    context: JobContext  # the store, blobs, clock, lanes, catalogue, usage and observer, shared (jobcore.context)
    deliveries: DeliveryQueue
    cost_model: CostModel | None = None
    backoff: Backoff = Backoff()
    owner: str = "runner"  # this process, as a lease owner (the wiring makes it unique)
    lease_ms: int = LEASE_S * 1000  # a claim lasts this long unless its heartbeat renews it
    result_retention_days: int | None = None  # the bucket's lifecycle, for result_expires_at
    model_wait_limit_s: float = MODEL_WAIT_LIMIT_S  # how long a job may wait for an unavailable model, in all
    # The meters of the runs that raised: the write that ends their attempt (a retry, a wait, a fallback) records their
    # spend (attempt_charges). By job id: a runner runs one attempt of a job at a time.
    _unsettled: dict[str, MeteredModel] = field(default_factory=dict, repr=False)

    # The context's parts, read as the runner's own.
    @property
    def store(self) -> JobStore:
        return self.context.store

    @property
    def blobs(self) -> BlobStore:
        return self.context.blobs

    @property
    def clock_ms(self) -> Callable[[], int]:
        return self.context.clock_ms

    @property
    def lanes(self) -> Lanes:
        return self.context.lanes

    @property
    def catalogue(self) -> dict[str, TaskSpec]:
        return self.context.catalogue

    @property
    def usage(self) -> UsageStore | None:
        return self.context.usage

    @property
    def observer(self) -> Observer:
        return self.context.observer

    # --- the worker's entry point ------------------------------------------------------------

    def process(self, job_id: str, *, ctx: RunContext, receive_count: int, max_receives: int) -> Disposition:
        now = self.clock_ms()
        # The common case, a queued job that may run now, is claimed in one conditional write without reading
        # it first; any other job comes back as it stands, unwritten, and is looked at here.
        job, claimed = self.store.claim(job_id, owner=self.owner, now_ms=now, lease_expires_at=now + self.lease_ms)
        if not claimed or job is None:
            looked_at = self._claim_after_look(job_id, job, now, receive_count=receive_count, max_receives=max_receives)
            if isinstance(looked_at, Disposition):
                return looked_at
            job = looked_at
        self.observer.started(job, now_ms=now)
        # Its model calls are paced as its tenant's, queued (jobcore.capacity_pacer), however the model is wrapped.
        with pacing(job.tenant_id, inline=False) as paced:
            try:
                return self._run_claimed(job, ctx, paced, receive_count=receive_count, max_receives=max_receives)
            finally:
                self.drop_attempt(job.job_id)

    def _run_claimed(self, job: Job, ctx: RunContext, paced: Pacing, *, receive_count: int, max_receives: int) -> Disposition:
        try:
            return Disposition.settled(self.execute(job, ctx, timeout_s=self.time_limit_s(job)).job)
        except ConflictError as error:
            return Disposition.settled(job, note=f"changed while running ({error}); its new state stands")
        except Exception as error:  # noqa: BLE001 - every failure is retried or recorded, never lost
            try:
                if isinstance(error, CapacityWaitError) and error.dimension is not None:
                    return self._wait_for_capacity(job, error, waited_ms=paced.waited_ms)
                return self._retry_or_fail(job, error, receive_count=receive_count, max_receives=max_receives)
            except ConflictError:  # changed under the run: a cancel is confirmed, anything else stands
                current = self.store.get(job.job_id)
                if current is not None and current.status is JobStatus.CANCELING:
                    return Disposition.settled(self._finish(current, JobStatus.CANCELED, **self.attempt_charges(current)))
                return Disposition.settled(current, note="changed while running; its new state stands")

    def _claim_after_look(self, job_id: str, job: Job | None, now: int, *, receive_count: int,
                          max_receives: int) -> Job | Disposition:
        """A job the one-write claim refused: what to do with its message, or the job claimed after all."""
        if job is None:
            return Disposition.settled(note=f"job {job_id} does not exist")
        if job.status.terminal:
            return Disposition.settled(job, note=f"already {job.status.value}")
        held_until = job.lease_expires_at or 0
        if job.status in ACTIVE and held_until > now and job.lease_owner != self.owner:
            # Another runner holds a live lease (a duplicate message, or a visibility timeout that
            # lapsed): never run it twice at once; see it again once that lease could have ended.
            wait_s = math.ceil((held_until - now) / 1000) + 1
            return Disposition.retry(job, in_s=wait_s, note=f"held by {job.lease_owner} for {wait_s} s more")
        if job.status is JobStatus.CANCELING:
            return Disposition.settled(self.finish(job, JobStatus.CANCELED), note="its runner stopped while it was canceled")
        if job.status is JobStatus.QUEUED and job.queue_deadline_at is not None and now > job.queue_deadline_at:
            return Disposition.settled(self.finish(job, JobStatus.EXPIRED, error=expired_error(job)))
        waiting_until = job.model_wait.next_attempt_at if job.status is JobStatus.QUEUED and job.model_wait else None
        if waiting_until is not None and now < waiting_until - MODEL_WAIT_EARLY_MS:
            # The job waits for the model and was re-queued as a new message delayed until then: this one is
            # a stray copy (the delete of the old message failed, or SQS delivered it twice). The delayed
            # message brings the job back; this one must not spend receives until the DLQ takes it.
            return Disposition.settled(job, note=f"a stray message: the job waits for the model until {iso(waiting_until)}")
        if job.status is JobStatus.RUNNING and receive_count >= max_receives:
            # Still RUNNING on a redelivery, its lease run out: the worker running it died (OOM, crash)
            # without recording anything. This receive is the last before the DLQ; spend it recording
            # the failure, so the job never stays "running" behind a message nobody will process.
            crashed = JobError(f"the worker died while running it, {receive_count - 1} times")
            return Disposition.settled(self.fail(job, crashed))
        try:
            return self.save(job, transition(job, JobStatus.RUNNING, now_ms=now, **self.lease(now)))
        except ConflictError as error:
            # Another runner claimed it first; see it again later, by when it will have finished.
            return Disposition.retry(job, in_s=self.backoff.delay_s(1), note=str(error))

    def lease(self, now_ms: int, *, ms: int | None = None) -> dict[str, Any]:
        """The fields of a fresh claim by this runner."""
        return {"lease_owner": self.owner, "lease_expires_at": now_ms + (self.lease_ms if ms is None else ms)}

    # --- shared with the inline path ----------------------------------------------------------

    def execute(self, job: Job, ctx: RunContext, *, timeout_s: float | None = None, task: TaskSpec | None = None) -> Outcome:
        """Run a RUNNING job to a terminal state. Retryable errors propagate to the caller. ``task``: the job's task,
        when the caller has looked it up already."""
        with self.observer.span("job.run", attributes={"job.id": job.job_id, "job.task": job.task, "job.lane": job.lane,
                                                       "job.attempt": job.attempts}) as span:
            outcome = self._execute(job, ctx, timeout_s, task or self._task(job))
            span.set_attribute("job.status", outcome.job.status.value)
            return outcome

    def _execute(self, job: Job, ctx: RunContext, timeout_s: float | None, task: TaskSpec) -> Outcome:
        try:
            payload = self.load_input(job)
        except InvalidInputError as error:  # an uploaded input, validated here rather than by the router
            return Outcome(self.fail(job, error))
        model_id = payload.get("model") or ctx.model_id
        meter = self.meter(job, ctx, model_id=model_id)
        try:
            return self._metered_run(job, ctx, task, payload, meter, timeout_s)
        except Exception:
            self._unsettled[job.job_id] = meter  # for the write that ends this attempt (attempt_charges)
            raise

    def _metered_run(self, job: Job, ctx: RunContext, task: TaskSpec, payload: dict[str, Any], meter: MeteredModel,
                     timeout_s: float | None) -> Outcome:
        known = self._answers_kept(job, task)
        try:
            try:
                result = _run(task, payload, replace(ctx, llm=meter), timeout_s, known)
            except IncompleteCallsError as incomplete:
                self._keep_answers(job, incomplete.responses)
                raise incomplete.error from None
        except ModelError as error:
            if error.retryable:
                raise
            return Outcome(self.fail(job, error, **self.charges(job, meter.usage, model_id=meter.model_id)))
        except TaskTimeoutError as error:
            return Outcome(self.finish(job, JobStatus.TIMED_OUT, error=error_record(error),
                                       **self.charges(job, meter.usage, model_id=meter.model_id)))
        except JobCanceledError:
            return Outcome(self._canceled(job, **self.charges(job, meter.usage, model_id=meter.model_id)))
        except JobError as error:
            if isinstance(error, ConflictError):
                raise
            return Outcome(self.fail(job, error, **self.charges(job, meter.usage, model_id=meter.model_id)))
        paced = current_pacing()  # set by whoever runs the job: the worker's process, or the inline path
        # This attempt's tokens are the meter's: an answer kept from an earlier attempt was counted by that attempt.
        return Outcome(self.succeed(job, replace(result, usage=meter.usage), model_id=meter.model_id or "",
                                    waited_ms=paced.waited_ms if paced else 0), result.output)

    def _answers_kept(self, job: Job, task: TaskSpec) -> dict[str, dict[str, Any]]:
        """The answers an earlier run of this job kept (its calls that were answered before others were refused);
        none to look for on a first run, nor for a task that makes its calls itself (only a ModelCallsExecutor's
        calls are kept)."""
        if job.attempts <= 1 and job.model_wait is None:
            return {}
        if not isinstance(load_executor(task.executor), ModelCallsExecutor):
            return {}
        try:
            kept = self.blobs.get_json(partial_key(job.job_id))
        except BlobNotFoundError:
            return {}
        except Exception as error:  # noqa: BLE001 - without them the calls are made again: dearer, not wrong
            log.warning("job %s: the answers kept from its last run could not be read (%s)", job.job_id, error)
            return {}
        return kept if isinstance(kept, dict) else {}

    def _keep_answers(self, job: Job, responses: dict[str, dict[str, Any]]) -> None:
        try:
            self.blobs.put_json(partial_key(job.job_id), responses)
        except Exception as error:  # noqa: BLE001 - the retry makes those calls again: dearer, not wrong
            log.warning("job %s: the answers of its last run could not be kept (%s)", job.job_id, error)

    def meter(self, job: Job, ctx: RunContext, *, model_id: str) -> MeteredModel:
        """The run's model, metered, and capped at the job's ``max_cost_usd`` (priced by the cost model's Claude part)."""
        def price(model: str | None, usage: Usage) -> float:
            if self.cost_model is None:
                return 0.0
            return float(self.cost_model.actual(lane=job.lane, model_id=model or model_id, usage=usage,
                                                duration_s=0)["breakdown"]["claude"])

        cap = job.max_cost_usd if self.cost_model is not None else None
        earlier = (job.cost.get("actual") or {}).get("breakdown") or {}
        return MeteredModel(ctx.llm, price=price, usage_of=usage_of, model_id=model_id, cap_usd=cap,
                            spent_before_usd=float(earlier.get("claude") or 0.0))

    def charges(self, job: Job, used: Usage, *, model_id: str | None) -> dict[str, Any]:
        """The job's ``usage`` and ``cost`` once the attempt it is running (since ``started_at``) ends having used
        ``used``: every write that ends an attempt records them, whatever its outcome, so the job's record, its
        tenant's usage and its ``max_cost_usd`` count all its attempts. An attempt that made no model call and whose
        run time is not priced (no cost model) adds nothing."""
        cost = dict(job.cost)
        if self.cost_model is not None:
            now = self.clock_ms()
            duration_s = (now - (job.started_at if job.started_at is not None else now)) / 1000
            attempt = self.cost_model.actual(lane=job.lane, model_id=model_id or "", usage=used, duration_s=duration_s)
            cost["actual"] = with_attempt(job.cost.get("actual"), attempt)
        elif not used.model_calls:
            return {}
        return {"usage": job.usage + used, "cost": cost}

    def attempt_charges(self, job: Job) -> dict[str, Any]:
        """:meth:`charges` of the attempt of ``job`` whose run raised (execute), for the write that ends it; nothing
        for a job this runner did not run."""
        meter = self._unsettled.pop(job.job_id, None)
        if meter is None:
            return {}
        return self.charges(job, meter.usage, model_id=meter.model_id)

    def drop_attempt(self, job_id: str) -> None:
        """Forget the spend of a run whose job changed under it (nothing more of it is written)."""
        self._unsettled.pop(job_id, None)

    def load_input(self, job: Job) -> dict[str, Any]:
        if job.input_ref is not None and uploads.is_upload_key(job.input_ref):
            return self._task(job).validate(uploads.load(self.blobs, job.input_ref, task=job.task))
        if job.input_ref is not None:
            return self.blobs.get_json(job.input_ref)
        return job.input or {}

    def succeed(self, job: Job, result: TaskResult, *, model_id: str, waited_ms: int = 0) -> Job:
        """Record the job succeeded with ``result``: a small output in the job item itself (the finishing write is
        then the only call), a larger one in S3 (see :func:`keeps_in_item`); its files always in S3. ``waited_ms``:
        how long this run's calls waited for grants from the model's budget."""
        files = {name: self._store_file(job, name, file) for name, file in result.files.items()}
        now = self.clock_ms()
        expires = now + self.result_retention_days * 86_400_000 if self.result_retention_days else None
        text = json.dumps(result.output, separators=(",", ":"))  # what S3 would store: ASCII, one byte a character
        if keeps_in_item(job, size=len(text), result_expires_at=expires):
            stored: dict[str, Any] = {"result_json": text, "result_bytes": len(text)}
        else:
            key = result_key(job.job_id)
            stored = {"result_ref": key, "result_bytes": self.blobs.put_json(key, result.output)}
        charged = self.charges(job, result.usage, model_id=model_id)
        return self.finish(job, JobStatus.SUCCEEDED, **stored, **charged, result_expires_at=expires, files=files,
                           capacity_wait_ms=job.capacity_wait_ms + waited_ms)

    def _store_file(self, job: Job, name: str, file: OutputFile) -> dict[str, Any]:
        if not _FILE_NAME.fullmatch(name):
            raise ValueError(f"task {job.task} produced a file named {name!r}; names are letters, digits, '.', '_', '-'")
        key = file_key(job.job_id, name)
        return {"key": key, "bytes": self.blobs.put_bytes(key, file.data, content_type=file.content_type),
                "content_type": file.content_type}

    def fail(self, job: Job, error: Exception, **changes: Any) -> Job:
        return self.finish(job, JobStatus.FAILED, error=error_record(error), **changes)

    def finish(self, job: Job, status: JobStatus, **changes: Any) -> Job:
        """Record a terminal state; a webhook that wants it gets its outbox entry in the same write.

        The hand-over to the dispatcher afterwards only makes the first attempt prompt: if it fails, or
        this process dies before it, the dispatcher's sweep finds the pending delivery all the same.
        A job canceled while it ran ends ``canceled``, whatever its run came to.
        """
        try:
            return self._finish(job, status, **changes)
        except ConflictError:
            current = self.store.get(job.job_id)
            if current is None or current.status is not JobStatus.CANCELING:
                raise
            return self._finish(current, JobStatus.CANCELED, **{k: v for k, v in changes.items() if k in ("usage", "cost")})

    def _canceled(self, job: Job, **charged: Any) -> Job:
        """The run stopped because the job is being canceled: confirm it (with what the run spent, ``charged``)."""
        current = self.store.get(job.job_id) or job
        if current.status is JobStatus.CANCELING:
            return self._finish(current, JobStatus.CANCELED, **charged)
        return current

    def _finish(self, job: Job, status: JobStatus, **changes: Any) -> Job:
        now = self.clock_ms()
        done = transition(job, status, now_ms=now, **changes)
        if webhooks.wants(done):
            done = replace(done, delivery=webhooks.open_for(done, now_ms=now))
        # The terminal write adds the job to its tenant's usage in the same write: a job is counted exactly once, by
        # the writer whose conditional write won, and a process that dies cannot leave it written but uncounted.
        self.store.save(done, expected_version=job.version, usage=entry_for(done) if self.usage is not None else None)
        self.observer.finished(done)
        if done.delivery is not None:
            self._hand_over(done, now)
        return done

    def _hand_over(self, job: Job, due_at: int) -> None:
        try:
            self.deliveries.schedule(job.job_id, due_at=due_at)
        except Exception as error:  # noqa: BLE001 - the sweep delivers it; the job's outcome stands
            log.warning("job %s: webhook hand-over failed (%s); the dispatcher's sweep will deliver it", job.job_id, error)

    def redeliver(self, job: Job) -> Job:
        """A new series of webhook attempts of a finished job's event (same id, same body), handed over."""
        if job.delivery is None:
            why = "it has no webhook" if job.webhook is None else (
                f"it is {job.status.value}; its webhook is sent when it finishes" if not job.status.terminal
                else f"its webhook did not ask for {webhooks.event_type(job)}")
            raise NoDeliveryError(f"job {job.job_id} has no webhook delivery to repeat: {why}")
        now = self.clock_ms()
        renewed = replace(job, delivery=new_series(job.delivery, now_ms=now), version=job.version + 1)
        self.save(job, renewed)
        self._hand_over(renewed, now)
        return renewed

    def unsent(self, job: Job, error: EnqueueError) -> Job:
        """A queued job whose lane's queue refused its message: it stays queued (it was accepted), marked
        ``unsent_since`` so that the sweeper sends it (:mod:`jobcore.sweeper`). ``job``: as last saved."""
        log.warning("job %s: the %s queue refused its message (%s); the sweeper sends it", job.job_id, job.lane, error)
        now = self.clock_ms()
        return self.save(job, replace(job, unsent_since=now, updated_at=now, version=job.version + 1))

    def save(self, old: Job, new: Job) -> Job:
        self.store.save(new, expected_version=old.version)
        return new

    # --- internals ------------------------------------------------------------------------------

    def time_limit_s(self, job: Job) -> float:
        """The longest this job may run: its task's limit, or its lane's where that is shorter."""
        return min(self._task(job).profile.timeout_s, self.lanes.get(job.lane).time_limit_s)

    def _task(self, job: Job) -> TaskSpec:
        return lookup(job.task, self.catalogue)

    def _retry_or_fail(self, job: Job, error: Exception, *, receive_count: int, max_receives: int) -> Disposition:
        if isinstance(error, ModelUnavailableError) and (error.model_down or isinstance(error, CapacityWaitError)):
            # A budget blocked by a 429's Retry-After is the model rate-limiting: that wait counts toward the limit.
            return self._wait_for_model(job, error)
        retryable = getattr(error, "retryable", not isinstance(error, JobError))
        if not retryable or receive_count >= max_receives:
            public = error_record(error)["message"]
            why = f"gave up after {receive_count} attempts: {public}" if retryable else public
            log.warning("job %s failed: %s (%s)", job.job_id, why, error)
            return Disposition.settled(self.fail(job, _Reason(error, why), **self.attempt_charges(job)))
        if not isinstance(error, JobError):
            log.exception("job %s attempt %d crashed; will retry", job.job_id, receive_count, exc_info=error)
        delay = self.backoff.delay_s(receive_count, retry_after_s=getattr(error, "retry_after_s", None))
        queued = self.save(job, transition(job, JobStatus.QUEUED, now_ms=self.clock_ms(), error=error_record(error),
                                           **self.attempt_charges(job)))
        return Disposition.retry(queued, in_s=delay, note=f"retrying in {delay} s ({self.backoff!r}): {error}")

    def _wait_for_model(self, job: Job, error: ModelUnavailableError) -> Disposition:
        """Queue the job again to wait for the model (a new, delayed message: no receive spent), or fail it
        once it has waited ``model_wait_limit_s`` in all."""
        now = self.clock_ms()
        wait = self.model_wait(job, error, now_ms=now)
        if wait is None:
            since = job.model_wait.since if job.model_wait else now
            why = (f"the model stayed unavailable ({error.describe()}): gave up after waiting {_duration(now - since)} "
                   f"(the limit is {_duration(self.model_wait_limit_s * 1000)}) over {job.attempts} attempts")
            log.warning("job %s failed: %s", job.job_id, why)
            return Disposition.settled(self.fail(job, _Reason(error, why), **self.attempt_charges(job)))
        delay_s, waiting = wait
        queued = self.save(job, transition(job, JobStatus.QUEUED, now_ms=now, error=error_record(error), model_wait=waiting,
                                           **self.attempt_charges(job)))
        self.observer.capacity_wait(queued)
        return Disposition.requeued(queued, in_s=delay_s,
                           note=f"waiting for the model ({error.describe()}): next attempt in {delay_s} s, wait {waiting.waits} "
                                f"since {iso(waiting.since)} ({self.backoff!r})")

    def _wait_for_capacity(self, job: Job, error: CapacityWaitError, *, waited_ms: int) -> Disposition:
        """Queue the job again until the budget's next grant is expected (a new, delayed message): waiting is not
        failing, so neither a receive nor an attempt is spent, nothing is recorded as an error, and the time does
        not count toward ``model_wait_limit_s``."""
        now = self.clock_ms()
        delay_s, waiting = capacity_wait(job, error, now_ms=now)
        queued = self.save(job, transition(job, JobStatus.QUEUED, now_ms=now, attempts=job.attempts - 1, model_wait=waiting,
                                           capacity_wait_ms=job.capacity_wait_ms + waited_ms + delay_s * 1000,
                                           **self.attempt_charges(job)))
        self.observer.capacity_wait(queued)
        return Disposition.requeued(queued, in_s=delay_s,
                           note=f"waiting for {error.describe()}: next grant expected in {delay_s} s")

    def model_wait(self, job: Job, error: ModelUnavailableError, *, now_ms: int) -> tuple[int, ModelWait] | None:
        """How long ``job`` waits before its next attempt after the model failed with ``error``, and its wait
        record; None once it has waited ``model_wait_limit_s`` since its first such failure. The back-off
        counts the job's waits (its receives start again with each new message), Retry-After is a floor,
        and the last wait ends at the limit, so the job gets a last attempt then."""
        since = job.model_wait.since if job.model_wait else now_ms
        excluded = job.model_wait.excluded_ms if job.model_wait else 0
        limit_at = since + excluded + int(self.model_wait_limit_s * 1000)
        if now_ms >= limit_at:
            return None
        waits = (job.model_wait.waits if job.model_wait else 0) + 1
        delay_s = min(self.backoff.delay_s(waits, retry_after_s=error.retry_after_s), SQS_MAX_DELAY_S,
                      math.ceil((limit_at - now_ms) / 1000))
        return delay_s, ModelWait(since=since, waits=waits, reason=error.describe(), next_attempt_at=now_ms + delay_s * 1000,
                                  excluded_ms=excluded)


class _Reason(Exception):
    """An error re-worded for the job record, keeping the original's type."""

    def __init__(self, original: Exception, message: str):
        super().__init__(message)
        self.type = getattr(original, "type", "internal_error")


def capacity_wait(job: Job, error: CapacityWaitError, *, now_ms: int) -> tuple[int, ModelWait]:
    """The delay until the budget's next grant is expected (at least a second, at most SQS's longest delay) and the
    job's wait record: the time is excluded from the model-wait limit."""
    delay_s = min(max(1, math.ceil((error.expected_at_ms - now_ms) / 1000)), SQS_MAX_DELAY_S)
    prior = job.model_wait
    return delay_s, ModelWait(since=prior.since if prior else now_ms, waits=(prior.waits if prior else 0) + 1,
                              reason=error.describe(), next_attempt_at=now_ms + delay_s * 1000, capacity=True,
                              excluded_ms=(prior.excluded_ms if prior else 0) + delay_s * 1000)


def keeps_in_item(job: Job, *, size: int, result_expires_at: int | None) -> bool:
    """Whether a result of ``size`` bytes is kept in the job item rather than in S3: when it is small
    (RESULT_IN_ITEM_BYTES) and the item itself is gone (its TTL, ``expires_at``) no later than the result's
    retention ends, so that a result in the item is never kept longer than one in S3 would be."""
    if size > RESULT_IN_ITEM_BYTES:
        return False
    if result_expires_at is None:
        return True
    return job.expires_at is not None and job.expires_at * 1000 <= result_expires_at


def expired_error(job: Job) -> dict[str, str]:
    waited_s = ((job.queue_deadline_at or 0) - job.created_at) / 1000
    if job.attempts:
        return {"type": "expired", "message": f"not finished within max_queue_s ({waited_s:g} s): it was still queued, "
                                              f"to be retried, after {job.attempts} attempts"}
    return {"type": "expired", "message": f"not started within max_queue_s ({waited_s:g} s); it never ran"}


def error_record(error: Exception) -> dict[str, str]:
    """What the job records (and its tenant sees) of ``error``: our errors' own messages; for anything else
    (a bug, a library's exception, whose text may name our infrastructure) a message of ours; the
    original is in the logs."""
    if isinstance(error, (JobError, _Reason)):
        return bounded_error({"type": getattr(error, "type", "internal_error"), "message": str(error) or type(error).__name__})
    return {"type": "internal_error", "message": "an internal error stopped the run (its details are in the service's logs)"}


def _duration(ms: float) -> str:
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _run(task: TaskSpec, payload: dict[str, Any], ctx: RunContext, timeout_s: float | None,
         known: dict[str, dict[str, Any]]) -> TaskResult:
    if timeout_s is None:
        return run_task(task, payload, ctx, known)
    # A thread cannot be killed: past the limit the job is recorded as timed out and whatever the
    # thread returns later is dropped (nothing writes it).
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"task-{task.name}")
    try:
        # The caller's context (its current span) goes with the run into the pool's thread.
        return pool.submit(contextvars.copy_context().run, run_task, task, payload, ctx, known).result(timeout=timeout_s)
    except FutureTimeout:
        raise TaskTimeoutError(f"ran past the task's limit of {timeout_s:g} s") from None
    finally:
        pool.shutdown(wait=False)
