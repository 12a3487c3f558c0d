"""Usage per tenant: counters added by each job's terminal write, read back by day, task or lane.

A finished job adds its :class:`UsageEntry` (the tokens and cost of all its attempts) to one counter item per
tenant and UTC day (``ADD``s: no read, no scan) in the same atomic write as its conditional terminal write
(``JobStore.save(..., usage=...)``): exactly once, by the writer that won, whatever dies around it.
``GET /v1/usage`` reads the days asked for (at most ``MAX_DAYS``), and a tenant's monthly budget is checked against
the month's days (:func:`month_days`). Counters are integers: cost in micro-dollars, so that sums are exact to the
cent however many jobs they add up.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jobcore.errors import InvalidInputError
from jobcore.model import Job
from jobcore.validation import reject_unknown

# What one job adds (besides one to ``jobs_<outcome>``); cache writes are cache_creation_input_tokens.
COUNTERS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "model_calls",
            "compute_ms", "cost_micro_usd")
GROUPS = ("day", "task", "lane")
MAX_DAYS = 92  # one query reads at most this many day items (one BatchGetItem of 100 keys)
_SEPARATOR = "|"  # in a counter's name: task|lane|counter (task names have dots, never bars)


@dataclass(frozen=True, kw_only=True)
class UsageEntry:
    """What one finished job adds to its tenant's counters of ``day`` (UTC, ``YYYY-MM-DD``)."""

    tenant_id: str
    day: str
    task: str
    lane: str
    counts: Mapping[str, int]

    def attributes(self) -> dict[str, int]:
        """The counter names of this entry (``task|lane|counter``) and what it adds to each."""
        return {_SEPARATOR.join((self.task, self.lane, name)): value for name, value in self.counts.items() if value}


def entry_for(job: Job) -> UsageEntry:
    """What a terminal job adds: one job of its outcome, its tokens and calls, the time it ran, its actual cost."""
    finished = job.finished_at if job.finished_at is not None else job.updated_at
    ran_ms = finished - job.started_at if job.started_at is not None else 0
    actual = (job.cost or {}).get("actual") or {}
    counts = {
        f"jobs_{job.status.value}": 1,
        "input_tokens": job.usage.input_tokens, "output_tokens": job.usage.output_tokens,
        "cache_read_input_tokens": job.usage.cache_read_input_tokens,
        "cache_creation_input_tokens": job.usage.cache_creation_input_tokens,
        "model_calls": job.usage.model_calls, "compute_ms": max(0, ran_ms),
        "cost_micro_usd": micro_usd(float(actual.get("total") or 0.0)),
    }
    return UsageEntry(tenant_id=job.tenant_id, day=day_of(finished), task=job.task, lane=job.lane, counts=counts)


def micro_usd(usd: float) -> int:
    return round(usd * 1_000_000)


def day_of(epoch_ms: int) -> str:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC).date().isoformat()


def days(first: dt.date, last: dt.date) -> list[str]:
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def month_days(now_ms: int) -> list[str]:
    """The days of the current UTC month up to today: what a monthly budget counts."""
    today = dt.date.fromisoformat(day_of(now_ms))
    return days(today.replace(day=1), today)


@dataclass(frozen=True)
class UsageQuery:
    first: dt.date
    last: dt.date
    group_by: str = "day"

    @property
    def days(self) -> list[str]:
        return days(self.first, self.last)


def parse_query(params: Mapping[str, str] | None, *, now_ms: int) -> UsageQuery:
    """``?from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=day|task|lane``: by default this month so far, by day."""
    params = dict(params or {})
    reject_unknown(params, {"from", "to", "group_by"}, "query")
    today = dt.date.fromisoformat(day_of(now_ms))
    last = _date(params.get("to"), "to", default=today)
    first = _date(params.get("from"), "from", default=last.replace(day=1))
    if first > last:
        raise InvalidInputError("from", f"must not be after to ({last.isoformat()})")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidInputError("from", f"the range may span at most {MAX_DAYS} days; it spans {(last - first).days + 1}")
    group_by = params.get("group_by", "day")  # given empty: not one of them, refused as any other
    if group_by not in GROUPS:
        raise InvalidInputError("group_by", f"must be one of {', '.join(GROUPS)}")
    return UsageQuery(first, last, group_by)


def _date(raw: str | None, name: str, *, default: dt.date) -> dt.date:
    if raw is None:  # absent; given empty (``?to=``), it is not a date
        return default
    try:
        return dt.date.fromisoformat(raw) if len(raw) == 10 else _bad(name)
    except ValueError:
        return _bad(name)


def _bad(name: str) -> dt.date:
    raise InvalidInputError(name, "must be a date, YYYY-MM-DD (UTC)")


def report(query: UsageQuery, items: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """The usage view: ``items`` are the tenant's counter items by day (missing days used nothing)."""
    groups: dict[str, dict[str, int]] = {}
    total: dict[str, int] = {}
    for day in query.days:
        for name, value in (items.get(day) or {}).items():
            task, lane, counter = name.split(_SEPARATOR, 2)
            key = {"day": day, "task": task, "lane": lane}[query.group_by]
            row = groups.setdefault(key, {})
            row[counter] = row.get(counter, 0) + int(value)
            total[counter] = total.get(counter, 0) + int(value)
    return {
        "from": query.first.isoformat(), "to": query.last.isoformat(), "group_by": query.group_by,
        "groups": [{query.group_by: key, **_row(groups[key])} for key in sorted(groups)],
        "total": _row(total),
    }


def month_cost_micro_usd(items: Iterable[Mapping[str, int]]) -> int:
    """A month's cost so far from its day items."""
    return sum(int(value) for item in items for name, value in item.items() if name.endswith(_SEPARATOR + "cost_micro_usd"))


def _row(counts: Mapping[str, int]) -> dict[str, Any]:
    jobs = {name.removeprefix("jobs_"): value for name, value in sorted(counts.items()) if name.startswith("jobs_")}
    return {
        "jobs": {"total": sum(jobs.values()), **jobs},
        "tokens": {"input": counts.get("input_tokens", 0), "output": counts.get("output_tokens", 0),
                   "cache_read": counts.get("cache_read_input_tokens", 0),
                   "cache_write": counts.get("cache_creation_input_tokens", 0)},
        "model_calls": counts.get("model_calls", 0),
        "compute_s": round(counts.get("compute_ms", 0) / 1000, 3),
        "cost_usd": round(counts.get("cost_micro_usd", 0) / 1_000_000, 6),
    }


_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # an API key's id, as API Gateway gives it


def tenant_budgets(raw: Mapping[str, Any]) -> dict[str, float]:
    """Monthly budgets in USD by tenant, checked (the configuration's ``tenant_budgets_usd``): ValueError saying what is wrong."""
    budgets = {}
    for tenant, value in raw.items():
        if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
            raise ValueError(f"{tenant!r} is not a tenant (an API key id: letters, digits, '_', '-')")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10_000_000:
            raise ValueError(f"{tenant}: {value!r} must be a number of USD from 0 to 10,000,000")
        budgets[tenant] = float(value)
    return budgets
