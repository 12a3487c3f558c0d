"""The job service: what ``POST /v1/jobs`` and ``GET /v1/jobs/{id}`` do, over the ports.

Submitting validates the request, routes it (:mod:`jobcore.routing`), records the job, and then
either runs it inline under a deadline or enqueues it for a worker lane. An inline run that the model
cannot finish in time (timeout, 429, 529) becomes a queued job: the client gets 202, never a 504,
and the job is not lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from jobcore.deadline import DeadlineModel
from jobcore.errors import EnqueueError, JobNotFoundError, ModelUnavailableError, UnroutableError
from jobcore.lanes import INLINE
from jobcore.model import Job, JobStatus, Mode, transition
from jobcore.ports import BlobStore, JobQueue, LanguageModel
from jobcore.requests import SubmitRequest
from jobcore.routing import Decision, RoutingPolicy, decide
from jobcore.runner import JobRunner, Outcome
from jobcore.schema_keys import input_key
from jobcore.tasks import RunContext, TaskSpec, lookup
from jobcore.views import deliveries_view, job_view

log = logging.getLogger(__name__)

# Results up to this size are returned in the job itself; larger ones only through result_url.
INLINE_RESULT_LIMIT = 256 * 1024
# Inputs above this many bytes go to the blob store (a DynamoDB item holds at most 400 KB).
INLINE_INPUT_LIMIT = 64 * 1024
DAY_S = 86_400


class CostEstimator(Protocol):
    """What the service needs of :class:`jobcore.costing.CostModel`."""

    def estimate(
        self, *, lane: str, model_id: str, expected_duration_s: float, input_tokens: int, output_tokens: int,
    ) -> dict[str, Any]: ...

    def break_even_per_min(self, expected_duration_s: float) -> float | None: ...


@dataclass(kw_only=True)
class JobService:
    runner: JobRunner
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

    def submit(self, request: SubmitRequest, *, tenant_id: str) -> Outcome:
        task = lookup(request.task, self.runner.catalogue)
        payload = task.validate(request.input)
        expected_s = task.expected_duration_s(payload)
        decision = self.route(task, expected_s, request)
        job = self._new_job(request, payload, decision, tenant_id=tenant_id, task=task, expected_s=expected_s)
        if decision.lane == INLINE:
            return self._run_inline(job)
        self.runner.store.create(job)
        return Outcome(self._enqueue(job))

    def route(self, task: TaskSpec, expected_s: float, request: SubmitRequest | None = None) -> Decision:
        """The decision framework for one job (or, without a request, for the task's defaults)."""
        rate = (self.arrival_rates_per_min or {}).get(task.name, 0.0)
        threshold = self.cost_model.break_even_per_min(expected_s) if self.cost_model and rate > 0 else None
        return decide(
            task.profile, expected_duration_s=expected_s, policy=self.policy,
            hints=request.hints if request else None, mode=request.mode if request else Mode.AUTO,
            arrival_rate_per_min=rate, worker_cheaper_above_per_min=threshold,
        )

    def get(self, job_id: str, *, tenant_id: str) -> Job:
        job = self.runner.store.get(job_id)
        # Another tenant's job is reported as missing, not forbidden: ids must not leak.
        if job is None or job.tenant_id != tenant_id:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return job

    # --- what the API shows -------------------------------------------------------------------------

    def view(self, job: Job) -> dict[str, Any]:
        """The job as the API returns it (see :func:`render`)."""
        return render(job, self.runner.blobs)

    def submitted_view(self, outcome: Outcome) -> dict[str, Any]:
        """A just-submitted job; one that ran inline carries the result it has at hand (no read back)."""
        if outcome.output is None:
            return self.view(outcome.job)
        job = outcome.job
        return job_view(job, result=outcome.output, result_url=self.runner.blobs.url_for(job.result_ref) if job.result_ref else None)

    def deliveries(self, job_id: str, *, tenant_id: str) -> dict[str, Any]:
        """The job's webhook delivery log."""
        return deliveries_view(self.get(job_id, tenant_id=tenant_id))

    def redeliver(self, job_id: str, *, tenant_id: str) -> dict[str, Any]:
        """Send the job's terminal event again: a new series of attempts, the same event id and body."""
        return deliveries_view(self.runner.redeliver(self.get(job_id, tenant_id=tenant_id)))

    def describe(self, task: TaskSpec) -> dict[str, Any]:
        """A task's profile, where its typical job runs and why, and what that typically costs."""
        expected_s = task.profile.expected_duration_s
        described: dict[str, Any] = {"name": task.name, "description": task.description, "profile": asdict(task.profile)}
        try:
            where = self.route(task, expected_s)
        except UnroutableError as error:
            return {**described, "route": {"lane": None, "reason": str(error)}}
        frequency = {
            "declared_rate_per_min": (self.arrival_rates_per_min or {}).get(task.name, 0.0),
            "worker_cheaper_above_per_min": self.cost_model.break_even_per_min(expected_s) if self.cost_model else None,
        }
        return {
            **described, "route": {"lane": where.lane, "reason": where.reason},
            "frequency": frequency, "typical_cost": self.estimate(task, where.lane, expected_s),
        }

    def tasks(self) -> list[dict[str, Any]]:
        return [self.describe(task) for task in self.runner.catalogue.values()]

    # --- internals ------------------------------------------------------------------------------

    def _new_job(
        self, request: SubmitRequest, payload: dict[str, Any], decision: Decision, *, tenant_id: str, task: TaskSpec,
        expected_s: float,
    ) -> Job:
        now = self.runner.clock_ms()
        job_id = self.new_id()
        inline = decision.lane == INLINE
        job = Job(
            job_id=job_id, tenant_id=tenant_id, task=task.name,
            status=JobStatus.RUNNING if inline else JobStatus.QUEUED,
            lane=decision.lane, route_reason=decision.reason, mode=request.mode,
            created_at=now, updated_at=now, hints=_hints_dict(request), metadata=request.metadata,
            webhook=request.webhook, expires_at=now // 1000 + self.job_ttl_days * DAY_S,
            started_at=now if inline else None, attempts=1 if inline else 0,
            cost=_estimated(self.estimate(task, decision.lane, expected_s, model_id=payload.get("model"))),
        )
        if len(json.dumps(payload)) <= INLINE_INPUT_LIMIT:
            return replace(job, input=payload)
        key = input_key(job_id)
        self.runner.blobs.put_json(key, payload)
        return replace(job, input_ref=key)

    def estimate(self, task: TaskSpec, lane: str, expected_s: float, *, model_id: str | None = None) -> dict[str, Any] | None:
        """What a job of this task should cost on ``lane``, from its profile's typical tokens."""
        if self.cost_model is None:
            return None
        return self.cost_model.estimate(
            lane=lane, model_id=model_id or self.model_id, expected_duration_s=expected_s,
            input_tokens=task.profile.typical_input_tokens, output_tokens=task.profile.typical_output_tokens,
        )

    def _run_inline(self, job: Job) -> Outcome:
        self.runner.store.create(job)
        deadline = self.monotonic() + self.policy.lanes.inline.time_limit_s
        llm = DeadlineModel(self.llm, deadline=deadline, clock=self.monotonic, sleep=self.sleep)
        ctx = RunContext(llm=llm, model_id=self.model_id)
        try:
            done = self.runner.execute(job, ctx)
        except ModelUnavailableError as error:
            return Outcome(self._fall_back(job, error))
        return done

    def _fall_back(self, job: Job, error: ModelUnavailableError) -> Job:
        log.info("job %s: inline run gave up (%s); queueing it", job.job_id, error)
        lane = self.policy.lanes.fallback.name
        reason = f"{lane}: inline fallback, {error} ({job.route_reason})"
        task = lookup(job.task, self.runner.catalogue)
        estimate = self.estimate(task, lane, task.expected_duration_s(self.runner.load_input(job)))
        queued = self.runner.save(job, transition(
            job, JobStatus.QUEUED, now_ms=self.runner.clock_ms(), lane=lane, route_reason=reason,
            error={"type": error.type, "message": str(error)}, cost=_estimated(estimate),
        ))
        return self._enqueue(queued)

    def _enqueue(self, job: Job) -> Job:
        try:
            self.queue.enqueue(job)
        except EnqueueError as error:
            # The client gets a 503 and resubmits; the record says why this attempt never ran.
            self.runner.fail(job, error)
            raise
        return job


def render(job: Job, blobs: BlobStore) -> dict[str, Any]:
    """The job as the API returns it, with its result when small enough and a link to it always."""
    if job.result_ref is None:
        return job_view(job)
    result = blobs.get_json(job.result_ref) if (job.result_bytes or 0) <= INLINE_RESULT_LIMIT else None
    return job_view(job, result=result, result_url=blobs.url_for(job.result_ref))


def _estimated(estimate: dict[str, Any] | None) -> dict[str, Any]:
    return {} if estimate is None else {"estimate": estimate}


def _hints_dict(request: SubmitRequest) -> dict[str, Any]:
    hints = {"expected_duration_s": request.hints.expected_duration_s, "memory_mb": request.hints.memory_mb}
    return {k: v for k, v in hints.items() if v is not None}
