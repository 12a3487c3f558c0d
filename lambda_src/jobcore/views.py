"""The job as the API shows it: ISO timestamps, the route and its reason, result or a link to it."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from jobcore.deliveries import Delivery
from jobcore.errors import BlobNotFoundError, JobError
from jobcore.model import Job, JobStatus, Usage, trace_id_of
from jobcore.ports import BlobStore

log = logging.getLogger(__name__)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ``result_status`` of a job whose stored result is gone (its retention ran out, or it was deleted).
RESULT_EXPIRED = "expired"
# Results up to this size are returned in the job itself; larger ones only through result_url. (Those up to
# jobcore.limits.RESULT_IN_ITEM_BYTES are kept in the job item: no result_url, no S3 read.)
INLINE_RESULT_LIMIT = 256 * 1024


def render(job: Job, blobs: BlobStore, *, now_ms: int | None = None, listed: bool = False) -> dict[str, Any]:
    """The job as the API returns it: ``GET /v1/jobs/{id}``, its webhook and, ``listed``, each entry of
    ``GET /v1/jobs``. Its result when small enough (never in a list: a page would be too big), links to it and
    its files always; a result that is gone (past ``result_expires_at`` at ``now_ms``, or its object not found)
    is ``null`` with ``"result_status": "expired"`` and no links, in every view alike. A result kept in the
    job item (``result_json``) is shown without any read; one in S3 is read, or looked for when not shown.
    Never fails for what the job or its result holds (:func:`safe_view`)."""
    return safe_view(job, functools.partial(_render, job, blobs, now_ms=now_ms, listed=listed))


def _render(job: Job, blobs: BlobStore, *, now_ms: int | None, listed: bool) -> dict[str, Any]:
    if not has_result(job):
        return job_view(job)
    if result_expired(job, now_ms):
        return job_view(job, now_ms=now_ms)
    if job.result_ref is None:
        return job_view(job, result=None if listed else json.loads(job.result_json or "null"), url_for=blobs.url_for)
    if listed or (job.result_bytes or 0) > INLINE_RESULT_LIMIT:
        result, found = None, blobs.exists(job.result_ref)
    else:
        try:
            result, found = blobs.get_json(job.result_ref), True
        except BlobNotFoundError:
            result, found = None, False
    if not found:
        log.warning("job %s: its result %s is gone before result_expires_at", job.job_id, job.result_ref)
        return job_view(job, result_gone=True)
    return job_view(job, result=result, url_for=blobs.url_for)


def job_view(job: Job, *, result: Any = None, url_for: Callable[[str], str | None] | None = None,
             now_ms: int | None = None, result_gone: bool = False) -> dict[str, Any]:
    """The job as the API shows it; ``url_for`` turns a stored document's key into a link the client can GET
    (a presigned URL): the result's (``result_url``, only for a result stored in S3: a small one is kept in
    the job item and shown as ``result``) and each file's (``files.<name>.url``).

    A result that is gone (``result_gone``: its object was not found; or, given ``now_ms``, past
    ``result_expires_at``) shows as ``"result": null`` with ``"result_status": "expired"`` and no links.
    """
    expired = has_result(job) and (result_gone or result_expired(job, now_ms))
    links_for = None if expired else url_for
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
        "waiting": waiting_line(job),
        "capacity_wait_ms": job.capacity_wait_ms or None,
        "result_expires_at": iso(job.result_expires_at),
        "attempts": job.attempts,
        "batch_id": job.batch_id,
        "metadata": job.metadata,
        "source": job.source,
        "trace_id": trace_id_of(job.trace_parent),
        "max_cost_usd": job.max_cost_usd,
        "usage": usage_view(job.usage),
        "cost": job.cost or None,
        "error": job.error,
        "attempt_errors": [{**entry, "at": iso(entry.get("at"))} for entry in job.attempt_errors] or None,
        "links": {"self": f"/v1/jobs/{job.job_id}"},
    }
    if job.webhook is not None:
        view["webhook"] = {"url": job.webhook.url, "events": list(job.webhook.events), "delivery": _delivery_line(job)}
    if job.started_at is not None and job.finished_at is not None:
        view["duration_ms"] = job.finished_at - job.started_at
    if result is not None and not expired:
        view["result"] = result
    if links_for is not None and job.result_ref is not None:
        view["result_url"] = links_for(job.result_ref)
    if job.files:
        view["files"] = {
            name: {k: v for k, v in {"url": links_for(file["key"]) if links_for else None, "bytes": file.get("bytes"),
                                     "content_type": file.get("content_type")}.items() if v is not None}
            for name, file in job.files.items()
        }
    shown = {k: v for k, v in view.items() if v is not None}
    if expired:
        shown["result"] = None
        shown["result_status"] = RESULT_EXPIRED
    return shown


def usage_view(usage: Usage) -> dict[str, Any]:
    """The job's tokens: uncached input, output, calls, and the cached prefix written and read (0 without
    caching); the 1-hour-TTL part of the writes only when there is one; ``by_provider`` (the same, per model
    provider that answered) when the deployment fails over between providers."""
    view: dict[str, Any] = {
        "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens, "model_calls": usage.model_calls,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
    }
    if usage.cache_creation_1h_input_tokens:
        view["cache_creation_1h_input_tokens"] = usage.cache_creation_1h_input_tokens
    if usage.by_provider:
        view["by_provider"] = {name: usage_view(part) for name, part in sorted(usage.by_provider.items())}
    return view


def has_result(job: Job) -> bool:
    """Whether the job stored a result: in S3, in its item, or (a job read from the tenant index, which holds its
    result's size but not its text) somewhere."""
    return job.result_ref is not None or job.result_json is not None or job.result_bytes is not None


def result_expired(job: Job, now_ms: int | None) -> bool:
    """Whether the job's stored result is past its retention (the bucket's lifecycle deletes it then; one kept
    in the job item is no longer shown then)."""
    return now_ms is not None and job.result_expires_at is not None and now_ms >= job.result_expires_at


def waiting_line(job: Job) -> str | None:
    """Why a queued job waits, when it waits for the model (``model rate-limited (429); next attempt at …``) or
    for its message to be sent (its queue refused it)."""
    if job.status is JobStatus.QUEUED and job.unsent_since is not None:
        return f"its queue refused it at {iso(job.unsent_since)}; it is sent again automatically within minutes"
    wait = job.model_wait
    if job.status is not JobStatus.QUEUED or wait is None or wait.next_attempt_at is None:
        return None
    if wait.capacity:
        return f"{wait.reason}; next grant expected at {iso(wait.next_attempt_at)}, waited {job.capacity_wait_ms / 1000:.0f} s so far"
    return (f"{wait.reason}; next attempt at {iso(wait.next_attempt_at)}, attempt {job.attempts + 1}, "
            f"waiting since {iso(wait.since)}")


def with_base_path(document: Any, base_path: str) -> Any:
    """``document`` (a view: a job, a deliveries log, a page of jobs) with the paths of its own ``links``,
    and of each listed job's, prefixed by the API's base path (``/dev``: the stage, or a custom domain's
    mapping). The views write paths from the API's root (``/v1/jobs/…``); only the edge knows where that
    root is mounted. Nothing else is touched: a task's result may hold a ``links`` of its own."""
    if not base_path or not isinstance(document, dict):
        return document
    prefixed = dict(document)
    if isinstance(document.get("links"), dict):
        prefixed["links"] = {name: base_path + path if isinstance(path, str) and path.startswith("/") else path
                             for name, path in document["links"].items()}
    if isinstance(document.get("jobs"), list):
        prefixed["jobs"] = [with_base_path(job, base_path) for job in document["jobs"]]
    return prefixed


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


# --- rendering stored data defensively --------------------------------------------------------------
#
# A view is made of stored data: a job item, a result document. Whatever a store holds (an item written by
# an older version, a result a task produced, a value no check ever saw), its view must still render, and as
# JSON that any client can parse: one odd job must never turn GET /v1/jobs/{id}, or a page of GET /v1/jobs
# that holds it, into a 500.

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_NOTED = 5  # replaced places a log line names (the count is always there)


def safe_view(job: Job, render: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``render()`` (``job``'s view) made safe to send: see :func:`jsonable`. When that fails (a stored value the
    view cannot take, a result nested too deep to walk), the view without the result and its links, or failing
    that the job's bare identity (:func:`bare_view`); each fall back is logged with the job's id. A JobError
    raised by ``render`` (a store that is unavailable: a 503) is not rendering's failure and is raised as it is."""
    what = f"job {_id(job)}"
    try:
        return jsonable(render(), what=what)
    except JobError:
        raise
    except Exception:  # noqa: BLE001 - any stored value may be odd; the view must still render
        log.exception("%s: its view could not be rendered; showing it without its result", what)
    try:
        return jsonable(job_view(job), what=what)
    except Exception:  # noqa: BLE001 - as above: even the job's own fields may be odd
        log.exception("%s: its fields could not be rendered; showing its identity only", what)
    return jsonable(bare_view(job), what=what)


def bare_view(job: Job) -> dict[str, Any]:
    """What is shown of a job whose view cannot be rendered: its id, task, status and link, each as text."""
    job_id = _id(job)
    status = getattr(job, "status", None)
    return {"id": job_id, "task": str(getattr(job, "task", "")),
            "status": status.value if isinstance(status, JobStatus) else str(status),
            "links": {"self": f"/v1/jobs/{job_id}"}}


def jsonable(value: Any, *, what: str = "a view") -> Any:
    """``value`` as strict JSON can carry it, to any client: a float that is NaN or infinite becomes null;
    a Decimal a number; a set or tuple a list; a key that is not text, text; a lone surrogate (half of a
    UTF-16 pair, which UTF-8 cannot encode) U+FFFD; anything else (bytes, an object) null. What was
    replaced is logged, with ``what`` and the places."""
    replaced: list[str] = []
    clean = _jsonable(value, "", replaced)
    if replaced:
        log.warning("%s: %d value(s) could not be shown as JSON and were replaced: %s", what, len(replaced),
                    ", ".join(replaced[:_NOTED]))
    return clean


def _jsonable(value: Any, path: str, replaced: list[str]) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value):
            replaced.append(path or "(root)")
            return _LONE_SURROGATE.sub("\ufffd", value)
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        replaced.append(path or "(root)")
        return None
    if isinstance(value, Decimal):
        if not value.is_finite():
            replaced.append(path or "(root)")
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        clean: dict[str, Any] = {}
        for key, item in value.items():
            name = _jsonable(key if isinstance(key, str) else str(key), f"{path}.<key>" if path else "<key>", replaced)
            clean[name] = _jsonable(item, f"{path}.{name}" if path else name, replaced)
        return clean
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{path}[{i}]", replaced) for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return [_jsonable(item, f"{path}[]", replaced) for item in sorted(value, key=repr)]
    replaced.append(path or "(root)")
    return None


def _id(job: Job) -> str:
    return str(getattr(job, "job_id", "?"))
