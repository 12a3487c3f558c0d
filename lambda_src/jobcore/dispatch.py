"""The webhook dispatcher: attempts pending deliveries, records every attempt, schedules the next.

It runs apart from the router and the workers, which only open the outbox entry and hand the job id
over (:meth:`jobcore.runner.JobRunner.finish`): a slow or dead receiver never holds a request or a job.

- :meth:`Dispatcher.deliver` makes the one attempt a hand-over names (job id + due time): it claims
  it with a conditional write (so duplicate hand-overs, SQS redeliveries and the sweep never POST
  twice), POSTs the event's fixed body, records the attempt, and hands the job over again for the next
  one when that is within SQS's 15-minute delay. A hand-over for an attempt already made is dropped.
- :meth:`Dispatcher.sweep` runs on a schedule: it finds the deliveries due before the next sweep (the
  ones whose next attempt is hours away, and any whose hand-over was lost) and hands each over with
  the exact delay left, so a 10-hour retry fires on time.

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
from jobcore.ports import BlobStore, DeliveryQueue, JobStore, WebhookSender
from jobcore.webhooks import payload

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 15.0  # a receiver must answer 2xx within this to count as delivered
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

    @property
    def lease_ms(self) -> int:
        """How long a claim holds: past the POST's timeout, so a crashed attempt is retried, not lost."""
        return math.ceil((self.timeout_s + 30) * 1000)

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
            if (pending.claimed_until or 0) <= now:  # early (SQS rounds delays to seconds): wait the rest
                self._hand_over_if_soon(job, pending, now)
            return job
        try:
            job = self._save(job, held)
        except ConflictError:
            return None  # another dispatcher claimed it first
        body, held = self._body(job, held)
        started = self.clock_ms()
        result = self.sender.post(held.url, event_id=held.event_id, body=body, timeout_s=self.timeout_s)
        after = deliveries.record(held, result, at_ms=started, now_ms=self.clock_ms(), schedule=self.schedule, draw=self.draw())
        try:
            job = self._save(job, after)
        except ConflictError:
            log.warning("job %s: delivery changed during an attempt (redelivered?); the attempt is not recorded", job_id)
            return None
        self._after(job, after)
        return job

    def sweep(self, *, limit: int = 500) -> int:
        """Hand over every delivery due before the next sweep, each with the delay left; how many."""
        now = self.clock_ms()
        due = self.store.due_deliveries(until_ms=now + math.ceil(self.sweep_every_s * 1000), limit=limit)
        for job_id, due_ms in due:
            self._hand_over(job_id, due_ms, now)
        return len(due)

    # --- internals ------------------------------------------------------------------------------

    def _save(self, job: Job, delivery: Delivery) -> Job:
        new = replace(job, delivery=delivery, version=job.version + 1)
        self.store.save(new, expected_version=job.version)
        return new

    def _body(self, job: Job, delivery: Delivery) -> tuple[bytes, Delivery]:
        """The event's body: rendered and stored at its first attempt, the same bytes for every later one."""
        if delivery.body_ref is not None:
            return _encode(self.blobs.get_json(delivery.body_ref)), delivery
        document = payload(self.render(job), job, timestamp_ms=self.clock_ms())
        key = body_key(delivery.event_id)
        self.blobs.put_json(key, document)
        return _encode(document), replace(delivery, body_ref=key)

    def _after(self, job: Job, delivery: Delivery) -> None:
        if delivery.pending:
            self._hand_over_if_soon(job, delivery, self.clock_ms())
        elif delivery.state is deliveries.DeliveryState.FAILED:
            log.error("job %s: webhook %s not delivered: %s", job.job_id, delivery.event_id, delivery.reason)
            self.on_exhausted(job)
        else:
            log.info("job %s: webhook %s %s", job.job_id, delivery.event_id, delivery.summary())

    def _hand_over_if_soon(self, job: Job, delivery: Delivery, now_ms: int) -> None:
        """Hand over again if the next attempt falls within SQS's delay; later ones are the sweep's."""
        due = delivery.next_attempt_at if delivery.next_attempt_at is not None else now_ms
        if due - now_ms <= SQS_MAX_DELAY_S * 1000:
            self._hand_over(job.job_id, due, now_ms)

    def _hand_over(self, job_id: str, due_ms: int, now_ms: int) -> None:
        delay_s = min(max(0, math.ceil((due_ms - now_ms) / 1000)), SQS_MAX_DELAY_S)
        try:
            self.queue.schedule(job_id, due_at=due_ms, delay_s=delay_s)
        except Exception as error:  # noqa: BLE001 - the next sweep hands it over again
            log.warning("job %s: hand-over to the dispatcher failed (%s); the next sweep retries it", job_id, error)


def _encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
