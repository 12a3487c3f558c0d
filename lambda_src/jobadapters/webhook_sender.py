"""WebhookSender over HTTP: one signed POST (Standard Webhooks) of an event's body, as an attempt result.

Outbound requests go to addresses a client chose, so every attempt resolves the host again (DNS can
change between attempts) and refuses a loopback, private, link-local (cloud metadata) or otherwise
non-public address (the policy is :mod:`jobcore.addresses`, the same one submission applies to a
URL's literal host), then connects to the very address it checked (no second lookup to rebind).
Redirects are never followed: a 3xx is a failed attempt. Only the local runtime may reach loopback,
where its receivers listen; every other private target stays refused there too.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from jobcore.addresses import refusal
from jobcore.deliveries import AttemptResult
from jobcore.validation import quoted

USER_AGENT = "hybrid-jobs-webhooks/1"
_READ_LIMIT = 64 * 1024  # of a receiver's answer: we need its status, not its body


class RefusedTargetError(ValueError):
    """The webhook URL points somewhere the pipeline must not send requests to."""


class UnresolvableError(ValueError):
    """The webhook host has no address (DNS)."""


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


class HttpWebhookSender:
    def __init__(self, *, secret: Callable[[], str | None], clock_ms: Callable[[], int], allow_loopback: bool = False):
        self._secret = secret
        self._clock_ms = clock_ms
        self._allow_loopback = allow_loopback

    def post(self, url: str, *, event_id: str, body: bytes, timeout_s: float) -> AttemptResult:
        started = time.monotonic()

        def result(status: int | None, error: str | None, detail: str, retry_after_s: float | None = None) -> AttemptResult:
            duration_ms = int((time.monotonic() - started) * 1000)
            return AttemptResult(status=status, duration_ms=duration_ms, error=error, detail=detail, retry_after_s=retry_after_s)

        try:
            status, retry_after = self._post(url, event_id=event_id, body=body, timeout_s=timeout_s)
        except UnresolvableError as error:
            return result(None, "dns", str(error))
        except RefusedTargetError as error:
            return result(None, "blocked", str(error))
        except TimeoutError:
            return result(None, "timeout", f"no answer within {timeout_s:g} s")
        except ConnectionRefusedError:
            return result(None, "refused", "connection refused")
        except ssl.SSLError as error:
            return result(None, "tls", str(error))
        except (OSError, http.client.HTTPException) as error:
            return result(None, "connection", f"{type(error).__name__}: {error}")
        if time.monotonic() - started > timeout_s:
            return result(status, "timeout", f"answered {status} after more than {timeout_s:g} s")
        if 300 <= status < 400:
            return result(status, "redirect", f"answered {status}; redirects are not followed", retry_after)
        if not 200 <= status < 300:
            return result(status, "http", f"answered {status}", retry_after)
        return result(status, None, "")

    def _post(self, url: str, *, event_id: str, body: bytes, timeout_s: float) -> tuple[int, float | None]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        address = resolve(host, parts.port, allow_loopback=self._allow_loopback)
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        headers.update(sign(self._secret(), event_id, self._clock_ms() // 1000, body))
        connection_type = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
        connection = connection_type(host, parts.port, address=address, timeout=timeout_s)
        # The socket timeout bounds each read; this bounds the whole attempt (a receiver that trickles
        # its answer a byte at a time would otherwise hold it far past the timeout).
        cut_off = threading.Event()
        watchdog = threading.Timer(timeout_s, _abort, args=(connection, cut_off))
        watchdog.start()
        try:
            connection.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers)
            response = connection.getresponse()
            response.read(_READ_LIMIT)
            return response.status, retry_after_s(response.getheader("retry-after"), now=time.time())
        except (OSError, http.client.HTTPException):
            if cut_off.is_set():
                raise TimeoutError from None
            raise
        finally:
            watchdog.cancel()
            connection.close()


def _abort(connection: http.client.HTTPConnection, cut_off: threading.Event) -> None:
    """Unblock a read in progress on ``connection`` from another thread."""
    cut_off.set()
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


def sign(secret: str | None, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers; unsigned (id and timestamp only) when no secret is configured."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp_s)}
    if secret:
        from standardwebhooks import Webhook

        when = dt.datetime.fromtimestamp(timestamp_s, tz=dt.UTC)
        headers["webhook-signature"] = Webhook(secret).sign(msg_id, when, body.decode())
    return headers


def retry_after_s(value: str | None, *, now: float) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def resolve(host: str, port: int | None, *, allow_loopback: bool) -> str:
    """The one address to connect to; RefusedTargetError if any answer is not a public address
    (loopback only when ``allow_loopback``), UnresolvableError if there is none."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnresolvableError(f"cannot resolve {quoted(host)}: {error}") from None
    addresses = [str(info[4][0]) for info in answers]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        reason = refusal(ip, allow_loopback=allow_loopback)
        if reason is not None:
            raise RefusedTargetError(f"{quoted(host)} resolves to the non-public address {ip} ({reason})")
    return addresses[0]
