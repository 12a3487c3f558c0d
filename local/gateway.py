"""A local stand-in for API Gateway (REST, proxy integration) in front of the router handler.

It turns each HTTP request into the event API Gateway would send, calls the handler in-process and
turns its answer back into HTTP, enforcing what the real gateway enforces: the routes, an API key
(it identifies the tenant; the web console's page and assets need none), the 29 s integration timeout,
and the largest request that can reach the router: API Gateway takes 10 MB, but the Lambda event that
carries a request to the router holds at most 6 MB, so a larger event gets the router's own 413
``payload_too_large`` (:mod:`router.payload`).
A body that is not UTF-8 is passed base64-encoded (``isBase64Encoded``, as API Gateway passes a
binary body), and the router answers 400. Its own answers (403 without a key, 504 past the timeout) are in
the API's error shape with API Gateway's response type as ``error.type``, as the API construct's gateway
responses render them; a method or path that is no route is 404 ``not_found``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from jobcore.limits import API_GATEWAY_MAX_PAYLOAD_BYTES, API_GATEWAY_TIMEOUT_S, MAX_REQUEST_EVENT_BYTES
from local.aws_calls import record_process
from local.listen import BurstHTTPServer
from router import payload as request_size
from router.routes import CONSOLE_ROUTES, ROUTES

INTEGRATION_TIMEOUT_S = float(API_GATEWAY_TIMEOUT_S)
LOCAL_API_KEY = "local-dev-key"
# The router's concurrency locally when the configuration reserves none (Lambda's unreserved pool is an
# account's 1,000): enough for bursts and a few dozen long polls at once, few enough processes for a laptop.
LOCAL_ROUTER_CONCURRENCY = 32
ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("local.gateway")


def match(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The route template (API Gateway's ``resource``) and path parameters, or None."""
    for route_method, template in ROUTES + CONSOLE_ROUTES:
        pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
        found = re.match(pattern, path)
        if found and route_method == method:
            return template, found.groupdict()
    return None


def is_console(path: str) -> bool:
    """Whether ``path`` is one of the console's routes, which a browser loads without an API key (as the API
    construct deploys them)."""
    found = match("GET", urlsplit(path).path)
    return found is not None and ("GET", found[0]) in CONSOLE_ROUTES


def api_key_id(key: str) -> str:
    """A stable id per key, as API Gateway gives one: the tenant."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def to_event(method: str, raw_path: str, headers: dict[str, str], body: str | bytes | None, *,
             stage: str = "local") -> dict[str, Any] | None:
    """The proxy event for a request (None when no route matches). A body given as bytes is passed as
    text when it is UTF-8, else base64-encoded with ``isBase64Encoded``. ValueError for a path that is
    not a URL path."""
    encoded = False
    if isinstance(body, bytes):
        raw = body
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(raw).decode("ascii"), True
    url = urlsplit(raw_path)
    found = match(method, url.path)
    if found is None:
        return None
    resource, params = found
    # As API Gateway: a parameter without a value (``?status=``) is there, empty; the last of repeated ones wins.
    values = parse_qs(url.query, keep_blank_values=True)
    query = {k: v[-1] for k, v in values.items()} or None
    key = headers.get("x-api-key", "")
    now = time.time()
    return {
        "resource": resource, "path": url.path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query, "multiValueQueryStringParameters": values or None,
        "pathParameters": params or None, "stageVariables": None,
        "requestContext": {
            # The local API is served at the root (as a custom domain without a base path would be): the path
            # the client called is the route's, so links need no stage prefix.
            "resourcePath": resource, "httpMethod": method, "path": url.path, "stage": stage,
            "requestId": str(uuid.uuid4()), "requestTimeEpoch": int(now * 1000), "accountId": "000000000000", "apiId": "local",
            "identity": {"apiKey": key, "apiKeyId": api_key_id(key), "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent", "")},
        },
        "body": body, "isBase64Encoded": encoded,
    }


class LambdaContext:
    """Enough of the Lambda context object for Powertools."""

    function_name = "router-local"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:router-local"
    memory_limit_in_mb = 1024

    def __init__(self, timeout_s: float):
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class Throttled(Exception):
    """No execution environment could take the request: the concurrency limit is reached (Lambda throttles the
    invoke), or no environment came free nor started within the wait."""


class EnvironmentFailed(Exception):
    """The execution environment died, or ran past its init or the function's timeout, during the invoke (Lambda:
    a runtime error); later requests get a fresh one."""


class _Undelivered(Exception):
    """The environment was gone before it took the event: the invoke can go to another one."""


class _Environment:
    """One execution environment: a process that imports the handler once (its init, which it reports), then
    serves one event at a time over a socket of its own; its stdout and stderr are its logs."""

    def __init__(self, target: str, timeout_s: float, log: IO[bytes] | None):
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "local.gateway", target, str(theirs.fileno()), str(timeout_s)],
                pass_fds=(theirs.fileno(),), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT if log else None,
            )
        self._connection = Connection(ours.detach())
        self.ready = False
        self.idle_since = 0.0

    def initialize(self, timeout_s: float) -> None:
        """Wait for the init (the handler imported), which Lambda bounds apart from the invoke's timeout."""
        self._receive(timeout_s, "its init")
        self.ready = True

    def invoke(self, event: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        try:
            self._connection.send(event)
        except OSError as error:
            raise _Undelivered from error
        ok, value = self._receive(timeout_s, "the function's timeout")
        if not ok:
            raise RuntimeError(f"the handler raised {value}")
        return value

    def _receive(self, timeout_s: float, limit: str) -> Any:
        # poll is also true at end of file: the process died, and recv says so.
        if not self._connection.poll(timeout_s):
            self.stop()  # Lambda ends an invoke at its limit and resets the environment
            raise EnvironmentFailed(f"ran past {limit} ({timeout_s:g} s)")
        try:
            return self._connection.recv()
        except (EOFError, OSError):
            raise EnvironmentFailed(f"the execution environment exited ({self.process.wait(timeout=5)})") from None

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self._connection.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ExecutionEnvironments:
    """The router as Lambda runs it: execution environments (processes) that each serve one request at a
    time, reused while warm, started on demand up to ``concurrency`` (the function's concurrency limit) and
    stopped after ``idle_s`` unused (``warm`` of them are kept). A request that finds every environment busy
    at the limit is throttled at once (:class:`Throttled`). Below it, one that finds none idle waits
    ``reuse_wait_s`` for one to come free, then starts one (a cold start: its latency includes the init),
    unless ``max_starting`` are starting already: then it waits for an environment to come free or a start
    slot, at most ``wait_s``, else it is throttled too. Neither wait is Lambda's: a cold start here costs a
    process's imports (seconds on a loaded machine), most requests take milliseconds, and a burst of cold
    starts starves a small machine. An environment that dies, or runs past its init or ``timeout_s``, fails
    its own request only (:class:`EnvironmentFailed`)
    and is replaced by the next cold start.

    Powertools' resolver keeps the current request in a class attribute, which is safe in a Lambda
    environment and would mix up concurrent requests (and their tenants) in threads of one process; a
    process per concurrent request is also what Lambda does."""

    def __init__(self, target: str, *, concurrency: int = LOCAL_ROUTER_CONCURRENCY, timeout_s: float = 28.0,
                 init_timeout_s: float = 60.0, warm: int = 1, idle_s: float = 300.0,
                 max_starting: int = max(2, os.cpu_count() or 2), wait_s: float = 10.0, reuse_wait_s: float = 0.2,
                 log_path: Path | None = None, clock: Callable[[], float] = time.monotonic):
        self._target, self._concurrency, self._timeout_s, self._init_timeout_s = target, concurrency, timeout_s, init_timeout_s
        self._warm, self._idle_s, self._max_starting, self._wait_s, self._clock = warm, idle_s, max_starting, wait_s, clock
        self._reuse_wait_s = reuse_wait_s
        self._log = log_path.open("ab") if log_path else None
        self._changed = threading.Condition()
        self._idle: list[_Environment] = []  # the most recently used last
        self._all: set[_Environment] = set()
        self._starting = 0
        self.cold_starts = 0
        for _ in range(min(warm, concurrency)):
            self._idle.append(self._start())

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        while True:
            environment, counted = self._acquire()
            try:
                if not environment.ready:
                    try:
                        environment.initialize(self._init_timeout_s)
                    finally:
                        self._started(counted)
                answer = environment.invoke(event, self._timeout_s)
            except _Undelivered:
                self._discard(environment)  # it died while idle: the event never reached it
                continue
            except EnvironmentFailed as error:
                log.warning("router environment %d failed (%s); a new one replaces it", environment.process.pid, error)
                self._discard(environment)
                raise
            except BaseException:
                self._release(environment)
                raise
            self._release(environment)
            return answer

    @property
    def busy(self) -> int:
        """Environments serving a request now (starting ones included)."""
        with self._changed:
            return len(self._all) - len(self._idle)

    def pids(self) -> list[int]:
        with self._changed:
            return sorted(environment.process.pid for environment in self._all)

    def close(self) -> None:
        with self._changed:
            environments, self._idle = list(self._all), []
            self._all.clear()
            self._changed.notify_all()
        for environment in environments:
            environment.stop()
        if self._log is not None:
            self._log.close()

    def _acquire(self) -> tuple[_Environment, bool]:
        """An idle environment, or a new one (True: it holds a start slot until its init is over)."""
        deadline, reused = time.monotonic() + self._wait_s, False
        with self._changed:
            while True:
                while self._idle:
                    environment = self._idle.pop()
                    if environment.alive():
                        return environment, False
                    log.warning("router environment %d exited (%s) while idle; a new one replaces it",
                                environment.process.pid, environment.process.returncode)
                    self._all.discard(environment)
                if len(self._all) >= self._concurrency:
                    raise Throttled(f"the router is at its concurrency limit ({self._concurrency} requests at once)")
                if not reused and self._all:
                    # Most requests take milliseconds: one coming free soon beats a process's cold start.
                    reused = True
                    self._changed.wait(self._reuse_wait_s)
                    continue
                if self._starting < self._max_starting:
                    self._starting += 1
                    return self._start(), True
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Throttled(f"no router environment came free or started within {self._wait_s:g} s")
                self._changed.wait(left)

    def _start(self) -> _Environment:
        """A cold start (with the lock held, or in ``__init__``): the process starts now and imports the
        handler while the event is on its way."""
        environment = _Environment(self._target, self._timeout_s, self._log)
        self._all.add(environment)
        self.cold_starts += 1
        return environment

    def _started(self, counted: bool) -> None:
        if counted:
            with self._changed:
                self._starting -= 1
                self._changed.notify_all()

    def _release(self, environment: _Environment) -> None:
        now = self._clock()
        environment.idle_since = now
        stale: list[_Environment] = []
        with self._changed:
            if environment not in self._all:
                return  # closed meanwhile
            self._idle.append(environment)
            while len(self._idle) > self._warm and now - self._idle[0].idle_since > self._idle_s:
                stale.append(self._idle.pop(0))
                self._all.discard(stale[-1])
            self._changed.notify_all()
        for old in stale:
            old.stop()

    def _discard(self, environment: _Environment) -> None:
        with self._changed:
            self._all.discard(environment)
            self._changed.notify_all()
        environment.stop()


def _serve(target: str, fd: int, timeout_s: float) -> None:
    """In an execution environment: import the handler ``module:function`` once and say so, then answer each
    event that arrives on the socket ``fd`` until it closes."""
    connection = Connection(fd)
    # The environment records its AWS calls as the router's when the pipeline records them (local.aws_calls),
    # before the handler's import makes its clients.
    record_process("router")
    module, _, name = target.partition(":")
    handler = getattr(importlib.import_module(module), name)
    connection.send("ready")
    while True:
        try:
            event = connection.recv()
        except EOFError:
            return
        try:
            connection.send((True, handler(event, LambdaContext(timeout_s))))
        except Exception as error:  # noqa: BLE001 - as Lambda: the invoke fails, the environment stays
            traceback.print_exc()
            connection.send((False, f"{type(error).__name__}: {error}"))


class _Server(BurstHTTPServer):
    """API Gateway accepts bursts (local.listen)."""


class Gateway:
    def __init__(self, handler: Callable[[dict, Any], dict], *, host: str = "127.0.0.1", port: int = 0, require_key: bool = True):
        self._handler = handler
        self._require_key = require_key
        self._host = host
        self._server = _Server((host, port), self._request_handler())

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> Gateway:
        self._server.serve_in_thread("gateway")
        return self

    def stop(self) -> None:
        self._server.stop()
        close = getattr(self._handler, "close", None)
        if close is not None:
            close()

    def invoke(self, method: str, path: str, headers: dict[str, str], body: str | bytes | None) -> tuple[int, dict[str, str], bytes]:
        if self._require_key and not headers.get("x-api-key") and not is_console(path):
            return _api_error(403, "INVALID_API_KEY", "Forbidden: send your API key in the x-api-key header")
        try:
            event = to_event(method, path, headers, body)
        except ValueError:
            return _api_error(400, "bad_request", "the request's path is not a valid URL path")
        if event is None:
            return _api_error(404, "not_found", f"no route {method} {urlsplit(path).path[:200]}")
        if request_size.too_large(event):  # Lambda would refuse the invocation: answer as the router does
            return request_size.STATUS, {"content-type": "application/json"}, json.dumps(request_size.error_body()).encode()
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["answer"] = self._handler(event, LambdaContext(60.0))
            except Throttled as error:
                outcome["throttled"] = error
            except Exception:  # noqa: BLE001 - API Gateway answers 502 for a failed invoke; the log says why
                log.exception("the router's invoke failed")

        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        worker.join(INTEGRATION_TIMEOUT_S)
        if worker.is_alive():
            return _api_error(504, "INTEGRATION_TIMEOUT", "Endpoint request timed out (API Gateway's 29 s integration timeout)")
        if "throttled" in outcome:
            status, headers, body = _api_error(429, "THROTTLED", f"Too Many Requests: {outcome['throttled']}; retry shortly")
            return status, {**headers, "retry-after": "1"}, body
        if "answer" not in outcome:
            return _api_error(502, "DEFAULT_5XX", "Internal server error (the handler raised)")
        answer = outcome["answer"]
        return answer["statusCode"], response_headers(answer), (answer.get("body") or "").encode()

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The headers and the body go out in two writes: with Nagle's algorithm on, a kept-alive client's
            # delayed ACK holds the body back ~40 ms.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                try:
                    status, out_headers, payload = self._answer()
                except Exception:  # noqa: BLE001 - a client always gets an answer, as from API Gateway
                    status, out_headers, payload = _api_error(500, "internal_error", "Internal server error (the local gateway failed)")
                    self.close_connection = True
                self.send_response(status)
                for key, value in out_headers.items():
                    if key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("content-length", str(len(payload)))
                if self.close_connection:
                    self.send_header("connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _answer(self) -> tuple[int, dict[str, str], bytes]:
                raw_length = self.headers.get("content-length") or "0"
                if not re.fullmatch(r"[0-9]{1,15}", raw_length):
                    self.close_connection = True  # the body's end is unknown: nothing more can be read
                    return _api_error(400, "bad_request", "the Content-Length header is not a number of bytes")
                length = int(raw_length)
                if length > MAX_REQUEST_EVENT_BYTES:  # its event would be larger still: never read it whole
                    if length <= API_GATEWAY_MAX_PAYLOAD_BYTES:
                        self._discard(length)
                    else:
                        self.close_connection = True
                    return request_size.STATUS, {"content-type": "application/json"}, json.dumps(request_size.error_body()).encode()
                body = self.rfile.read(length) if length else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                return gateway.invoke(self.command, self.path, headers, body)

            def _discard(self, length: int) -> None:
                while length > 0:
                    chunk = self.rfile.read(min(length, 1 << 20))
                    if not chunk:
                        break
                    length -= len(chunk)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def __getattr__(self, name: str) -> Any:
                # Any other method (PATCH, TRACE, QUERY...) gets an answer in the API's shape, 404 ``not_found``
                # as an unknown route does, never the standard library's HTML 501.
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def response_headers(answer: dict[str, Any]) -> dict[str, str]:
    """Headers of a proxy response, as API Gateway merges ``headers`` and ``multiValueHeaders``."""
    headers = dict(answer.get("headers") or {})
    for key, values in (answer.get("multiValueHeaders") or {}).items():
        headers[key] = ", ".join(values)
    return headers


def _api_error(status: int, error_type: str, message: str) -> tuple[int, dict[str, str], bytes]:
    """An answer in the router's error shape, for what the router would answer were it invoked."""
    return status, {"content-type": "application/json"}, json.dumps({"error": {"type": error_type, "message": message}}).encode()


if __name__ == "__main__":  # an execution environment, started by ExecutionEnvironments
    _serve(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
