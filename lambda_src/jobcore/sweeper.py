"""No job left behind: the sweeper settles jobs whose runner is gone and messages nobody will process.

Runs on a schedule (a Lambda every minute in AWS, a loop in the local runtime):

- **Stale runs.** A running job's runner renews its lease while it works (the worker's heartbeat; the
  router's inline run holds one as long as the router can live). A lease that has run out means the
  runner died: the job is queued again on its lane (an inline job on the fallback lane), or failed with
  the reason once it has used its attempts. A job being canceled whose runner died is canceled.
- **Queue deadlines.** A queued job whose ``max_queue_s`` has passed expires without running; so does one
  still queued :data:`jobcore.limits.MAX_QUEUED_S` after its submission (its lane never started it), before
  its queue's retention could drop its message unseen.
- **Unsent messages.** A queued job whose lane's queue refused its message (``unsent_since``) is sent.
- **Dead letters.** A message moved to a lane's dead-letter queue (its job failed on every receive) makes its
  job ``failed`` with the reason, unless a live runner holds it. A poison message (not a job message, an id
  that is no job's id, or an unknown job) is counted, logged and deleted: it never stops a run.

Every change is a conditional write, so the sweeper and a late runner can never both settle a job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from jobcore.context import JobContext
from jobcore.errors import ConflictError, EnqueueError, JobError
from jobcore.limits import MAX_QUEUED_S, QUEUE_RETENTION_S
from jobcore.model import ACTIVE, Job, JobStatus, queued_limit_at, transition, watch_at
from jobcore.ports import JobQueue
from jobcore.requests import well_formed_job_id
from jobcore.routing import Decision
from jobcore.runner import JobRunner, expired_error
from jobcore.views import iso

log = logging.getLogger(__name__)


class DeadLetters(Protocol):
    """A lane's dead-letter queue."""

    def receive(self) -> list[tuple[str | None, str, int]]:
        """Up to a batch of ``(job id or None if not a job message, receipt, receive count)``."""
        ...

    def delete(self, receipt: str) -> None: ...


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # queued jobs whose queue had refused their message
    stranded: list[str] = field(default_factory=list)  # expired still queued MAX_QUEUED_S after submission
    dead_letters: int = 0
    poison: int = 0  # dead letters that named no job: not job messages, malformed ids, unknown jobs

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.canceled or self.expired or self.sent or self.stranded
                    or self.dead_letters)


@dataclass(kw_only=True)
class Sweeper:
    runner: JobRunner
    queue: JobQueue
    max_attempts: int  # runs a stale job may have had before it is failed rather than queued again
    grace_ms: int = 5_000  # past a lease's end before a run counts as dead (clock skew, a slow heartbeat)
    on_settled: Callable[[Job, str], None] = lambda job, why: None

    @property
    def context(self) -> JobContext:
        """The store, clock and lanes the sweeper reads: its runner's (jobcore.context)."""
        return self.runner.context

    def sweep(self, *, limit: int = 500) -> SweepReport:
        """Settle every watched job whose lease or deadline has passed."""
        report = SweepReport()
        now = self.context.clock_ms()
        for job_id, _ in self.context.store.watched(until_ms=now - self.grace_ms, limit=limit):
            job = self.context.store.get(job_id)
            if job is None or (watch_at(job) or now) > now - self.grace_ms:
                continue  # renewed or settled since the index was read
            try:
                self._settle(job, now, report)
            except ConflictError:
                continue  # its runner (or a cancel) changed it meanwhile: that change stands
        return report

    def drain(self, letters: DeadLetters, *, lane: str, report: SweepReport | None = None,
              keep_going: Callable[[], bool] = lambda: True) -> SweepReport:
        """Turn every message of ``lane``'s dead-letter queue into a settled job, then delete it, while
        ``keep_going()`` (the Lambda stops before its timeout; what is left waits for the next run)."""
        report = report if report is not None else SweepReport()
        while keep_going() and (batch := letters.receive()):
            for job_id, receipt, _ in batch:
                poison = _poison(job_id) or self._dead_letter(str(job_id), lane, report)
                if poison:
                    report.poison += 1
                    log.warning("sweeper: dropped a poison message from the %s lane's dead-letter queue: %s", lane, poison)
                letters.delete(receipt)
                report.dead_letters += 1
        return report

    # --- internals ------------------------------------------------------------------------------

    def _settle(self, job: Job, now: int, report: SweepReport) -> None:
        runner = self.runner
        if job.status is JobStatus.QUEUED:
            if job.queue_deadline_at is not None and job.queue_deadline_at <= now:
                runner.finish(job, JobStatus.EXPIRED, error=expired_error(job))
                self._note(job, report.expired, "expired in the queue")
            elif queued_limit_at(job) <= now:
                runner.finish(job, JobStatus.EXPIRED, error=queued_too_long_error(job))
                self._note(job, report.stranded, f"expired: still queued {MAX_QUEUED_S / 3600:g} h after its submission")
            elif job.unsent_since is not None:
                self._send(job, now, report)
        elif job.status is JobStatus.CANCELING:
            runner.finish(job, JobStatus.CANCELED)
            self._note(job, report.canceled, "canceled; its runner had stopped")
        elif job.status is JobStatus.RUNNING:
            silent = f"no heartbeat from {job.lease_owner} since its lease ended at {iso(job.lease_expires_at)}"
            if job.attempts >= self.max_attempts:
                runner.fail(job, JobError(f"{silent}; gave up after {job.attempts} attempts"))
                self._note(job, report.failed, silent)
            else:
                self._requeue(job, now, silent)
                self._note(job, report.requeued, silent)

    def _requeue(self, job: Job, now: int, why: str) -> None:
        lane = self.context.lanes.get(job.lane)
        target = lane.name if lane.queued and lane.enabled else self.context.lanes.fallback.name
        reason = Decision(target, f"re-queued by the sweeper, {why}", earlier=job.route_reason).reason
        queued = self.runner.save(job, transition(job, JobStatus.QUEUED, now_ms=now, lane=target, route_reason=reason))
        try:
            self.queue.enqueue(queued)
        except EnqueueError as error:
            self.runner.unsent(queued, error)  # the next run sends it

    def _send(self, job: Job, now: int, report: SweepReport) -> None:
        """Send the message its lane's queue refused; if it refuses again, the next run tries again (until
        :func:`queued_limit_at`, when the job expires)."""
        # A job waiting for the model is sent delayed until its next attempt: a worker drops a message that comes
        # much earlier as a stray copy.
        waiting_until = job.model_wait.next_attempt_at if job.model_wait is not None else None
        try:
            self.queue.enqueue(job, delay_s=max(0, math.ceil(((waiting_until or now) - now) / 1000)))
        except EnqueueError as error:
            log.warning("sweeper: job %s: its %s queue still refuses it (%s)", job.job_id, job.lane, error)
            return
        # A claim that came first (its message received at once) already cleared the mark: the conflict is fine.
        self.runner.save(job, replace(job, unsent_since=None, updated_at=now, version=job.version + 1))
        self._note(job, report.sent, f"sent to the {job.lane} queue, which had refused it at {iso(job.unsent_since)}")

    def _dead_letter(self, job_id: str, lane: str, report: SweepReport) -> str | None:
        """Settle the job of a dead letter; why the letter is poison (no such job), else None."""
        job = self.context.store.get(job_id)
        if job is None:
            return f"no job {job_id}"
        if job.status.terminal:
            return None
        now = self.context.clock_ms()
        if job.status in ACTIVE and (job.lease_expires_at or 0) > now:
            return None  # a live runner holds it and will settle it
        try:
            if job.status is JobStatus.CANCELING:
                self.runner.finish(job, JobStatus.CANCELED)
                self._note(job, report.canceled, "canceled; its message was dead-lettered")
                return None
            last = f"; last error: {job.error['message']}" if job.error else ""
            why = f"its message went to the {lane} lane's dead-letter queue after {self.max_attempts} receives{last}"
            self.runner.fail(job, JobError(why))
            self._note(job, report.failed, why)
        except ConflictError:
            pass  # settled meanwhile
        return None

    def _note(self, job: Job, into: list[str], why: str) -> None:
        into.append(job.job_id)
        log.warning("sweeper: job %s %s", job.job_id, why)
        self.on_settled(job, why)


def _poison(job_id: object) -> str | None:
    """Why a dead letter's job id can name no job (None: it may): DynamoDB refuses such a key outright."""
    if job_id is None:
        return "not a job message"
    if not isinstance(job_id, str) or not well_formed_job_id(job_id):
        return f"job_id {str(job_id)[:80]!r} is not a job id"
    return None


def queued_too_long_error(job: Job) -> dict[str, str]:
    """Why a job still queued at :func:`jobcore.model.queued_limit_at` expired."""
    return {"type": "expired", "message": (
        f"not started within {MAX_QUEUED_S / 3600:g} h of its submission: the {job.lane} lane never ran it, and its "
        f"queue keeps a message at most {QUEUE_RETENTION_S / 86_400:g} days")}
