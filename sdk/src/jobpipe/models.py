"""What the API returns, as light wrappers over its JSON: a :class:`Job` is the dict the API sent (so
``json.dumps(job)`` prints it whole) with attributes for the fields most code reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobpipe.errors import APIError, error_class

# A job in one of these states will not change again.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "expired", "timed_out"})


class Job(dict[str, Any]):
    """A job as ``GET /v1/jobs/{id}`` shows it; every field is also reachable as ``job["..."]``."""

    @property
    def id(self) -> str:
        return str(self["id"])

    @property
    def task(self) -> str | None:
        return self.get("task")

    @property
    def status(self) -> str:
        return str(self.get("status"))

    @property
    def terminal(self) -> bool:
        """Whether the job is finished (succeeded, failed, canceled, expired or timed out)."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def result(self) -> Any:
        """The result when the API inlined it (up to 256 KB); else None: see ``result_url``."""
        return self.get("result")

    @property
    def result_url(self) -> str | None:
        return self.get("result_url")

    @property
    def error(self) -> dict[str, Any] | None:
        """``{type, message}`` of the job's last failure, if any."""
        return self.get("error")

    @property
    def lane(self) -> str | None:
        route = self.get("route") or {}
        return route.get("lane")

    @property
    def route_reason(self) -> str | None:
        route = self.get("route") or {}
        return route.get("reason")

    def raise_for_status(self) -> Job:
        """The job itself if it succeeded or is still going; else the exception class of its ``error.type``
        (a canceled, expired or timed-out job without one raises by its status)."""
        if not self.terminal or self.succeeded:
            return self
        error = self.error or {}
        type_ = error.get("type") or self.status
        cls = error_class(type_)
        message = error.get("message") or f"job {self.id} {self.status}"
        raise cls(message, type=type_ if cls is APIError else None, job_id=self.id, body=dict(self))


@dataclass(frozen=True)
class Page:
    """One page of ``GET /v1/jobs``: its jobs (newest first) and the cursor of the next (None at the end)."""

    jobs: list[Job]
    next_cursor: str | None
