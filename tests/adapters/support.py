"""Helpers shared by the adapter tests: a recording HTTP server, polling, queue counts and jobs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from jobcore.model import Job, JobStatus, Mode, Usage, Webhook
from local.listen import BurstHTTPServer
from tests.fakes import make_lanes

NOW_MS = 1_700_000_000_000
# The lanes the adapter tests run with: a 10 s inline budget, the cpu lane (a 300 s visibility timeout)
# and the GPU lane disabled, so the deployment has one queue (the ``aws`` fixture makes it).
LANES = make_lanes(inline_budget_s=10, cpu_time_limit_s=300, gpu_enabled=False)
MAX_RECEIVES = 5


def wait_until(predicate: Callable[[], Any], *, timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def queue_counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def make_job(job_id: str = "job_1", *, task: str = "documents.summarize", status: JobStatus = JobStatus.QUEUED, **changes: Any) -> Job:
    fields: dict[str, Any] = dict(
        job_id=job_id, tenant_id="tenant-a", task=task, status=status, lane="cpu",
        route_reason="cpu: background task, nobody waits on it", mode=Mode.AUTO, created_at=NOW_MS, updated_at=NOW_MS,
        input={"documents": [{"id": "a", "text": "First document. It is short."}], "max_words": 20, "instructions": ""},
    )
    fields.update(changes)
    return Job(**fields)


def rich_job(job_id: str = "job_rich") -> Job:
    """A job using every kind of value the store must carry: floats, nesting, usage, webhook."""
    return make_job(
        job_id,
        status=JobStatus.SUCCEEDED,
        input={"documents": [{"id": "a", "text": "x"}], "weights": [0.25, 1.5, -3.125], "nested": {"deep": {"ok": True, "none": None}}},
        hints={"expected_duration_s": 12.5, "memory_mb": 2048},
        metadata={"customer": "acme", "empty": ""},
        webhook=Webhook("https://hooks.example.com/jobs", ("succeeded", "failed")),
        started_at=NOW_MS + 10, finished_at=NOW_MS + 2_345, attempts=2,
        result_ref="results/job_rich.json", result_bytes=1234,
        error={"type": "model_unavailable", "message": "model answered 529: Overloaded"},
        usage=Usage(input_tokens=1_000, output_tokens=250, model_calls=3),
        cost={"estimate": {"usd": 0.0123, "lane": "cpu", "breakdown": {"model_usd": 0.01, "compute_usd": 0.0023}}},
        expires_at=NOW_MS // 1000 + 30 * 86_400, version=7,
    )


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RecordingServer:
    """An HTTP server on 127.0.0.1 that records every request and answers as told.

    ``status``/``headers``: the answer; ``script``: statuses answered, in order, to the first requests
    (then ``status``). ``hold``: set → answer at once; clear → wait for it first (a hanging receiver);
    ``stop()`` lets held requests go.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    script: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hold = threading.Event()
        self.hold.set()
        self._lock = threading.Lock()
        self._server = BurstHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> RecordingServer:
        self._server.serve_in_thread("recording")
        return self

    def stop(self) -> None:
        self.hold.set()
        self._server.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with server._lock:
                    server.requests.append(Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status = server.script.pop(0) if server.script else server.status
                server.hold.wait(30)
                self.send_response(status)
                for name, value in server.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
