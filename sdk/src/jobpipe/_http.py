"""One JSON request to the API, with timeouts on every call and retries only where they are safe.

The standard library's ``http.client``: a connect timeout for the TCP (and TLS) handshake, then a read
timeout for each wait on the server (a long poll adds its own wait to it). A request is retried only
when the caller says it is safe (GET, cancel, a create that carries an Idempotency-Key), on a lost
connection, a timeout, 429, 500, 502, 503, 504 or 409 ``idempotency_in_progress``, with exponential
back-off and full jitter, never sooner than the answer's ``Retry-After``. A connection that could not
even be opened is retried for any request: nothing was sent.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from jobpipe._version import __version__
from jobpipe.errors import APIConnectionError, APIError, APITimeoutError, JobpipeError, from_response

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Error types that come with a retryable status but that a retry cannot fix.
NOT_RETRIED_TYPES = frozenset({"model_unavailable", "misconfigured"})
RETRIED_TYPES = frozenset({"idempotency_in_progress"})


@dataclass(frozen=True)
class Timeout:
    """Seconds to open a connection (``connect``) and to wait for each part of the answer (``read``).
    The default read timeout is above API Gateway's own 29 s limit, so a slow inline job is not cut off."""

    connect: float = 5.0
    read: float = 35.0

    @classmethod
    def of(cls, value: float | Timeout | None) -> Timeout:
        if value is None:
            return cls()
        if isinstance(value, Timeout):
            return value
        return cls(connect=float(value), read=float(value))


@dataclass(frozen=True)
class Retries:
    """How many times a safe request is sent again, and how long to wait between tries: a random delay up
    to ``backoff_s * 2**n`` (at most ``max_backoff_s``), or the ``Retry-After`` asked for if longer (up to
    ``max_retry_after_s``; an answer asking for more is not retried)."""

    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 30.0


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    data: Any


class Transport:
    def __init__(self, base_url: str, api_key: str, *, timeout: Timeout, retries: Retries,
                 sleep: Callable[[float], None] = time.sleep, jitter: Callable[[float, float], float] = random.uniform):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JobpipeError(f"the API URL must be an absolute http(s) URL, not {base_url!r}")
        self.base_url = base_url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")  # the stage (/dev) of an execute-api URL, a base path mapping
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self._sleep = sleep
        self._jitter = jitter
        self._tls = ssl.create_default_context() if self._https else None

    def url(self, path: str) -> str:
        return self._origin + self._prefix + path

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
                headers: Mapping[str, str] | None = None, retry: bool, extra_read_s: float = 0.0) -> Response:
        """The answer to ``method path`` (2xx: its JSON; else the error's exception). ``retry``: whether the
        request may be sent again after it may have reached the server; ``extra_read_s``: seconds the server
        is asked to wait before answering (a long poll), added to the read timeout."""
        target = self._prefix + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            target += "?" + urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        sent_headers = {"accept": "application/json", "user-agent": f"jobpipe-python/{__version__}",
                        "x-api-key": self._api_key, **(headers or {})}
        if data is not None:
            sent_headers["content-type"] = "application/json"
        attempt = 0
        while True:
            try:
                response = self._send(method, target, data, sent_headers, read_s=self.timeout.read + extra_read_s)
            except _NotConnected as failure:
                error: JobpipeError = failure.error
                retry_after = None
                may_retry = True  # nothing reached the server
            except APIConnectionError as failure:
                error, retry_after, may_retry = failure, None, retry
            else:
                if 200 <= response.status < 300:
                    return response
                error = from_response(response.status, response.data, response.headers,
                                      retry_after=retry_after_s(response.headers.get("retry-after")))
                retry_after = error.retry_after if isinstance(error, APIError) else None
                may_retry = retry and _retryable(response.status, error)
            error.attempts = attempt + 1
            too_late = retry_after is not None and retry_after > self.retries.max_retry_after_s
            if not may_retry or too_late or attempt >= self.retries.max_retries:
                raise error
            delay = self._jitter(0, min(self.retries.max_backoff_s, self.retries.backoff_s * 2 ** attempt))
            if retry_after is not None:
                delay = max(delay, retry_after)
            attempt += 1
            self._sleep(delay)

    def _send(self, method: str, target: str, data: bytes | None, headers: dict[str, str], *, read_s: float) -> Response:
        where = f"{method} {self._origin}{target}"
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout.connect, context=self._tls)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout.connect)
        try:
            try:
                connection.connect()
            except TimeoutError:
                raise _NotConnected(APITimeoutError(
                    f"{where}: could not connect within {self.timeout.connect:g} s (connect timeout); "
                    "is the API URL right and the API up?", url=self._origin + target)) from None
            except OSError as failure:  # refused, DNS, TLS (ssl.SSLError is an OSError)
                raise _NotConnected(APIConnectionError(
                    f"{where}: could not connect: {failure}", url=self._origin + target)) from None
            assert connection.sock is not None
            connection.sock.settimeout(read_s)
            try:
                connection.request(method, target, body=data, headers=headers)
                answer = connection.getresponse()
                raw = answer.read()
            except TimeoutError:
                raise APITimeoutError(
                    f"{where}: no answer within {read_s:g} s (read timeout); the API accepted the connection "
                    "but did not respond", url=self._origin + target) from None
            except (OSError, http.client.HTTPException) as failure:
                raise APIConnectionError(f"{where}: the connection failed: {type(failure).__name__}: {failure}",
                                         url=self._origin + target) from None
        finally:
            connection.close()
        answer_headers = {k.lower(): v for k, v in answer.getheaders()}
        if not 200 <= answer.status < 300:
            return Response(answer.status, answer_headers, raw)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            raise APIError(f"{where}: answered {answer.status} with a body that is not JSON", status_code=answer.status,
                           headers=answer_headers) from None
        return Response(answer.status, answer_headers, parsed)


class _NotConnected(Exception):
    """No connection was opened, so the request never left: always safe to retry."""

    def __init__(self, error: APIConnectionError):
        super().__init__(str(error))
        self.error = error


def _retryable(status: int, error: JobpipeError) -> bool:
    type_ = getattr(error, "type", None)
    if type_ in RETRIED_TYPES:
        return True
    return status in RETRY_STATUSES and type_ not in NOT_RETRIED_TYPES


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
