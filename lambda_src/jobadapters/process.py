"""What every long-running process of the pipeline does first (the worker; locally, the dispatcher, the
sweeper and ``local.serve``): log to stderr at LOG_LEVEL (the worker as JSON, as the Lambdas log), and turn
SIGTERM/SIGINT into an event its loop watches."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The wakeup sockets' writers, open for the life of the process: signals keep arriving after the stop event is
# set (a burst, a second ``kill``), and a closed wakeup fd turns each of them into an error report in the main
# thread, or, once its number is reused, a write into some other file; that is how a stream of stop signals
# used to hang a stopping process.
_WAKEUP_WRITERS: list[socket.socket] = []


def start_process(*, json_service: str | None = None) -> threading.Event:
    """Logging configured (with ``json_service``: a JSON object a line, :class:`JsonFormatter`, naming that service);
    the event is set when the process is asked to stop (ECS sends SIGTERM)."""
    level = os.environ.get("LOG_LEVEL", "INFO")
    if json_service is None:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter(json_service))
        logging.basicConfig(level=level, handlers=[handler])
    return stop_on_signals()


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON with the keys Powertools' Logger writes in the Lambdas (``level``, ``location``,
    ``message``, ``timestamp``, ``service``; ``exception`` and ``exception_name`` with a traceback), plus ``logger``,
    so one CloudWatch Logs Insights query reads a worker's log and a function's alike. The standard library's: the
    worker image does not ship Powertools."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": record.levelname, "location": f"{record.funcName}:{record.lineno}", "message": record.getMessage(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "service": self.service, "logger": record.name,
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = self.formatException(record.exc_info)
            entry["exception_name"] = record.exc_info[0].__name__
        if record.stack_info:
            entry["stack_trace"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def stop_on_signals() -> threading.Event:
    """An event set once SIGTERM or SIGINT arrives. Call from the main thread.

    A Python signal handler runs in the main thread between two bytecodes, possibly while that thread holds
    the very lock ``Event.set`` needs (inside ``stop.wait()``, or inside a first handler when a second signal
    follows: ``timeout`` and process-group kills send two). Setting the event there deadlocks the process.
    So the handler does nothing; the interpreter's C handler writes the signal number to a socket
    (``signal.set_wakeup_fd``, no Python code, no lock) and a thread of its own reads it and sets the event.
    """
    stop = threading.Event()
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    _WAKEUP_WRITERS.append(writer)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _noted)
    threading.Thread(target=_watch, args=(reader, stop), name="signals", daemon=True).start()
    return stop


def _noted(signum: int, frame: object) -> None:
    """The Python-level handler: nothing (the wakeup socket carries the signal to the watcher thread)."""


def _watch(reader: socket.socket, stop: threading.Event) -> None:
    """Reads the wakeup socket for the life of the process, after the event is set too (see _WAKEUP_WRITERS)."""
    wanted = {int(signum) for signum in STOP_SIGNALS}
    while True:
        received = reader.recv(64)
        if not received:
            return
        if wanted & set(received):
            stop.set()
