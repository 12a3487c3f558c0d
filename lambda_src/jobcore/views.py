"""The job as the API shows it: ISO timestamps, the route and its reason, result or a link to it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobcore.model import Job


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(job: Job, *, result: Any = None, result_url: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": job.job_id,
        "task": job.task,
        "status": job.status.value,
        "route": {"lane": job.lane, "reason": job.route_reason},
        "mode": job.mode.value,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "attempts": job.attempts,
        "metadata": job.metadata,
        "usage": {"input_tokens": job.usage.input_tokens, "output_tokens": job.usage.output_tokens, "model_calls": job.usage.model_calls},
        "cost": job.cost or None,
        "error": job.error,
        "links": {"self": f"/v1/jobs/{job.job_id}"},
    }
    if job.started_at is not None and job.finished_at is not None:
        view["duration_ms"] = job.finished_at - job.started_at
    if result is not None:
        view["result"] = result
    if result_url is not None:
        view["result_url"] = result_url
    return {k: v for k, v in view.items() if v is not None}
