"""The stand-in in a process of its own, driven over its HTTP control routes.

The real API does not share a CPU with the pipeline. In this process the stand-in's threads share one interpreter
lock with moto and the local API Gateway; under a few hundred queued jobs moto's work held the lock long enough that a
1 s answer took 3 to 9 s, and every model call measured the local AWS's load instead of the model's latency. The
capacity bench runs the stand-in this way (``Options.standin_process``); tests keep the in-process one, whose
recorded requests they read.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from local.server_process import ServerProcess
from local.standin.limits import ModelLimits

START_TIMEOUT_S = 30.0


class StandInProcess(ServerProcess):
    """``python -m local.claude_standin`` on a free port: ``base_url``, ``stats()``, ``configure()``, ``set_limits()``,
    ``reset()`` and ``stop()`` as :class:`local.standin.server.ClaudeStandIn` has them (its recorded requests stay
    in its process)."""

    def __init__(self, *, latency_s: float = 0.0, batch_delay_s: float = 1.0, limits: ModelLimits | None = None,
                 env: dict[str, str] | None = None):
        args = ["--port", "0", "--latency", str(latency_s), "--batch-delay", str(batch_delay_s)]
        if limits is not None:
            args += ["--model-limits", ",".join(f"{name}={value}" for name, value in limits.as_dict().items()
                                                if value is not None)]
        super().__init__("local.claude_standin", args, env=env, name="stand-in")

    @property
    def base_url(self) -> str:
        return self.url

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_standin/stats")

    def reset(self) -> None:
        self._call("POST", "/_standin/reset", {})

    def set_limits(self, limits: ModelLimits | None) -> None:
        self._call("POST", "/_standin/control", {"limits": None if limits is None else limits.as_dict()})

    def configure(self, latency_s: float | None = None, fail_status: int | None = None, fail_times: int | None = None,
                  hang_s: float | None = None, fail_for_s: float | None = None, retry_after: float | None = None,
                  provider: str = "anthropic") -> None:
        """The failures, latency and hang of :meth:`ClaudeStandIn.configure` (batch settings are not carried)."""
        control: dict[str, Any] = {"provider": provider}
        if latency_s is not None:
            control["latency_s"] = latency_s
        if hang_s is not None:
            control["hang_s"] = hang_s
        if fail_status is not None:
            control["fail"] = {key: value for key, value in (("status", fail_status), ("times", fail_times),
                                                             ("for_s", fail_for_s), ("retry_after", retry_after))
                               if value is not None}
        self._call("POST", "/_standin/control", control)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=START_TIMEOUT_S) as response:
            return json.loads(response.read() or b"null")
