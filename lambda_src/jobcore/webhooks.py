"""Webhook events: what the pipeline POSTs when a job reaches a terminal state.

Follows Standard Webhooks: a stable event id (the receiver's dedupe key across retries), a type and
the job. Signing happens in the adapter with the ``standardwebhooks`` package; retries and a
delivery log come later and keep this payload.
"""

from __future__ import annotations

from typing import Any

from jobcore.model import Job


def event_id(job: Job) -> str:
    # One terminal state per job, so (job, status) identifies the event across redeliveries.
    return f"evt_{job.job_id}_{job.status.value}"


def event_type(job: Job) -> str:
    return f"job.{job.status.value}"


def wants(job: Job) -> bool:
    """Whether the job's webhook asked for this event ("completed" means every terminal state)."""
    if job.webhook is None or not job.status.terminal:
        return False
    events = set(job.webhook.events)
    return "completed" in events or job.status.value in events


def payload(job_view: dict[str, Any], job: Job, *, timestamp_ms: int) -> dict[str, Any]:
    return {"id": event_id(job), "type": event_type(job), "timestamp": timestamp_ms, "data": job_view}
