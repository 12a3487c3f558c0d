"""What an EventBridge schedule does for a Lambda, as a loop of a local process: one pass every ``every_s``
seconds until the stop event is set; a failed pass is logged and the next one goes on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any


def every(stop: threading.Event, every_s: float, run_pass: Callable[[], Any], *, log: logging.Logger, what: str,
          level: int = logging.INFO) -> None:
    """Call ``run_pass`` every ``every_s`` s until ``stop``; a truthy result (a report) is logged at ``level``."""
    while not stop.wait(every_s):
        try:
            report = run_pass()
        except Exception:  # noqa: BLE001 - a failed pass is logged; the next one tries again
            log.exception("%s failed", what)
            continue
        if report:
            log.log(level, "%s: %s", what, report)
