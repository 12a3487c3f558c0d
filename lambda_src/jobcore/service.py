"""The job service: what the API's routes do, over the ports. Submission and the commands (cancel, redeliver,
uploads) are here; the reads are :class:`jobcore.queries.JobQueries`', the catalogue's view
:class:`jobcore.catalogue_view.CatalogueView`, both over the service's settings.

Submitting validates the request, routes it (:mod:`jobcore.routing`), records the job, and then
either runs it inline under a deadline or enqueues it for a worker lane. An inline run that the model
cannot finish in time (timeout, 429, 529) becomes a queued job: the client gets 202, never a 504,
and the job is not lost.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from jobcore import idempotency, uploads
from jobcore.capacity_pacer import Pacer, pacing
from jobcore.catalogue_view import CatalogueView, CostEstimator
from jobcore.context import JobContext
from jobcore.deadline import DeadlineModel
from jobcore.errors import (
    CapacityWaitError,
    ConflictError,
    EnqueueError,
    IdempotencyInProgressError,
    IdempotencyMismatchError,
    InlineBusyError,
    InvalidInputError,
    JobFinishedError,
    ModelUnavailableError,
    StoreUnavailableError,
    SyncUnavailableError,
    UnroutableError,
)
from jobcore.idempotency import IdempotencyRecord
from jobcore.lanes import INLINE
from jobcore.limits import API_GATEWAY_TIMEOUT_S, SYNC_RETRY_AFTER_S
from jobcore.metering import check_submission
from jobcore.model import Job, JobStatus, Mode, transition
from jobcore.ports import InlineSlots, JobQueue, LaneWaker, LanguageModel
from jobcore.queries import JobQueries
from jobcore.requests import SubmitRequest
from jobcore.routing import Decision, RoutingPolicy
from jobcore.runner import JobRunner, Outcome, capacity_wait, error_record
from jobcore.schema_keys import input_key
from jobcore.tasks import RunContext, TaskSpec, lookup
from jobcore.uploads import UploadRequest, UploadStore
from jobcore.views import deliveries_view, jsonable

log = logging.getLogger(__name__)

# Inputs above this many bytes go to the blob store (a DynamoDB item holds at most 400 KB).
INLINE_INPUT_LIMIT = 64 * 1024
DAY_S = 86_400
# Why an S3 intake job is async (its route reason says so): no client waits for it.
INTAKE_ASYNC = "S3 intake: no client waits for an event-triggered job, so mode async"
# A key reserved this long ago whose job was never created belongs to a request that died.
IDEMPOTENCY_STALE_MS = 60_000
IDEMPOTENCY_POLL_S = 0.2


@dataclass(frozen=True)
class Submitted:
    """A submitted job, its output when it just ran inline, and the status code to answer with."""

    job: Job
    output: dict[str, Any] | None
    status_code: int


@dataclass(kw_only=True)
class JobService:
    context: JobContext  # the store, blobs, clock, catalogue, usage and observer, the runner's own (jobcore.context)
    runner: JobRunner  # runs, finishes and re-queues the jobs
    queue: JobQueue
    llm: LanguageModel
    policy: RoutingPolicy
    model_id: str
    new_id: Callable[[], str]
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    job_ttl_days: int = 30
    cost_model: CostEstimator | None = None
    # Plain-http webhook URLs: only for the local runtime, whose receivers listen on 127.0.0.1.
    allow_http_webhooks: bool = False
    # Requests per minute by task, as the operator declares them (the frequency question).
    arrival_rates_per_min: dict[str, float] | None = None
    # Where uploaded inputs are (POST /v1/uploads); None: this service takes no uploads.
    uploads: UploadStore | None = None
    # Asks a worker lane's idle service for a task as soon as a job is queued there (jobcore.wake); None: the
    # lane's backlog alarm alone starts it (the local runtime, tests).
    waker: LaneWaker | None = None
    # This process's admission to the model's shared budget (jobcore.capacity_pacer); None: nothing is paced.
    pacer: Pacer | None = None
    # The router's inline runs in flight across its executions (jobcore.concurrency); None: not counted (tests,
    # the local runtime's default), every inline job runs inline.
    inline_slots: InlineSlots | None = None
    # Monthly budgets in USD by tenant (configuration: tenant_budgets_usd); a tenant not named has none.
    budgets_usd: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.runner.context is not self.context:
            raise ValueError("the service and its runner must share one JobContext")

    # --- its parts: the API's reads (jobcore.queries) and the catalogue's view (jobcore.catalogue_view), over the
    # service's settings as they stand

    @property
    def queries(self) -> JobQueries:
        return JobQueries(context=self.context, monotonic=self.monotonic, sleep=self.sleep, model_id=self.model_id,
                          pacer=self.pacer, budgets_usd=self.budgets_usd)

    @property
    def catalogue_view(self) -> CatalogueView:
        return CatalogueView(catalogue=self.context.catalogue, policy=self.policy, model_id=self.model_id,
                             cost_model=self.cost_model, arrival_rates_per_min=self.arrival_rates_per_min)

    def get(self, job_id: str, *, tenant_id: str) -> Job:
        return self.queries.get(job_id, tenant_id=tenant_id)

    def list_jobs(self, *, tenant_id: str, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None,
                  source: str | None = None) -> dict[str, Any]:
        return self.queries.list_jobs(tenant_id=tenant_id, status=status, limit=limit, cursor=cursor, source=source)

    def wait(self, job_id: str, *, tenant_id: str, wait_s: float) -> Job:
        return self.queries.wait(job_id, tenant_id=tenant_id, wait_s=wait_s)

    def view(self, job: Job) -> dict[str, Any]:
        return self.queries.view(job)

    def submitted_view(self, outcome: Submitted) -> dict[str, Any]:
        return self.queries.submitted_view(outcome.job, outcome.output)

    def deliveries(self, job_id: str, *, tenant_id: str) -> dict[str, Any]:
        return self.queries.deliveries(job_id, tenant_id=tenant_id)

    def usage(self, *, tenant_id: str, params: dict[str, str] | None) -> dict[str, Any]:
        return self.queries.usage(tenant_id=tenant_id, params=params)

    def capacity(self, *, tenant_id: str) -> dict[str, Any]:
        return self.queries.capacity(tenant_id=tenant_id)

    def tasks(self) -> list[dict[str, Any]]:
        return self.catalogue_view.tasks()

    # --- submission and the commands ----------------------------------------------------------------

    def submit(self, request: SubmitRequest, *, tenant_id: str, idempotency_key: str | None = None,
               source: str | None = None) -> Submitted:
        """Validate, route, record and run or queue one job. With an ``idempotency_key``, a request seen
        before (same tenant, key and body) returns the original job instead, with its status code.
        ``source``: the S3 object an event-triggered job came from (:mod:`jobcore.intake`)."""
        task = lookup(request.task, self.context.catalogue)
        intake = source is not None
        if request.input_upload is not None:
            job = self._uploaded_job(request, task, tenant_id=tenant_id, intake=intake)
        else:
            payload = task.validate(request.input)
            expected_s = task.expected_duration_s(payload)
            decision = self._routed(task, expected_s, request, intake=intake)
            job = self._new_job(request, payload, decision, tenant_id=tenant_id, task=task, expected_s=expected_s)
        if source is not None:
            job = replace(job, source=source)
        if idempotency_key is None:
            return self._admitted(job, request, task)
        record = idempotency.new_record(tenant_id=tenant_id, key=idempotency_key, job_id=job.job_id,
                                        body=_fingerprint(request), now_ms=self.context.clock_ms())
        replay = self.reserve(record)
        if replay is not None:
            return replay
        try:
            submitted = self._admitted(job, request, task)
        except StoreUnavailableError as error:
            if error.job_id is None:
                self.context.store.release_key(record.record_id)  # not accepted: a retry may use the key
            else:  # recorded, and will finish: a retry with the key must find it (reserve does, even if this fails)
                try:
                    self.context.store.complete_key(record.record_id, status_code=202)
                except Exception as failure:  # noqa: BLE001 - the client must still learn its job's id
                    log.warning("job %s: its idempotency key was not completed (%s)", error.job_id, failure)
            raise
        except BaseException:
            self.context.store.release_key(record.record_id)  # not accepted: a retry may use the key
            raise
        self.context.store.complete_key(record.record_id, status_code=submitted.status_code)
        return submitted

    def _admitted(self, job: Job, request: SubmitRequest, task: TaskSpec) -> Submitted:
        """Start the job (of ``task``: looked up once per submit); an inline one holds an inline slot while it runs,
        or is queued when none is free."""
        if job.lane != INLINE or self.inline_slots is None:
            return self._start(job, task)
        slot = self.inline_slots.take()
        if slot is None:
            return self._start(self._queued_for_budget(job, request, task), task)
        try:
            return self._start(job, task)
        finally:
            self.inline_slots.give_back(slot)

    def _queued_for_budget(self, job: Job, request: SubmitRequest, task: TaskSpec) -> Job:
        """The inline ``job``, queued on the fallback lane instead: every inline slot is in use."""
        why = "every inline slot of the router is in use (its concurrency budget)"
        if request.mode is Mode.SYNC:
            raise InlineBusyError(f"{why}; mode sync runs inline or not at all, so the job was not recorded: retry in "
                                  f"{SYNC_RETRY_AFTER_S} s, or submit with mode auto to have it queued",
                                  job_id=None, retry_after_s=SYNC_RETRY_AFTER_S)
        lane = self.policy.lanes.fallback.name
        expected_s = task.expected_duration_s(self.runner.load_input(job))
        return replace(job, status=JobStatus.QUEUED, lane=lane, route_reason=Decision(lane, why, earlier=job.route_reason).reason,
                       started_at=None, attempts=0, lease_owner=None, lease_expires_at=None,
                       cost=_estimated(self.catalogue_view.estimate(task, lane, expected_s, model_id=(job.input or {}).get("model"))))

    def _start(self, job: Job, task: TaskSpec) -> Submitted:
        self.check_budget(job)  # after the idempotency check: a retry of an accepted request gets its job
        if job.lane == INLINE:
            outcome = self._run_inline(job, task)
        else:
            self.context.store.create(job)
            self.context.observer.submitted(job)
            outcome = Outcome(self._enqueue(job))
        return Submitted(outcome.job, outcome.output, 200 if outcome.job.status.terminal else 202)

    def _routed(self, task: TaskSpec, expected_s: float, request: SubmitRequest, *, intake: bool) -> Decision:
        """The job's route; an S3 intake job's reason says that nobody waits for it (why it is async)."""
        with self.context.observer.span("job.route", attributes={"job.task": task.name}) as span:
            decision = self.catalogue_view.route(task, expected_s, request, async_because=INTAKE_ASYNC if intake else None)
            if intake and decision.why != INTAKE_ASYNC:
                decision = replace(decision, note=INTAKE_ASYNC)
            span.set_attribute("job.lane", decision.lane)
            span.set_attribute("job.route_reason", decision.reason)
            return decision

    def check_budget(self, job: Job) -> None:
        """Refuse a job whose estimate exceeds its ``max_cost_usd`` or its tenant's budget left this month
        (BudgetExceededError, 402). The month's spend is read only for a tenant that has a budget."""
        estimate = float(((job.cost or {}).get("estimate") or {}).get("total") or 0.0)
        budget = (self.budgets_usd or {}).get(job.tenant_id)
        spent_usd = 0.0 if budget is None else self.queries.month_spent_usd(job.tenant_id)
        check_submission(estimate_usd=estimate, max_cost_usd=job.max_cost_usd, budget_usd=budget, month_spent_usd=spent_usd)

    def reserve(self, mine: IdempotencyRecord) -> Submitted | None:
        """None once ``mine`` holds the key; else the original request's job and status code, waiting
        (up to the inline budget) while that request is still being answered (a key whose holder died
        is taken over). Every idempotent submission goes through here: the API's and the S3 intake's."""
        deadline = self.monotonic() + self.policy.lanes.inline.time_limit_s
        while True:
            held = self.context.store.reserve_key(mine)
            if held is None:
                return None
            if held.body_hash != mine.body_hash:
                raise IdempotencyMismatchError("was used with another request body; use a new key for a new request")
            job = self.context.store.get(held.job_id)
            if held.status_code is not None and job is not None:
                return Submitted(job, None, held.status_code)
            if job is not None and self.context.clock_ms() - held.created_at > IDEMPOTENCY_STALE_MS:
                # Its request recorded the job, then died (or its store failed) before completing the key.
                return Submitted(job, None, 200 if job.status.terminal else 202)
            if job is None and self.context.clock_ms() - held.created_at > IDEMPOTENCY_STALE_MS:
                self.context.store.release_key(held.record_id)  # its request died before creating the job
                continue
            if self.monotonic() >= deadline:
                raise IdempotencyInProgressError("a request with this Idempotency-Key is still being answered; retry shortly")
            self.sleep(IDEMPOTENCY_POLL_S)

    def cancel(self, job_id: str, *, tenant_id: str) -> Job:
        """Cancel a job: a queued one at once (it never runs), a running one is marked ``canceling`` and
        its runner stops it and confirms; a finished one is refused with its state."""
        for _ in range(3):  # a conflicting write means it just changed: look again
            job = self.get(job_id, tenant_id=tenant_id)
            now = self.context.clock_ms()
            try:
                if job.status is JobStatus.QUEUED:
                    return self.runner.finish(job, JobStatus.CANCELED)
                if job.status is JobStatus.RUNNING:
                    return self.runner.save(job, transition(job, JobStatus.CANCELING, now_ms=now))
            except ConflictError:
                continue
            if job.status is JobStatus.CANCELING:
                return job
            raise JobFinishedError(f"job {job_id} already finished: it is {job.status.value}", status=job.status.value)
        raise ConflictError(f"job {job_id} kept changing; try again")








    def redeliver(self, job_id: str, *, tenant_id: str) -> dict[str, Any]:
        """Send the job's terminal event again: a new series of attempts, the same event id and body."""
        job = self.runner.redeliver(self.get(job_id, tenant_id=tenant_id))
        return jsonable(deliveries_view(job), what=f"job {job.job_id}'s deliveries")


    def create_upload(self, request: UploadRequest, *, tenant_id: str) -> dict[str, Any]:
        """``POST /v1/uploads``: a presigned PUT for one input of the tenant's."""
        return uploads.create(self._upload_store(), request, tenant_id=tenant_id, now_ms=self.context.clock_ms())

    # --- internals ------------------------------------------------------------------------------

    def _upload_store(self) -> UploadStore:
        if self.uploads is None:
            raise InvalidInputError("input_upload", "this deployment takes no uploads")
        return self.uploads

    def _uploaded_job(self, request: SubmitRequest, task: TaskSpec, *, tenant_id: str, intake: bool) -> Job:
        """A job whose input is the tenant's upload. A small one is read and validated here, as an input sent
        in the body is; a large one is never read by the router: routed from the task's profile (or the
        client's hints), always queued, with ``input_ref`` at the upload, validated by the worker."""
        key, info = uploads.resolve(self._upload_store(), request.input_upload, tenant_id=tenant_id, task=task.name)
        if info.size <= INLINE_INPUT_LIMIT:
            payload = task.validate(uploads.load(self.context.blobs, key, task=task.name))
            expected_s = task.expected_duration_s(payload)
            decision = self._routed(task, expected_s, request, intake=intake)
            return self._new_job(request, payload, decision, tenant_id=tenant_id, task=task, expected_s=expected_s)
        expected_s = task.profile.expected_duration_s
        decision = self._routed(task, expected_s, request, intake=intake)
        if decision.lane == INLINE:
            if request.mode is Mode.SYNC:
                raise UnroutableError(f"an uploaded input over {INLINE_INPUT_LIMIT // 1024} KB is read and checked by a "
                                      "worker, so it never runs inline: submit it with mode auto or async")
            lane = self.policy.lanes.fallback.name
            decision = Decision(lane, f"uploaded input of {info.size:,} bytes is read by a worker, never inline")
        job = self._new_job(request, {}, decision, tenant_id=tenant_id, task=task, expected_s=expected_s, input_ref=key)
        return job


    def _new_job(
        self, request: SubmitRequest, payload: dict[str, Any], decision: Decision, *, tenant_id: str, task: TaskSpec,
        expected_s: float, input_ref: str | None = None,
    ) -> Job:
        now = self.context.clock_ms()
        job_id = self.new_id()
        inline = decision.lane == INLINE
        job = Job(
            job_id=job_id, tenant_id=tenant_id, task=task.name,
            status=JobStatus.RUNNING if inline else JobStatus.QUEUED,
            lane=decision.lane, route_reason=decision.reason, mode=request.mode,
            created_at=now, updated_at=now, hints=_hints_dict(request), metadata=request.metadata,
            webhook=request.webhook, expires_at=now // 1000 + self.job_ttl_days * DAY_S,
            # Set for an inline job too: should it fall back to the queue, the client's deadline still holds.
            queue_deadline_at=None if request.max_queue_s is None else now + math.ceil(request.max_queue_s * 1000),
            started_at=now if inline else None, attempts=1 if inline else 0,
            # An inline run holds its lease for as long as the router can live (API Gateway's timeout):
            # past it, a job still running had its router die, and the sweeper recovers it.
            **(self.runner.lease(now, ms=(API_GATEWAY_TIMEOUT_S + 1) * 1000) if inline else {}),
            cost=_estimated(self.catalogue_view.estimate(task, decision.lane, expected_s, model_id=payload.get("model"))),
            trace_parent=self.context.observer.traceparent(), max_cost_usd=request.max_cost_usd,
        )
        if input_ref is not None:  # an upload, read by the worker
            return replace(job, input_ref=input_ref)
        if len(json.dumps(payload)) <= INLINE_INPUT_LIMIT:
            return replace(job, input=payload)
        key = input_key(job_id)
        self.context.blobs.put_json(key, payload)
        return replace(job, input_ref=key)

    def _run_inline(self, job: Job, task: TaskSpec) -> Outcome:
        self.context.store.create(job)
        self.context.observer.submitted(job)
        self.context.observer.started(job, now_ms=job.created_at)
        budget_s = self.policy.lanes.inline.time_limit_s
        deadline = self.monotonic() + budget_s
        llm = DeadlineModel(self.llm, deadline=deadline, clock=self.monotonic, sleep=self.sleep)
        ctx = RunContext(llm=llm, model_id=self.model_id)
        # Paced (admission on): an inline call goes ahead of queued work and may use the budget's inline reserve; it
        # waits for a grant only while an answer could still come within the budget.
        with pacing(job.tenant_id, inline=True, max_wait_s=budget_s) as paced:
            try:
                done = self.runner.execute(job, ctx, task=task)
            except ModelUnavailableError as error:
                if job.mode is Mode.SYNC:
                    self._refuse_sync(job, error, waited_ms=paced.waited_ms)
                return Outcome(self._rescue(job, task, error, waited_ms=paced.waited_ms))
            except (ConflictError, EnqueueError):
                raise
            except Exception as error:  # noqa: BLE001 - a store failed (or a bug): the recorded job must still finish
                log.exception("job %s: inline run failed; queueing it", job.job_id)
                return Outcome(self._rescue(job, task, error, waited_ms=paced.waited_ms))
            finally:
                self.runner.drop_attempt(job.job_id)  # what the writes above did not take (a conflict, a failed write)
        return done

    def _refuse_sync(self, job: Job, error: ModelUnavailableError, *, waited_ms: int = 0) -> None:
        """``mode: sync`` and the model could not answer within the inline budget: never a 202 the client did
        not ask for. The job ends failed (its record says why, and how long its calls waited for grants) and the
        client gets 503 with a retry hint."""
        retry_after_s = max(1, math.ceil(error.retry_after_s or SYNC_RETRY_AFTER_S))
        self.runner.fail(job, error, capacity_wait_ms=job.capacity_wait_ms + waited_ms, **self.runner.attempt_charges(job))
        raise SyncUnavailableError(
            f"{error}; mode sync runs inline or not at all, so the job was not queued: retry in {retry_after_s} s, "
            "or submit with mode auto to have it queued when the model is busy", job_id=job.job_id,
            retry_after_s=retry_after_s) from error

    def _rescue(self, job: Job, task: TaskSpec, error: Exception, *, waited_ms: int = 0) -> Job:
        """Queue a recorded inline job whose run could not finish; if even that fails (the store is down),
        503 with its id: its inline lease runs out and the sweeper queues it (jobcore.sweeper). ``waited_ms``: how
        long its calls waited for grants, for its record."""
        try:
            if not isinstance(error, ModelUnavailableError):
                current = self.context.store.get(job.job_id)  # a write that failed may have landed all the same
                if current is not None and current.version != job.version:
                    return current
            return self._fall_back(job, task, error, waited_ms=waited_ms)
        except Exception as failure:  # noqa: BLE001 - the client is told the job's id, and the sweeper recovers it
            if isinstance(failure, StoreUnavailableError) and failure.job_id is not None:
                raise  # queued, but neither its queue nor the store could be reached: _enqueue says so
            log.warning("job %s: could not queue it after its inline run failed (%s); the sweeper will", job.job_id, failure)
            raise StoreUnavailableError(
                f"job {job.job_id} was accepted but could not be run now; it is queued again automatically within "
                f"minutes: poll it rather than submitting it again", job_id=job.job_id) from failure

    def _fall_back(self, job: Job, task: TaskSpec, error: Exception, *, waited_ms: int = 0) -> Job:
        log.info("job %s: inline run gave up (%s); queueing it", job.job_id, error)
        lane = self.policy.lanes.fallback.name
        record = error_record(error)
        reason = Decision(lane, f"inline fallback, {record['message']}", earlier=job.route_reason).reason
        estimate = self.catalogue_view.estimate(task, lane, task.expected_duration_s(self.runner.load_input(job)))
        charged = self.runner.attempt_charges(job)  # what the inline attempt spent stays on the job, queued or not
        now = self.context.clock_ms()
        if job.queue_deadline_at is not None and now > job.queue_deadline_at:
            # The client would not have it start later than this: it expires rather than waiting in the queue.
            waited_s = (job.queue_deadline_at - job.created_at) / 1000
            return self.runner.finish(job, JobStatus.EXPIRED, **charged, error={"type": "expired", "message": (
                f"not run within max_queue_s ({waited_s:g} s): its inline attempt could not finish "
                f"({record['message']}), and the deadline had passed when it would have been queued")})
        # A model that is down: the queued job waits as a worker's would (the runner's back-off, with the
        # model's Retry-After as its floor), and its view says so.
        wait = None
        capacity_wait_ms = job.capacity_wait_ms + waited_ms
        if isinstance(error, CapacityWaitError) and error.dimension is not None:
            wait = capacity_wait(job, error, now_ms=now)  # queued until the budget's next grant is expected
            capacity_wait_ms += wait[0] * 1000  # that delay is a wait for capacity too, as a worker counts it
        elif isinstance(error, ModelUnavailableError) and (error.model_down or isinstance(error, CapacityWaitError)):
            wait = self.runner.model_wait(job, error, now_ms=now)
        # Its estimate is the fallback lane's now; its actual cost so far (the inline attempt's) is kept.
        actual = {"actual": charged["cost"]["actual"]} if "actual" in charged.get("cost", {}) else {}
        queued = self.runner.save(job, transition(
            job, JobStatus.QUEUED, now_ms=now, lane=lane, route_reason=reason, error=record, cost={**_estimated(estimate), **actual},
            capacity_wait_ms=capacity_wait_ms, **({"model_wait": wait[1]} if wait else {}),
            **({"usage": charged["usage"]} if "usage" in charged else {}),
        ))
        if wait:
            self.context.observer.capacity_wait(queued)
        return self._enqueue(queued, delay_s=wait[0] if wait else 0)

    def _enqueue(self, job: Job, *, delay_s: int = 0) -> Job:
        try:
            self.queue.enqueue(job, delay_s=delay_s)
        except EnqueueError as error:
            # The job is recorded, so it is accepted (202 with it), never a 503 saying nothing was accepted
            # beside a job that exists: it stays queued, marked, and the sweeper sends it within minutes.
            try:
                return self.runner.unsent(job, error)
            except Exception as failure:  # noqa: BLE001 - the store failed too: the client must learn the job's id
                raise StoreUnavailableError(
                    f"job {job.job_id} was recorded but neither its queue nor the job store could be reached to queue "
                    "it; it expires if nothing sends it: poll it, or cancel it and submit again", job_id=job.job_id,
                ) from failure
        if self.waker is not None and delay_s == 0:  # a delayed job (the model is down) is in no hurry
            self.waker.wake(job.lane)
        return job




def _estimated(estimate: dict[str, Any] | None) -> dict[str, Any]:
    return {} if estimate is None else {"estimate": estimate}


def _hints_dict(request: SubmitRequest) -> dict[str, Any]:
    hints = {"expected_duration_s": request.hints.expected_duration_s, "memory_mb": request.hints.memory_mb}
    return {k: v for k, v in hints.items() if v is not None}


def _fingerprint(request: SubmitRequest) -> dict[str, Any]:
    """What makes two submits the same request: every field the client sent."""
    return json.loads(json.dumps(asdict(request), default=str))






