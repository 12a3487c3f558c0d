"""The job as the API shows it: ISO timestamps, the route and its reason, result or a link to it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from jobcore.deliveries import Delivery
from jobcore.model import Job, JobStatus


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(job: Job, *, result: Any = None, url_for: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """The job as the API shows it; ``url_for`` turns a stored document's key into a link the client can GET
    (a presigned URL): the result's (``result_url``) and each file's (``files.<name>.url``)."""
    view: dict[str, Any] = {
        "id": job.job_id,
        "task": job.task,
        "status": job.status.value,
        "route": {"lane": job.lane, "reason": job.route_reason},
        "mode": job.mode.value,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "queue_deadline_at": iso(job.queue_deadline_at) if job.status is JobStatus.QUEUED else None,
        "result_expires_at": iso(job.result_expires_at),
        "attempts": job.attempts,
        "metadata": job.metadata,
        "usage": {"input_tokens": job.usage.input_tokens, "output_tokens": job.usage.output_tokens, "model_calls": job.usage.model_calls},
        "cost": job.cost or None,
        "error": job.error,
        "links": {"self": f"/v1/jobs/{job.job_id}"},
    }
    if job.webhook is not None:
        view["webhook"] = {"url": job.webhook.url, "events": list(job.webhook.events), "delivery": _delivery_line(job)}
    if job.started_at is not None and job.finished_at is not None:
        view["duration_ms"] = job.finished_at - job.started_at
    if result is not None:
        view["result"] = result
    if url_for is not None and job.result_ref is not None:
        view["result_url"] = url_for(job.result_ref)
    if job.files:
        view["files"] = {
            name: {k: v for k, v in {"url": url_for(file["key"]) if url_for else None, "bytes": file.get("bytes"),
                                     "content_type": file.get("content_type")}.items() if v is not None}
            for name, file in job.files.items()
        }
    return {k: v for k, v in view.items() if v is not None}


def with_base_path(document: Any, base_path: str) -> Any:
    """``document`` with every path under a ``links`` object prefixed by the API's base path (``/dev``: the
    stage, or a custom domain's mapping). The views write paths from the API's root (``/v1/jobs/…``); only
    the edge knows where that root is mounted."""
    if not base_path:
        return document
    if isinstance(document, list):
        return [with_base_path(item, base_path) for item in document]
    if not isinstance(document, dict):
        return document
    return {
        key: ({name: base_path + path if isinstance(path, str) and path.startswith("/") else path
               for name, path in value.items()} if key == "links" and isinstance(value, dict) else with_base_path(value, base_path))
        for key, value in document.items()
    }


def _delivery_line(job: Job) -> str:
    if job.delivery is not None:
        return job.delivery.summary()
    return "not asked for this event" if job.status.terminal else "sent when the job finishes"


def deliveries_view(job: Job) -> dict[str, Any]:
    """``GET /v1/jobs/{id}/deliveries``: every attempt of the job's webhook event, and what comes next."""
    found = [] if job.delivery is None else [_delivery(job.delivery)]
    return {"job_id": job.job_id, "deliveries": found, "links": {"job": f"/v1/jobs/{job.job_id}"}}


def _delivery(delivery: Delivery) -> dict[str, Any]:
    attempts = [
        {k: v for k, v in {
            "attempt": a.number, "series": a.series, "at": iso(a.at_ms), "duration_ms": a.duration_ms,
            "status": a.status, "error": a.error, "detail": a.detail or None,
        }.items() if v is not None}
        for a in delivery.attempts
    ]
    view = {
        "event_id": delivery.event_id, "type": delivery.event_type, "url": delivery.url, "state": delivery.state.value,
        "series": delivery.series, "summary": delivery.summary(), "attempts": attempts,
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.pending else None, "reason": delivery.reason,
    }
    return {k: v for k, v in view.items() if v is not None}
