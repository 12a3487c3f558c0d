"""A webhook receiver on 127.0.0.1 that verifies Standard Webhooks signatures, for the demo and tests.

The URL's query can make it misbehave, per event (``webhook-id``), so a client can try retries by hand:
``?fail=N`` answers 503 to the first N attempts of each event; ``?hang=S`` waits S seconds before
answering. ``attempts`` counts every request per event id, verified or not; ``on_event`` is called with
each verified event (``local.serve`` prints a line).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standardwebhooks import Webhook, WebhookVerificationError

from local.listen import BurstHTTPServer


class WebhookReceiver:
    def __init__(self, secret: str, *, host: str = "127.0.0.1", port: int = 0, status: int = 204,
                 on_event: Callable[[dict[str, Any]], None] | None = None):
        self._verifier = Webhook(secret)
        self.on_event = on_event
        self._status = status
        self.events: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.attempts: Counter[str] = Counter()  # requests per webhook-id
        self._changed = threading.Condition()
        self._host = host
        self._server = BurstHTTPServer((host, port), self._request_handler())

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_port}/hooks"

    def start(self) -> WebhookReceiver:
        self._server.serve_in_thread("webhooks")
        return self

    def stop(self) -> None:
        self._server.stop()

    def wait_for(self, job_id: str, timeout_s: float = 30.0) -> dict[str, Any] | None:
        """The verified event for ``job_id``, waiting up to ``timeout_s``; None if none came."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = next((e for e in self.events if e["data"]["id"] == job_id), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self._changed.wait(left)

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        """The status to answer: 503 while ``?fail=N`` says so, 401 for a bad signature, else the default."""
        query = parse_qs(urlsplit(path).query)
        event_id = headers.get("webhook-id", "")
        with self._changed:
            self.attempts[event_id] += 1
            attempt = self.attempts[event_id]
        hang_s = float(query.get("hang", ["0"])[0])
        if hang_s > 0:
            time.sleep(hang_s)
        if attempt <= int(query.get("fail", ["0"])[0]):
            return 503
        return self._status if self._record(headers, body) else 401

    def _record(self, headers: dict[str, str], body: bytes) -> bool:
        try:
            event = self._verifier.verify(body.decode(), headers)
        except WebhookVerificationError as error:
            self.rejected.append(str(error))
            return False
        verified = event if isinstance(event, dict) else json.loads(body)
        with self._changed:
            self.events.append(verified)
            self._changed.notify_all()
        if self.on_event is not None:
            self.on_event(verified)
        return True

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # as the gateway's: no delayed-ACK stall between headers and body

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(receiver._answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
