"""Fixtures of the SDK and CLI tests (the local pipeline and its stand-in are tests/conftest.py's): a
receiver that keeps each webhook's raw request, and tiny scripted HTTP servers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from local.listen import BurstHTTPServer


class Scripted:
    """An HTTP server on 127.0.0.1 that answers each request with the next of ``answers``: ``(status,
    body, headers)``, or ``"drop"`` to close the connection without answering. Records every request."""

    def __init__(self, answers: list[Any]):
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.delay_s = 0.0  # how long each answer is held (a long poll's)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                server.requests.append({"method": self.command, "path": self.path, "body": body,
                                        "headers": {k.lower(): v for k, v in self.headers.items()}})
                answer = server.answers.pop(0) if len(server.answers) > 1 else server.answers[0]
                if server.delay_s:
                    time.sleep(server.delay_s)
                if answer == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, document, *rest = answer
                headers = rest[0] if rest else {}
                raw = json.dumps(document).encode()
                self.send_response(status)
                for name, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = BurstHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._server.serve_in_thread("scripted")

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[Scripted] = []

    def start(*answers: Any) -> Scripted:
        servers.append(Scripted(list(answers)))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


class Silent:
    """A server that accepts connections and never answers (nor closes them); ``accepted`` counts them."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def stop(self) -> None:
        self._closed.set()
        self._socket.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.stop()


class RawReceiver:
    """Keeps every webhook request as it came (body bytes, headers), answering 204."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._arrived:
                    receiver.received.append((body, dict(self.headers.items())))
                    receiver._arrived.notify_all()
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = BurstHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hooks"
        self._server.serve_in_thread("raw-receiver")

    def wait_for(self, job_id: str, timeout_s: float = 60.0) -> tuple[bytes, dict[str, str]]:
        def found() -> tuple[bytes, dict[str, str]] | None:
            return next(((body, headers) for body, headers in self.received if job_id.encode() in body), None)

        with self._arrived:
            if not self._arrived.wait_for(found, timeout_s):
                raise AssertionError(f"no webhook for {job_id} within {timeout_s} s")
            return found()  # type: ignore[return-value]

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def raw_receiver() -> Iterator[RawReceiver]:
    receiver = RawReceiver()
    yield receiver
    receiver.stop()
