"""WebhookNotifier over HTTP: a signed POST (Standard Webhooks) of the finished job.

Delivery must never slow or fail a job, so the worker sends from a background pool and every error
is logged, not raised. Retries with back-off and a delivery log come with the webhook dispatcher
(its own queue); the event id is already stable, so receivers can dedupe today.

Outbound requests go to addresses a client chose: they are refused when the host resolves to a
loopback, private, link-local (cloud metadata) or otherwise non-public address, unless the local
runtime allows it, and redirects are never followed.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import logging
import socket
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any
from urllib.parse import urlsplit

from jobcore import webhooks
from jobcore.model import Job

log = logging.getLogger(__name__)


class RefusedTargetError(ValueError):
    """The webhook URL points somewhere the pipeline must not send requests to."""


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever DNS answers next (rebinding)."""

    def __init__(self, host: str, port: int | None, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # The certificate names the host. HTTPSConnection keeps its SSL context in the private _context.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class HttpWebhookNotifier:
    def __init__(
        self,
        *,
        render: Callable[[Job], dict[str, Any]],
        secret: Callable[[], str | None],
        clock_ms: Callable[[], int],
        executor: Executor | None = None,
        allow_private_targets: bool = False,
        timeout_s: float = 5.0,
    ):
        self._render = render
        self._secret = secret
        self._clock_ms = clock_ms
        self._executor = executor
        self._allow_private = allow_private_targets
        self._timeout_s = timeout_s

    def notify(self, job: Job) -> None:
        if not webhooks.wants(job):
            return
        if self._executor is None:
            self._deliver(job)
        else:
            self._executor.submit(self._deliver, job)

    def _deliver(self, job: Job) -> None:
        try:
            status = self._post(job)
            log.info("webhook for job %s (%s) answered %s", job.job_id, webhooks.event_type(job), status)
        except Exception as error:  # noqa: BLE001 - a receiver's failure never reaches the job
            log.warning("webhook for job %s not delivered: %s", job.job_id, error)

    def _post(self, job: Job) -> int:
        """One POST; http.client follows no redirects, so a 3xx is reported as the failure it is."""
        if job.webhook is None:
            raise ValueError(f"job {job.job_id} has no webhook")
        parts = urlsplit(job.webhook.url)
        host = parts.hostname or ""
        address = resolve(host, parts.port, allow_private=self._allow_private)
        now_ms = self._clock_ms()
        body = json.dumps(webhooks.payload(self._render(job), job, timestamp_ms=now_ms)).encode()
        headers = {"content-type": "application/json", "user-agent": "hybrid-jobs-webhooks/1"}
        headers.update(sign(self._secret(), webhooks.event_id(job), now_ms // 1000, body))
        connection_type = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
        connection = connection_type(host, parts.port, address=address, timeout=self._timeout_s)
        try:
            connection.request("POST", parts.path + (f"?{parts.query}" if parts.query else "") or "/", body=body, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()


def sign(secret: str | None, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers; unsigned (id and timestamp only) when no secret is configured."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp_s)}
    if secret:
        from standardwebhooks import Webhook

        when = dt.datetime.fromtimestamp(timestamp_s, tz=dt.UTC)
        headers["webhook-signature"] = Webhook(secret).sign(msg_id, when, body.decode())
    return headers


def resolve(host: str, port: int | None, *, allow_private: bool) -> str:
    """The one address to connect to; RefusedTargetError if any answer is not a public address."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise RefusedTargetError(f"cannot resolve {host!r}: {error}") from None
    addresses = [str(info[4][0]) for info in answers]
    if not allow_private:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not ip.is_global:
                raise RefusedTargetError(f"{host!r} resolves to the non-public address {ip}")
    return addresses[0]
