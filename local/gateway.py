"""A local stand-in for API Gateway (REST, proxy integration) in front of the router handler.

It turns each HTTP request into the event API Gateway would send, calls the handler in-process and
turns its answer back into HTTP, enforcing what the real gateway enforces: the routes, an API key
(it identifies the tenant), the 29 s integration timeout, and the largest request that can reach the
router: API Gateway takes 10 MB, but the Lambda event that carries a request to the router holds at
most 6 MB, so a larger event gets the router's own 413 ``payload_too_large`` (:mod:`router.payload`).
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
import multiprocessing
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jobcore.limits import API_GATEWAY_MAX_PAYLOAD_BYTES, API_GATEWAY_TIMEOUT_S, MAX_REQUEST_EVENT_BYTES
from local.aws_calls import record_process
from router import payload as request_size
from router.routes import ROUTES

INTEGRATION_TIMEOUT_S = float(API_GATEWAY_TIMEOUT_S)
LOCAL_API_KEY = "local-dev-key"


def match(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The route template (API Gateway's ``resource``) and path parameters, or None."""
    for route_method, template in ROUTES:
        pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
        found = re.match(pattern, path)
        if found and route_method == method:
            return template, found.groupdict()
    return None


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


class ExecutionEnvironments:
    """The router as Lambda runs it: up to ``size`` execution environments (processes), each serving one
    request at a time. Powertools' resolver keeps the current request in a class attribute, which is safe
    in a Lambda environment and would mix up concurrent requests (and their tenants) in threads of one
    process; a process per concurrent request is also what Lambda does."""

    def __init__(self, target: str, *, size: int = 8, timeout_s: float = 60.0, component: str = "router"):
        self._target, self._timeout_s = target, timeout_s
        # Each environment records its AWS calls as ``component``'s when the pipeline records them (local.aws_calls).
        self._pool = ProcessPoolExecutor(max_workers=size, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=record_process, initargs=(component,))

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self._pool.submit(_invoke, self._target, event, self._timeout_s).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _invoke(target: str, event: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """In an execution environment: the handler ``module:function``, imported once per process."""
    module, _, name = target.partition(":")
    handler = getattr(importlib.import_module(module), name)
    return handler(event, LambdaContext(timeout_s))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # API Gateway accepts bursts; the default listen backlog of 5 resets clients


class Gateway:
    def __init__(self, handler: Callable[[dict, Any], dict], *, host: str = "127.0.0.1", port: int = 0, require_key: bool = True):
        self._handler = handler
        self._require_key = require_key
        self._host = host
        self._server = _Server((host, port), self._request_handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> Gateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        close = getattr(self._handler, "close", None)
        if close is not None:
            close()

    def invoke(self, method: str, path: str, headers: dict[str, str], body: str | bytes | None) -> tuple[int, dict[str, str], bytes]:
        if self._require_key and not headers.get("x-api-key"):
            return _api_error(403, "INVALID_API_KEY", "Forbidden: send your API key in the x-api-key header")
        try:
            event = to_event(method, path, headers, body)
        except ValueError:
            return _api_error(400, "bad_request", "the request's path is not a valid URL path")
        if event is None:
            return _api_error(404, "not_found", f"no route {method} {urlsplit(path).path[:200]}")
        if request_size.too_large(event):  # Lambda would refuse the invocation: answer as the router does
            return request_size.STATUS, {"content-type": "application/json"}, json.dumps(request_size.error_body()).encode()
        answer: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: answer.update(self._handler(event, LambdaContext(60.0))), daemon=True)
        worker.start()
        worker.join(INTEGRATION_TIMEOUT_S)
        if worker.is_alive():
            return _api_error(504, "INTEGRATION_TIMEOUT", "Endpoint request timed out (API Gateway's 29 s integration timeout)")
        if not answer:
            return _api_error(502, "DEFAULT_5XX", "Internal server error (the handler raised)")
        return answer["statusCode"], response_headers(answer), (answer.get("body") or "").encode()

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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
