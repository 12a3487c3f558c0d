"""Handlers for the local gateway's execution environments to run in their own processes (tests of
``local.gateway.ExecutionEnvironments``): each answers a proxy event by what its body asks. With
``INIT_HOLD`` in the environment, importing this module (an environment's init) waits until that path exists."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def _hold(path: str) -> None:
    while not Path(path).exists():
        time.sleep(0.01)


if os.environ.get("INIT_HOLD"):
    _hold(os.environ["INIT_HOLD"])


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``{"hold": PATH}``: answer once PATH exists; ``{"exit": N}``: the process exits mid-invoke;
    ``{"raise": true}``: the handler raises; else answer at once. Every answer names the process."""
    ask = json.loads(event.get("body") or "{}")
    if "exit" in ask:
        os._exit(ask["exit"])
    if ask.get("raise"):
        raise ValueError("asked to raise")
    if "hold" in ask:
        _hold(ask["hold"])
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"pid": os.getpid(), "remaining_ms": context.get_remaining_time_in_millis()})}
