"""Webhook events: what the pipeline POSTs when a job reaches a terminal state.

Follows Standard Webhooks: a stable event id (the receiver's dedupe key across every attempt and
redelivery), a type (``job.succeeded``, ``job.failed``, ``job.canceled``, ``job.expired``,
``job.timed_out``), a ``timestamp`` (ISO 8601, the spec's payload field and the API's form of every
time; not the ``webhook-timestamp`` header, each attempt's integer seconds for the signature) and the
job as ``GET /v1/jobs/{id}`` shows it. Signing happens in the adapter with
the ``standardwebhooks`` package; attempts and their schedule are :mod:`jobcore.deliveries`.
"""

from __future__ import annotations

from typing import Any

from jobcore.deliveries import Delivery, open_delivery
from jobcore.model import TERMINAL, Job
from jobcore.views import iso

# What a webhook may ask for: every terminal state ("completed"), or some of them by name.
EVENT_TYPES = frozenset(f"job.{status.value}" for status in TERMINAL)
COMPLETED = "completed"


def normalise_event(name: str) -> str | None:
    """``"succeeded"`` or ``"job.succeeded"`` → ``"succeeded"``; ``"completed"`` stays; None if unknown."""
    if name == COMPLETED:
        return name
    bare = name.removeprefix("job.")
    return bare if f"job.{bare}" in EVENT_TYPES else None


def event_id(job: Job) -> str:
    # One terminal state per job, so (job, status) identifies the event across attempts and redeliveries.
    return f"evt_{job.job_id}_{job.status.value}"


def event_type(job: Job) -> str:
    return f"job.{job.status.value}"


def wants(job: Job) -> bool:
    """Whether the job's webhook asked for this event ("completed" means every terminal state)."""
    if job.webhook is None or not job.status.terminal:
        return False
    events = set(job.webhook.events)
    return COMPLETED in events or job.status.value in events


def open_for(job: Job, *, now_ms: int) -> Delivery:
    """The outbox entry for a terminal job whose webhook wants this event."""
    assert job.webhook is not None
    return open_delivery(event_id=event_id(job), event_type=event_type(job), url=job.webhook.url, now_ms=now_ms)


def payload(job_view: dict[str, Any], job: Job, *, timestamp_ms: int) -> dict[str, Any]:
    """The event's body; ``timestamp_ms``: when it was rendered (its first attempt, as the job ended)."""
    return {"id": event_id(job), "type": event_type(job), "timestamp": iso(timestamp_ms), "data": job_view}
