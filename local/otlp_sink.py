"""An OTLP/HTTP traces endpoint on 127.0.0.1 that takes every export (200, an empty protobuf answer) and keeps what it
was sent: the collector of the cold-start bench's tracing runs and of the X-Ray exporter's signing test."""

from __future__ import annotations

from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from local.listen import BurstHTTPServer


@dataclass
class OtlpSink:
    """``start()`` it; ``url`` is its traces endpoint; ``received``: each request's path, headers (lower-cased) and body."""

    received: list[dict[str, Any]] = field(default_factory=list)
    _server: BurstHTTPServer | None = None

    def start(self) -> OtlpSink:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = BurstHTTPServer(("127.0.0.1", 0), Handler)
        self._server.serve_in_thread("otlp-sink")
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "OtlpSink is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
