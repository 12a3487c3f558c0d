"""AWS on one machine: moto in server mode, plus the check S3 makes of a presigned URL and moto does not.

A presigned URL (``X-Amz-Signature`` in its query) signs its key, its expiry and the headers it names (an
upload's ``content-type`` and ``content-length``): S3 refuses a request whose signature does not match them
(403 ``SignatureDoesNotMatch``) or that comes too late (403 ``AccessDenied``). moto accepts any, so without
this a local upload PUT with another content type than the signed one would succeed where AWS refuses it.
The signature is recomputed as S3 does, with botocore's own presigner over the request as received.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hmac
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto import backends as moto_backends
from moto.core.utils import unix_time, unix_time_millis
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from moto.sqs.models import Message, Queue, SQSBackend
from werkzeug.serving import make_server

from local import fair_queues, moto_transactions
from local.server_process import ServerProcess

# The local runtime's credentials (boto3 in every local process signs with them; moto accepts any).
CREDENTIALS = Credentials("testing", "testing", "testing")
SIGNATURE = "X-Amz-Signature"
_TIMESTAMP = "%Y%m%dT%H%M%SZ"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class PresignedUrlCheck:
    """WSGI middleware: a presigned request goes on to ``app`` only if S3 would take it."""

    def __init__(self, app: WsgiApp, *, credentials: Credentials = CREDENTIALS, now: Callable[[], dt.datetime] = utc_now):
        self.app, self.credentials, self.now = app, credentials, now

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        refusal = self.refusal(environ) if SIGNATURE in environ.get("QUERY_STRING", "") else None
        if refusal is None:
            return self.app(environ, start_response)
        code, message = refusal
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}</Message>'
                "</Error>").encode()
        start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]

    def refusal(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        """S3's error code and message for this presigned request, or None if S3 would take it."""
        # The URL as sent (werkzeug keeps it): the signature covers the path and query as the client encoded them.
        url = f"http://{environ.get('HTTP_HOST', '')}{environ.get('RAW_URI') or environ.get('REQUEST_URI', '')}"
        parts = urlsplit(url)
        pairs = [pair for pair in parts.query.split("&") if pair]
        signature = next((pair.partition("=")[2] for pair in pairs if pair.partition("=")[0] == SIGNATURE), "")
        params = {key: values[0] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            access_key, date, region, service, _ = params["X-Amz-Credential"].split("/")
            signed_at = dt.datetime.strptime(params["X-Amz-Date"], _TIMESTAMP).replace(tzinfo=dt.UTC)
            expires_s = int(params["X-Amz-Expires"])
            signed_headers = params["X-Amz-SignedHeaders"].split(";")
        except (KeyError, ValueError):
            return "AuthorizationQueryParametersError", "The presigned URL's X-Amz-* query parameters are malformed."
        if access_key != self.credentials.access_key:
            return "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
        if self.now() > signed_at + dt.timedelta(seconds=expires_s):
            return "AccessDenied", "Request has expired"
        request = AWSRequest(
            method=environ["REQUEST_METHOD"],
            url=parts._replace(query="&".join(pair for pair in pairs if pair.partition("=")[0] != SIGNATURE)).geturl(),
            headers={name: _header(environ, name) for name in signed_headers},
        )
        request.context["timestamp"] = params["X-Amz-Date"]
        auth = S3SigV4QueryAuth(self.credentials, service, region, expires=expires_s)
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        if not hmac.compare_digest(expected, signature):
            return ("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you "
                    "provided. Check your key and signing method.")
        return None


def _header(environ: dict[str, Any], name: str) -> str:
    key = name.upper().replace("-", "_")
    # WSGI keeps these two out of HTTP_*; a signed header that is absent signs as empty, and so mismatches.
    return str(environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}", ""))


def _retained(backend: SQSBackend, queue_name: str, message: Message) -> bool:
    """moto's check that a message a receive returns is within its queue's retention period, in O(1): moto's own
    computes every attribute of the queue for it (ApproximateNumberOfMessages counts every message), once per message
    returned, so a receive from a queue of n messages cost O(n) per message; under a few hundred queued jobs that was
    most of the local AWS's time, and every AWS call of the pipeline waited behind it."""
    queue = backend.get_queue(queue_name)
    retention_s = int(queue.message_retention_period)  # type: ignore[attr-defined]  # set from the attributes by name
    return retention_s + (message.sent_timestamp or 0) / 1000 > unix_time()


_MOTO_MODULES: tuple[str, ...] = tuple(moto_backends.list_of_moto_modules())
_backend_for_host = DomainDispatcherApplication.get_backend_for_host
_backends_by_host: dict[str | None, Any] = {}


def _moto_modules() -> tuple[str, ...]:
    """moto's service packages, listed once: moto's own lists its package directory (a ``stat`` per entry, some 200)
    for every request, inside the lock that every request to the server takes."""
    return _MOTO_MODULES


def _cached_backend_for_host(app: DomainDispatcherApplication, host: str | None) -> Any:
    """The backend a request's host names, found once per host: moto's own tries every service's URL patterns
    (hundreds of regular expressions) for every request, inside that same lock."""
    if host not in _backends_by_host:
        _backends_by_host[host] = _backend_for_host(app, host)
    return _backends_by_host[host]


def _counted(in_state: Callable[[Any, float], bool]) -> property:
    """A queue attribute counting its messages ``in_state`` (a message and the time now, in ms), as moto's does,
    without putting them in delivery order first (:mod:`local.fair_queues` orders them for a receive; a count needs no
    order). moto computes every attribute of a queue for each message sent to it: these counts read the clock once,
    where moto's read it once or twice per message in the queue (under a few hundred queued jobs, a tenth of the
    local AWS's time)."""

    def count(queue: Queue) -> int:
        now_ms = unix_time_millis()
        return sum(1 for message in queue._messages if in_state(message, now_ms))

    return property(count)


_moto_query = Table.query
QUERY_TRIES = 5


def _query_of_live_items(table: Table, *args: Any, **kwargs: Any) -> Any:
    """moto's ``Query``, tried again when an update changed an item under it. A query of a sparse index selects the
    items that have the index's keys, then sorts them by those keys, reading the live items: an ``UpdateItem`` that
    removed one's key in between (the sweeper's watch index, under the capacity bench's burst) raised a ``KeyError``,
    answered as a 500. Run again, the query no longer selects that item. (Serving DynamoDB's requests one at a time
    instead cost the local AWS a third of its throughput: the queue behind the lock, where the interpreter lock lets
    requests interleave.)"""
    for _ in range(QUERY_TRIES - 1):
        try:
            return _moto_query(table, *args, **kwargs)
        except KeyError:
            continue
    return _moto_query(table, *args, **kwargs)


def speed_up_moto() -> None:
    """Replace moto's internals that are costly, or wrong under concurrent requests, with ones that answer as moto's
    do (process-wide, idempotent): the retention check, the queue's message counts, the request's service looked up
    once per host, DynamoDB's queries of items an update changes under them, and its transactions
    (local.moto_transactions). Under a few hundred jobs a second, the lookups alone were a tenth of the local AWS's
    time, all of it under one lock."""
    SQSBackend.is_message_valid_based_on_retention_period = _retained  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages = _counted(  # type: ignore[method-assign,assignment]
        lambda message, now_ms: now_ms > message.visible_at and now_ms >= message.delayed_until)
    Queue.approximate_number_of_messages_not_visible = _counted(  # type: ignore[method-assign,assignment]
        lambda message, now_ms: now_ms <= message.visible_at)
    Queue.approximate_number_of_messages_delayed = _counted(  # type: ignore[method-assign,assignment]
        lambda message, now_ms: now_ms < message.delayed_until)
    moto_backends.list_of_moto_modules = _moto_modules
    Table.query = _query_of_live_items  # type: ignore[method-assign,assignment]
    DomainDispatcherApplication.get_backend_for_host = _cached_backend_for_host  # type: ignore[method-assign,assignment]
    moto_transactions.install()


class AwsServer(ThreadedMotoServer):
    """moto's threaded server with :class:`PresignedUrlCheck` in front (``now``: its clock, for tests), and standard
    queues delivering as SQS fair queues while it runs (:mod:`local.fair_queues`: the lane messages' group is their
    tenant; moto alone delivers oldest first, a quiet tenant's job behind another's whole backlog)."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0, *, verbose: bool = False,
                 now: Callable[[], dt.datetime] = utc_now):
        super().__init__(ip_address=ip_address, port=port, verbose=verbose)
        self._now = now
        self._fair = False

    def start(self) -> None:
        speed_up_moto()
        fair_queues.install(noisy_min_in_flight=fair_queues.LOCAL_NOISY_MIN_IN_FLIGHT)
        self._fair = True
        super().start()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self._fair:
                fair_queues.uninstall()
                self._fair = False

    def _server_entry(self) -> None:
        # ThreadedMotoServer's own entry, the app wrapped: it takes no middleware.
        check = PresignedUrlCheck(DomainDispatcherApplication(create_backend_app), now=self._now)
        self._server = make_server(self._ip_address, self._port, check, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever(poll_interval=0.05)  # a stop is answered within 50 ms, not 0.5 s


def dynamodb_process() -> ServerProcess:
    """An :class:`AwsServer` in a process of its own, for DynamoDB alone (``AWS_ENDPOINT_URL_DYNAMODB``): the local
    AWS's busiest service on a core of its own. In one process, one interpreter serves every AWS call of the pipeline;
    under the capacity bench's 300-job burst it was saturated (118 calls a second, DynamoDB's three fifths of its
    time), and a quiet tenant's every write queued behind the burst's, which AWS, many machines, does not do. (No
    moto feature links DynamoDB to the other services the pipeline uses: S3's notifications to SQS stay together.)"""
    return ServerProcess("local.aws_server", ["--port", "0"], name="local DynamoDB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="AWS on one machine: moto in server mode, with the local checks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (the URL is printed once it listens)")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    server = AwsServer(args.host, args.port)
    server.start()
    print("http://{}:{}".format(*server.get_host_and_port()), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
