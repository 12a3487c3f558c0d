"""ECS task scale-in protection, on while the worker holds jobs and off when it is idle.

Queue-depth scaling sees only *visible* messages, so without protection a scale-in can stop a task
in the middle of the jobs it has received. The agent lets protection lapse after ``ExpiresInMinutes``
(so a task that dies protected does not stay protected): a busy worker sets it again every
``renew_after_s``, half its lifetime.
"""

from __future__ import annotations

import json
import logging
import urllib.request

log = logging.getLogger(__name__)


# What the agent accepts for ExpiresInMinutes (48 hours at most).
MAX_EXPIRES_IN_MINUTES = 2880


class TaskProtection:
    def __init__(self, agent_uri: str | None, *, expires_in_minutes: int = 60, timeout_s: float = 2.0):
        """``agent_uri``: ECS_AGENT_URI as ECS sets it; None outside ECS makes this a no-op."""
        if not 1 <= expires_in_minutes <= MAX_EXPIRES_IN_MINUTES:
            raise ValueError(f"expires_in_minutes={expires_in_minutes}: need 1 to {MAX_EXPIRES_IN_MINUTES}")
        self._agent_uri = agent_uri
        self._minutes = expires_in_minutes
        self._timeout_s = timeout_s

    @property
    def renew_after_s(self) -> float:
        """How long after setting protection on a busy worker sets it again: half its lifetime."""
        return self._minutes * 60 / 2

    def set(self, enabled: bool) -> bool:
        """Ask for protection on or off; returns whether the agent accepted. Never raises."""
        if not self._agent_uri:
            return False
        body = json.dumps({"ProtectionEnabled": enabled, "ExpiresInMinutes": self._minutes} if enabled else {"ProtectionEnabled": False})
        request = urllib.request.Request(
            f"{self._agent_uri}/task-protection/v1/state", data=body.encode(), method="PUT",
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return 200 <= response.status < 300
        except OSError as error:
            log.warning("task protection %s failed: %s", "on" if enabled else "off", error)
            return False
