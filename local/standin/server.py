"""The stand-in's HTTP server: routes, sending, and :class:`ClaudeStandIn` to start and drive it."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local.listen import BurstHTTPServer
from local.standin.answers import build_message
from local.standin.api import ApiError, invalid
from local.standin.batches import BATCH_MAX_BYTES, Batch, Batches, BatchSettings, validate_batch
from local.standin.bedrock import INVOKE_PATH, as_bedrock, authenticate, messages_body
from local.standin.cache import prompt_blocks
from local.standin.control import State, non_negative
from local.standin.limits import Grant, ModelLimits, limits_argument
from local.standin.prompt import prompt_tokens, validate_request


class _Server(BurstHTTPServer):
    """The API takes a worker's concurrent calls at once (local.listen: the default backlog delayed them 7-11 s)."""

    def __init__(self, address: tuple[str, int], state: State, batches: Batches, bedrock: State):
        super().__init__(address, _Handler)
        self.state, self.batches = state, batches
        self.bedrock = bedrock  # the Bedrock runtime path's own failures and counters
        self.stopping = threading.Event()

    def stats(self) -> dict[str, Any]:
        return stats_of(self.state, self.bedrock)


def stats_of(state: State, bedrock: State) -> dict[str, Any]:
    """The Anthropic paths' stats, and the Bedrock path's ``requests``, ``by_status`` and ``last_request``."""
    on_bedrock = bedrock.stats()
    return {**state.stats(), "bedrock": {k: on_bedrock[k] for k in ("requests", "by_status", "last_request")}}


# /v1/messages/batches, /v1/messages/batches/{id}, /v1/messages/batches/{id}/results or .../cancel
_BATCH_PATH = re.compile(r"/v1/messages/batches(?:/(?P<id>[^/]+)(?:/(?P<action>results|cancel))?)?/?")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    # TCP_NODELAY: an answer goes out as two writes (headers, then body); with Nagle's algorithm on, the
    # body waits for the client's delayed ACK of the headers, ~40 ms on every reused connection.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and the CLI read stats, not access logs."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_standin/stats":
            self._send(200, self.server.stats())
        elif _BATCH_PATH.fullmatch(path):
            self._batch_call("GET", b"")
        else:
            self._send_error(ApiError(404, "not_found_error", f"{self.path}: not found"))

    def do_DELETE(self) -> None:
        if _BATCH_PATH.fullmatch(urlsplit(self.path).path):
            self._batch_call("DELETE", b"")
        else:
            self._send_error(ApiError(404, "not_found_error", f"{self.path}: not found"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("content-length") or 0)
        if path == "/v1/messages/batches" and length > BATCH_MAX_BYTES:
            # Refused on its declared size, unread, as the API does; the unread body ends the connection.
            self.close_connection = True
            message = f"Request exceeds the maximum allowed number of bytes ({BATCH_MAX_BYTES} for a message batch)."
            self._send_error(ApiError(413, "request_too_large", message, {"connection": "close"}))
            return
        raw = self.rfile.read(length)
        invoke = INVOKE_PATH.fullmatch(path)
        if path == "/v1/messages":
            self._messages(raw)
        elif invoke is not None:
            self._invoke(invoke.group("model"), raw)
        elif _BATCH_PATH.fullmatch(path):
            self._batch_call("POST", raw)
        elif path == "/_standin/control":
            self._control(raw)
        elif path == "/_standin/reset":
            self.server.state.reset()
            self._send(200, self.server.state.config())
        else:
            self._send_error(ApiError(404, "not_found_error", f"{self.path}: not found"))

    def _control(self, raw: bytes) -> None:
        """The control body; ``"provider": "bedrock"`` applies it to the Bedrock path instead."""
        control = _json_or_none(raw)
        state = self.server.state
        if isinstance(control, dict) and "provider" in control:
            provider = control.pop("provider")
            if provider not in ("anthropic", "bedrock"):
                self._send_error(invalid("provider: must be 'anthropic' or 'bedrock'"))
                return
            state = self.server.bedrock if provider == "bedrock" else state
        try:
            state.apply_control(control)
        except ValueError as err:
            self._send_error(invalid(str(err)))
            return
        self._send(200, state.config())

    def _invoke(self, path_model: str, raw: bytes) -> None:
        """Bedrock's InvokeModel for an Anthropic model: the Messages API answer, Bedrock's errors."""
        state = self.server.bedrock
        body = _json_or_none(raw)
        hang_s, latency_s, released = state.arrive(body)
        if not (self._wait(hang_s, released) and self._wait(latency_s, released)):
            self.close_connection = True
            return
        try:
            authenticate(self.headers)
            failure = state.take_failure()
            if failure:
                raise failure
            request = messages_body(path_model, body)
            validate_request(request)
            status, payload, headers = 200, build_message(request, raw, cache=state.cache, now=state.clock()), {}
        except ApiError as err:
            error = as_bedrock(err)
            status, payload, headers = error.status, error.payload(), error.headers
        state.answered(status)
        self._send(status, payload, {"x-amzn-requestid": _request_id(raw), **headers})

    def _messages(self, raw: bytes) -> None:
        state = self.server.state
        body = _json_or_none(raw)
        hang_s, latency_s, released = state.arrive(body)
        if not self._wait(hang_s, released):
            self.close_connection = True  # stopping: leave without an answer
            return
        try:
            grant = self._admit(body)
        except ApiError as err:  # refused by a rate limit: answered at once, as the API answers a 429
            state.answered(err.status)
            self._send(err.status, err.payload(), {"request-id": _request_id(raw), **err.headers})
            return
        if not self._wait(latency_s, released):
            if grant is not None:
                grant.settle(grant.input_tokens, 0)
            self.close_connection = True
            return
        message: dict[str, Any] | None = None
        try:
            message = self._answer(body, raw)
            status, payload, headers = 200, message, {}
        except ApiError as err:
            status, payload, headers = err.status, err.payload(), err.headers
        state.answered(status)
        self._send(status, payload, {"request-id": _request_id(raw), **self._settle(grant, message), **headers})

    def _admit(self, body: Any) -> Grant | None:
        """The rate limits' grant for a request that will be answered: None without limits, or for a bad
        request (its error is answered after the latency, as without limits). Raises the 429 when refused."""
        state = self.server.state
        limiter = state.limiter
        if limiter is None or body is None:
            return None
        try:
            self._authenticate()
            validate_request(body)
            blocks = prompt_blocks(body)
        except ApiError:
            return None
        uncached = prompt_tokens(body) - state.cache.reads(body["model"], blocks, state.clock())
        return limiter.admit(uncached, body["max_tokens"])

    def _settle(self, grant: Grant | None, message: dict[str, Any] | None) -> dict[str, str]:
        """The answer's ratelimit headers, once its grant is corrected to the real usage (none for an error)."""
        if grant is None:
            limiter = self.server.state.limiter
            return {} if limiter is None else limiter.headers()
        if message is None:
            return grant.settle(grant.input_tokens, 0)
        usage = message["usage"]
        return grant.settle(usage["input_tokens"] + usage["cache_creation_input_tokens"], usage["output_tokens"])

    def _answer(self, body: Any, raw: bytes) -> dict[str, Any]:
        self._authenticate()
        failure = self.server.state.take_failure()
        if failure:
            raise failure
        if body is None:
            raise invalid("request body: not valid JSON")
        validate_request(body)
        state = self.server.state
        return build_message(body, raw, cache=state.cache, now=state.clock())

    def _authenticate(self) -> None:
        if not (self.headers.get("x-api-key") or self.headers.get("authorization", "").lower().startswith("bearer ")):
            raise ApiError(401, "authentication_error", "x-api-key header is required")

    # --- Message Batches ---------------------------------------------------------------------

    def _batch_call(self, method: str, raw: bytes) -> None:
        request_id = {"request-id": _request_id(f"{method} {self.path} {time.time_ns()}".encode())}
        try:
            self._authenticate()
            self._batch_route(method, raw, request_id)
        except ApiError as err:
            self._send(err.status, err.payload(), {**request_id, **err.headers})

    def _batch_route(self, method: str, raw: bytes, headers: dict[str, str]) -> None:
        url = urlsplit(self.path)
        match = _BATCH_PATH.fullmatch(url.path)
        assert match is not None
        batch_id, action = match.group("id"), match.group("action")
        batches, base_url = self.server.batches, self._base_url()
        if batch_id is None and method == "POST":
            self._send(200, self._create_batch(raw).as_json(base_url), headers)
        elif batch_id is None and method == "GET":
            self._send(200, self._list_batches(url.query), headers)
        elif action is None and method == "GET":
            self._send(200, batches.get(batch_id).as_json(base_url), headers)
        elif action is None and method == "DELETE":
            batches.delete(batch_id)
            self._send(200, {"id": batch_id, "type": "message_batch_deleted"}, headers)
        elif action == "cancel" and method == "POST":
            self._send(200, batches.cancel(batch_id).as_json(base_url), headers)
        elif action == "results" and method == "GET":
            self._send_bytes(200, batches.results(batch_id), "application/binary", headers)
        else:
            raise ApiError(405, "invalid_request_error", f"{method} {url.path}: method not allowed")

    def _create_batch(self, raw: bytes) -> Batch:
        body = _json_or_none(raw)
        if body is None:
            raise invalid("request body: not valid JSON")
        requests = validate_batch(body)
        state = self.server.state
        batch = self.server.batches.create(requests, raw, state.batch_settings())
        state.batch_created(batch.id, len(requests))
        return batch

    def _list_batches(self, query: str) -> dict[str, Any]:
        params = {name: values[-1] for name, values in parse_qs(query).items()}
        limit_text = params.get("limit", "20")
        if not re.fullmatch(r"\d+", limit_text) or not 1 <= int(limit_text) <= 1000:
            raise invalid("limit: Input should be an integer from 1 to 1000")
        if params.get("after_id") and params.get("before_id"):
            raise invalid("after_id, before_id: give at most one of them")
        page, has_more = self.server.batches.page(params.get("after_id"), params.get("before_id"), int(limit_text))
        data = [batch.as_json(self._base_url()) for batch in page]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def _base_url(self) -> str:
        """This server as the client reached it, so ``results_url`` leads the SDK back here."""
        host = self.headers.get("host") or f"{self.server.server_address[0]!s}:{self.server.server_port}"
        return f"http://{host}"

    # --- sending -------------------------------------------------------------------------------

    def _wait(self, seconds: float, released: threading.Event) -> bool:
        """Sleep, but wake at once when the waits are released or the server stops; False means it is stopping."""
        if seconds:
            released.wait(seconds)
        return not self.server.stopping.is_set()

    def _send_error(self, err: ApiError) -> None:
        self._send(err.status, err.payload(), err.headers)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)


def _request_id(seed: bytes) -> str:
    return "req_" + hashlib.sha256(seed).hexdigest()[:24]


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


class ClaudeStandIn:
    """The stand-in server: ``start()`` it (or use ``with``), point the SDK at ``base_url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        batch_delay_s: float = 1.0,
        batch_cancel_delay_s: float = 0.2,
        clock: Callable[[], float] = time.time,
        limits: ModelLimits | None = None,
    ):
        """``clock`` (wall-clock seconds, ``time.time`` by default) times prompt-cache ttls, batch
        processing, the rate limits' buckets and timestamps: a test can pass a fake one and move it
        instead of sleeping. ``limits`` turns the rate-limit mode on (:mod:`local.standin.limits`)."""
        self._address = (host, port)
        settings = BatchSettings(non_negative(batch_delay_s, "batch_delay_s"), non_negative(batch_cancel_delay_s, "batch_cancel_delay_s"))
        self._state = State(latency_s, settings, clock, limits)
        self._bedrock = State(latency_s, settings, clock)
        self._batches = Batches(clock, self._state.cache)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ClaudeStandIn:
        """Bind and serve in a background daemon thread; returns self for chaining."""
        if self._server is None:
            self._server = _Server(self._address, self._state, self._batches, self._bedrock)
            self._thread = self._server.serve_in_thread("claude-standin")
        return self

    def stop(self) -> None:
        """Stop promptly: waiting requests (hang, latency) are woken and dropped without an answer."""
        if self._server is None:
            return
        self._server.stopping.set()
        self.release()  # the waiting requests see the stop now
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ClaudeStandIn:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("ClaudeStandIn is not started")
        return f"http://{self._address[0]}:{self._server.server_port}"

    def configure(
        self,
        latency_s: float | None = None,
        fail_status: int | None = None,
        fail_times: int | None = None,
        hang_s: float | None = None,
        fail_for_s: float | None = None,
        retry_after: float | None = None,
        batch_delay_s: float | None = None,
        batch_cancel_delay_s: float | None = None,
        batch_fail: list[dict[str, Any]] | None = None,
        provider: str = "anthropic",
    ) -> None:
        """Change behaviour; arguments left as None are unchanged.

        ``fail_status`` (429, 529 or 500) fails the next ``fail_times`` message requests, or all of
        them until ``reset()`` when ``fail_times`` is None; with ``fail_for_s``, only for that many
        seconds from now (a rate-limit storm), then it answers again. ``retry_after`` sets the failures'
        ``retry-after`` header (a 429's is 1 otherwise). ``hang_s=0`` ends a hang.

        ``batch_delay_s`` and ``batch_cancel_delay_s`` time batches created from now on (see
        :class:`BatchSettings`); ``batch_fail`` is a list of :class:`BatchFailRule` dicts, e.g.
        ``[{"custom_id": "^bad", "error_type": "invalid_request_error"}, {"index": 2, "result": "expired"},
        {"fraction": 0.5}]``, the first rule that selects a request deciding it; ``[]`` drops them.

        ``provider="bedrock"``: the latency, failures and hang of the Bedrock runtime path instead (its 529 is
        answered as Bedrock's 503).
        """
        if provider == "bedrock":
            if fail_status is not None:
                self._bedrock.set_fail(fail_status, fail_times, fail_for_s, retry_after)
            if latency_s is not None:
                self._bedrock.set_latency(latency_s)
            if hang_s is not None:
                self._bedrock.set_hang(hang_s)
            return
        if (fail_times is not None or fail_for_s is not None or retry_after is not None) and fail_status is None:
            raise ValueError("fail_times, fail_for_s and retry_after need fail_status")
        if latency_s is not None:
            self._state.set_latency(latency_s)
        if fail_status is not None:
            self._state.set_fail(fail_status, fail_times, fail_for_s, retry_after)
        if hang_s is not None:
            self._state.set_hang(hang_s)
        if batch_delay_s is not None or batch_cancel_delay_s is not None or batch_fail is not None:
            self._state.set_batch(batch_delay_s, batch_cancel_delay_s, batch_fail)

    def release(self) -> None:
        """End the hangs and latencies of the requests waiting now (both paths): each answers at once."""
        self._state.release()
        self._bedrock.release()

    def set_limits(self, limits: ModelLimits | None) -> None:
        """Rate limits from now on (full buckets, fresh counters); None turns the rate-limit mode off."""
        self._state.set_limits(limits)

    def reset(self) -> None:
        """Back to the constructor's latency, batch settings and limits (buckets full), no failures, no
        hang, an empty prompt cache and zeroed stats. Batches made so far stay (they live as long as the stand-in)."""
        self._state.reset()
        self._bedrock.reset()

    def stats(self) -> dict[str, Any]:
        """``requests``, ``by_status`` (status as a string → count) and ``last_request`` (parsed body) of
        ``/v1/messages`` calls, ``batches``: ``created`` (a count) and ``requests`` (batch id → its size),
        and ``limits``: None, or the rate limits' counters (:meth:`local.standin.limits.RateLimiter.stats`);
        ``bedrock``: the Bedrock runtime path's ``requests``, ``by_status`` and ``last_request``."""
        return stats_of(self._state, self._bedrock)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Offline stand-in for the Anthropic Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before every answer")
    parser.add_argument("--batch-delay", type=float, default=1.0, help="seconds a message batch takes to process")
    parser.add_argument("--model-limits", type=limits_argument, default=None,
                        help="rate limits per minute, e.g. rpm=120,itpm=40000,otpm=8000 (default: none)")
    args = parser.parse_args(argv)
    with ClaudeStandIn(host=args.host, port=args.port, latency_s=args.latency, batch_delay_s=args.batch_delay,
                       limits=args.model_limits) as standin:
        print(standin.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
