"""What the API reads: a tenant's job, its jobs page by page, a long poll, a job's view and its delivery log, the
tenant's usage and its budget, the model's capacity and the tenant's jobs waiting for it.

:class:`JobQueries` writes nothing; :class:`jobcore.service.JobService` answers the API's reads with it.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobcore import usage
from jobcore.capacity import ANY_FAMILY
from jobcore.capacity_pacer import Pacer
from jobcore.context import JobContext
from jobcore.errors import InvalidInputError, JobNotFoundError
from jobcore.model import Job, JobStatus
from jobcore.ports import Cursor
from jobcore.requests import well_formed_job_id
from jobcore.validation import quoted
from jobcore.views import deliveries_view, iso, job_view, jsonable, render, safe_view

# GET /v1/jobs?source=: the tenant's jobs are read this many pages of MAX_SCAN_PAGE, filtered, per request.
SOURCE_SCAN_PAGES = 10
MAX_SCAN_PAGE = 100


@dataclass(kw_only=True)
class JobQueries:
    context: JobContext
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    model_id: str  # the default model, whose budget GET /v1/capacity shows first
    pacer: Pacer | None = None
    budgets_usd: dict[str, float] | None = None

    def get(self, job_id: str, *, tenant_id: str) -> Job:
        job = self.context.store.get(job_id)
        # Another tenant's job is reported as missing, not forbidden: ids must not leak.
        if job is None or job.tenant_id != tenant_id:
            raise JobNotFoundError(f"no job with id {quoted(job_id)}")
        return job

    def list_jobs(self, *, tenant_id: str, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None,
                  source: str | None = None) -> dict[str, Any]:
        """A page of the tenant's jobs, newest first, and the cursor of the next page (None at the end).
        ``source``: only the jobs of that S3 intake object, found by reading the tenant's jobs (at most
        SOURCE_SCAN_PAGES pages of them per request; the cursor goes on from there)."""
        after: Cursor | None = decode_cursor(cursor)
        if source is None:
            jobs, after = self.context.store.list_jobs(tenant_id, status=status, limit=limit, after=after)
        else:
            jobs = []
            for _ in range(SOURCE_SCAN_PAGES):
                page, after = self.context.store.list_jobs(tenant_id, status=status, limit=MAX_SCAN_PAGE, after=after)
                jobs += [job for job in page if job.source == source]
                if after is None or len(jobs) >= limit:
                    break
            if len(jobs) > limit:
                jobs = jobs[:limit]
                after = Cursor(jobs[-1].created_at, jobs[-1].job_id)
        now = self.context.clock_ms()
        views = [render(job, self.context.blobs, now_ms=now, listed=True) for job in jobs]
        return {"jobs": views, "next_cursor": encode_cursor(after) if after else None}

    def wait(self, job_id: str, *, tenant_id: str, wait_s: float) -> Job:
        """The job, as soon as it is finished or ``wait_s`` has passed (long poll)."""
        deadline = self.monotonic() + wait_s
        interval = 0.1
        while True:
            job = self.get(job_id, tenant_id=tenant_id)
            left = deadline - self.monotonic()
            if job.status.terminal or left <= 0:
                return job
            self.sleep(min(interval, left))
            interval = min(interval * 2, 1.0)

    def view(self, job: Job) -> dict[str, Any]:
        """The job as the API returns it (see :func:`render`)."""
        return render(job, self.context.blobs, now_ms=self.context.clock_ms())

    def submitted_view(self, job: Job, output: dict[str, Any] | None) -> dict[str, Any]:
        """A just-submitted job; one that ran inline carries the ``output`` it has at hand (no read back)."""
        if output is None:
            return self.view(job)
        return safe_view(job, functools.partial(job_view, job, result=output, url_for=self.context.blobs.url_for))

    def deliveries(self, job_id: str, *, tenant_id: str) -> dict[str, Any]:
        """The job's webhook delivery log."""
        job = self.get(job_id, tenant_id=tenant_id)
        return jsonable(deliveries_view(job), what=f"job {job.job_id}'s deliveries")

    def usage(self, *, tenant_id: str, params: dict[str, str] | None) -> dict[str, Any]:
        """``GET /v1/usage``: the tenant's counters over the days asked for, grouped by day, task or lane; with a
        budget, what it has spent this month too (one read of both ranges' days)."""
        now = self.context.clock_ms()
        query = usage.parse_query(params, now_ms=now)
        budget = (self.budgets_usd or {}).get(tenant_id)
        month = usage.month_days(now) if budget is not None else []
        items = self._usage_items(tenant_id, list(dict.fromkeys(query.days + month)))
        view = usage.report(query, items)
        if budget is not None:
            spent = _month_spent_usd(items, month)
            view["budget"] = {"monthly_usd": budget, "month_spent_usd": round(spent, 6),
                              "remaining_usd": round(max(0.0, budget - spent), 6)}
        return view

    def month_spent_usd(self, tenant_id: str) -> float:
        """What the tenant has spent this month, from its usage counters."""
        month = usage.month_days(self.context.clock_ms())
        return _month_spent_usd(self._usage_items(tenant_id, month), month)

    def _usage_items(self, tenant_id: str, days: list[str]) -> dict[str, dict[str, int]]:
        return self.context.usage.read(tenant_id, days) if self.context.usage is not None else {}

    def capacity(self, *, tenant_id: str) -> dict[str, Any]:
        """``GET /v1/capacity``: each model budget (its limits, what is left, how much is in use, the caller's own
        recent share) and the caller's own jobs waiting for it; never another tenant's."""
        if self.pacer is None:
            return {"admission": "off", "budgets": [], "waiting": None}
        config = self.pacer.config
        models = [self.model_id, *(family for family in config.limits if family != ANY_FAMILY)]
        budgets = []
        for budget in self.pacer.snapshot(models):
            use = budget.pop("tenant_use")
            total = sum(use.values())
            budget["your_recent_share"] = round(use.get(tenant_id, 0.0) / total, 4) if total else 0.0
            budget["blocked_until"] = iso(budget.pop("blocked_until_ms"))
            budgets.append(budget)
        queued, _ = self.context.store.list_jobs(tenant_id, status=JobStatus.QUEUED, limit=MAX_SCAN_PAGE, after=None)
        waiting = [job for job in queued if job.model_wait is not None and job.model_wait.capacity]
        next_grant = min((job.model_wait.next_attempt_at or 0 for job in waiting if job.model_wait), default=None)
        return {
            "admission": "on", "budgets": budgets,
            "waiting": {"jobs": len(waiting), "of_queued_jobs_seen": len(queued), "next_grant_expected_at": iso(next_grant),
                        "waited_ms": sum(job.capacity_wait_ms for job in waiting)},
        }


def _month_spent_usd(items: dict[str, dict[str, int]], month: list[str]) -> float:
    """What a tenant has spent this month, from its day ``items`` (read for ``month``'s days, maybe more)."""
    return usage.month_cost_micro_usd(items[day] for day in month if day in items) / 1_000_000


def encode_cursor(cursor: Cursor) -> str:
    raw = json.dumps([cursor.created_at, cursor.job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None) -> Cursor | None:
    """The cursor a previous page returned; InvalidInputError for anything else."""
    if text is None:
        return None
    if len(text) > _MAX_CURSOR_CHARS:
        raise InvalidInputError("cursor", "is not a cursor this API returned")
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError, RecursionError):
        raise InvalidInputError("cursor", "is not a cursor this API returned") from None
    # Only what encode_cursor makes: an epoch-ms time (DynamoDB must take it as a key) and a job's id.
    if (not isinstance(created_at, int) or isinstance(created_at, bool) or not 0 <= created_at < 10**15
            or not isinstance(job_id, str) or not well_formed_job_id(job_id)):
        raise InvalidInputError("cursor", "is not a cursor this API returned")
    return Cursor(created_at, job_id)


_MAX_CURSOR_CHARS = 128  # encode_cursor's are under 120
