"""What every long-running process of the pipeline does first (the worker; locally, the dispatcher and
the sweeper): log to stderr at LOG_LEVEL, and turn SIGTERM/SIGINT into an event its loop watches."""

from __future__ import annotations

import logging
import os
import signal
import threading


def start_process() -> threading.Event:
    """Logging configured; the event is set when the process is asked to stop (ECS sends SIGTERM)."""
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
