"""The webhook dispatcher: attempts pending deliveries, records every attempt, schedules the next.

It runs apart from the router and the workers, which only open the outbox entry and hand the job id
over (:meth:`jobcore.runner.JobRunner.finish`): a slow or dead receiver never holds a request or a job.

- :meth:`Dispatcher.deliver` makes the one attempt a hand-over names (job id + due time): it claims
  it with a conditional write (so duplicate hand-overs, SQS redeliveries and the sweep never POST
  twice) that also logs the attempt in flight, POSTs the event's fixed body, records the outcome, and hands the job over again for the next
  one when that is within SQS's 15-minute delay. A hand-over for an attempt already made is dropped.
- :meth:`Dispatcher.sweep` runs on a schedule: it finds, through the table's due-time index, the
  deliveries it must act on before its next run (attempts beyond the queue's 15-minute delay, claims
  that ended without a record: their dispatcher died mid-attempt, and hand-overs overdue past their grace:
  lost), marks each handed over and
  hands it over with the exact delay left, so a 10-hour retry fires on time and nothing is sent twice
  in the ordinary course.

A new series of attempts of a finished delivery (redelivery) is :meth:`jobcore.runner.JobRunner.redeliver`.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from jobcore import deliveries
from jobcore.deliveries import Delivery, RetrySchedule
from jobcore.errors import ConflictError
from jobcore.limits import SQS_MAX_DELAY_S
from jobcore.model import Job
from jobcore.observing import QUIET
from jobcore.ports import BlobStore, DeliveryQueue, JobStore, Observer, WebhookSender
from jobcore.webhooks import payload

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 15.0  # a receiver must answer 2xx within this to count as delivered
# A claim outlasts the POST's timeout by this much: the body's render and store before it, the record after.
CLAIM_MARGIN_S = 30
WEBHOOKS_PREFIX = "webhooks/"


def body_key(event_id: str) -> str:
    return f"{WEBHOOKS_PREFIX}{event_id}.json"


@dataclass(kw_only=True)
class Dispatcher:
    store: JobStore
    blobs: BlobStore
    sender: WebhookSender
    queue: DeliveryQueue
    render: Callable[[Job], dict[str, Any]]  # the job as GET /v1/jobs/{id} shows it
    clock_ms: Callable[[], int]
    schedule: RetrySchedule = RetrySchedule()
    draw: Callable[[], float] = random.random
    timeout_s: float = WEBHOOK_TIMEOUT_S
    sweep_every_s: float = 60.0  # how often the sweep runs: it hands over what falls due before the next one
    on_exhausted: Callable[[Job], None] = lambda job: None
    observer: Observer = QUIET  # each attempt is a span of its job's trace

    @property
    def lease_ms(self) -> int:
        """How long a claim holds: past the POST's timeout, so a crashed attempt is retried, not lost, as soon
        as it ends (the sweep acts then: :meth:`jobcore.deliveries.Delivery.sweep_at`)."""
        return math.ceil((self.timeout_s + CLAIM_MARGIN_S) * 1000)

    def deliver(self, job_id: str, *, due_at: int | None = None) -> Job | None:
        """Make the attempt due at ``due_at`` (None: whichever is due) for ``job_id``; the job as it stands."""
        job = self.store.get(job_id)
        if job is None or job.delivery is None or not job.delivery.pending:
            return job
        pending = job.delivery
        if due_at is not None and pending.next_attempt_at != due_at:
            return job  # a duplicate hand-over of an attempt already made
        now = self.clock_ms()
        held = deliveries.claim(pending, now_ms=now, lease_ms=self.lease_ms)
        if held is None:
            if (pending.claimed_until or 0) <= now and pending.next_attempt_at is not None:
                self._hand_over(job_id, pending.next_attempt_at, now)  # early (SQS rounds delays): wait the rest
            return job
        try:
            job = self._save(job, held)
        except ConflictError:
            return None  # another dispatcher claimed it first
        try:
            body, job, held = self._body(job, held)
        except ConflictError:
            return None  # changed under the claim (a redelivery): nothing was sent; the new state stands
        started = self.clock_ms()
        attributes = {"job.id": job.job_id, "webhook.event_id": held.event_id, "webhook.attempt": len(held.attempts) + 1}
        with self.observer.span("webhook.deliver", parent=job.trace_parent, attributes=attributes) as span:
            result = self.sender.post(held.url, event_id=held.event_id, body=body, timeout_s=self.timeout_s)
            span.set_attribute("http.response.status_code", result.status or 0)
            span.set_attribute("webhook.delivered", result.delivered)
        now = self.clock_ms()
        after = deliveries.record(held, result, at_ms=started, now_ms=now, schedule=self.schedule, draw=self.draw())
        soon = after.pending and after.next_attempt_at is not None and after.next_attempt_at - now <= SQS_MAX_DELAY_S * 1000
        if soon:  # handed over right after the save; later attempts are the sweep's
            after = after.handed(now_ms=now)
        try:
            job = self._save(job, after)
        except ConflictError:
            log.warning("job %s: delivery changed during an attempt (redelivered?); the attempt is not recorded", job_id)
            return None
        if soon:
            self._hand_over(job.job_id, after.next_attempt_at or now, now)
        self._report(job, after)
        return job

    def sweep(self, *, limit: int = 500) -> int:
        """Hand over every delivery the sweep must act on before its next run (attempts beyond the
        queue's longest delay, and hand-overs overdue past their grace), each with the delay left; how many."""
        now = self.clock_ms()
        until = now + math.ceil(self.sweep_every_s * 1000)
        handed = 0
        for job_id, _ in self.store.due_deliveries(until_ms=until, limit=limit):
            job = self.store.get(job_id)
            pending = job.delivery if job is not None else None
            if job is None or pending is None or (pending.sweep_at() or math.inf) > until:
                continue  # settled, or handed over since the index was read
            if (pending.claimed_until or 0) > now:
                continue  # being attempted now: that attempt hands over what follows
            due = pending.next_attempt_at if pending.next_attempt_at is not None else now
            try:
                job = self._save(job, pending.handed(now_ms=now))
            except ConflictError:
                continue  # changed meanwhile: whoever changed it handed it over
            self._hand_over(job_id, due, now)
            handed += 1
        return handed

    # --- internals ------------------------------------------------------------------------------

    def _save(self, job: Job, delivery: Delivery) -> Job:
        new = replace(job, delivery=delivery, version=job.version + 1)
        self.store.save(new, expected_version=job.version)
        return new

    def _body(self, job: Job, delivery: Delivery) -> tuple[bytes, Job, Delivery]:
        """The event's body: rendered and stored at its first attempt, the same bytes for every later one.

        Only the claim holder renders it, and its reference is saved before anything is sent: a crash
        after that leaves the body fixed; a crash before it sent nothing, so a new render is harmless.
        The presigned ``result_url`` is left out (it would be dead before the schedule ends): a small
        result travels in the body, any result is one GET of ``links.self`` away.
        """
        if delivery.body_ref is not None:
            return _encode(self.blobs.get_json(delivery.body_ref)), job, delivery
        view = {k: v for k, v in self.render(job).items() if k != "result_url"}
        document = payload(view, job, timestamp_ms=self.clock_ms())
        key = body_key(delivery.event_id)
        self.blobs.put_json(key, document)
        delivery = replace(delivery, body_ref=key)
        return _encode(document), self._save(job, delivery), delivery

    def _report(self, job: Job, delivery: Delivery) -> None:
        if delivery.pending:
            return
        if delivery.state is deliveries.DeliveryState.FAILED:
            log.error("job %s: webhook %s not delivered: %s", job.job_id, delivery.event_id, delivery.reason)
            self.on_exhausted(job)
        else:
            log.info("job %s: webhook %s %s", job.job_id, delivery.event_id, delivery.summary())

    def _hand_over(self, job_id: str, due_ms: int, now_ms: int) -> None:
        delay_s = min(max(0, math.ceil((due_ms - now_ms) / 1000)), SQS_MAX_DELAY_S)
        try:
            self.queue.schedule(job_id, due_at=due_ms, delay_s=delay_s)
        except Exception as error:  # noqa: BLE001 - the next sweep hands it over again
            log.warning("job %s: hand-over to the dispatcher failed (%s); the next sweep retries it", job_id, error)


def _encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
