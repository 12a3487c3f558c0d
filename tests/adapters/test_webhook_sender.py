"""HttpWebhookSender over real HTTP on 127.0.0.1: one signed POST per attempt, its outcome as an
AttemptResult (never an exception), no redirects followed, no private targets, a bounded wait."""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import json
import socket
import threading
import time

import pytest
from standardwebhooks import Webhook

from jobadapters.webhook_sender import USER_AGENT, HttpWebhookSender, RefusedTargetError, UnresolvableError, resolve, retry_after_s
from jobcore.addresses import refusal
from jobcore.views import iso
from local.webhook_receiver import WebhookReceiver
from tests.adapters.support import RecordingServer

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
EVENT_ID = "evt_job_hook_succeeded"
PUBLIC_IP = "93.184.216.34"  # an IP literal: resolving it needs no DNS


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def event_body(job_id: str = "job_hook", **data) -> bytes:
    document = {"id": f"evt_{job_id}_succeeded", "type": "job.succeeded", "timestamp": iso(wall_ms()),
                "data": {"id": job_id, "status": "succeeded", "note": "Grüße ✓", **data}}
    return json.dumps(document, separators=(",", ":")).encode()


def sender(*, secret=SECRET, allow_loopback=True, clock_ms=wall_ms) -> HttpWebhookSender:
    return HttpWebhookSender(secret=lambda: secret, clock_ms=clock_ms, allow_loopback=allow_loopback)


def post(url, *, body=None, timeout_s=2.0, **options):
    return sender(**options).post(url, event_id=EVENT_ID, body=body or event_body(), timeout_s=timeout_s)


@pytest.fixture
def receiver():
    made = WebhookReceiver(SECRET).start()
    yield made
    made.stop()


@pytest.fixture
def server():
    made = RecordingServer(status=204).start()
    yield made
    made.stop()


@pytest.fixture
def refusing_port():
    """A port on 127.0.0.1 bound but not listening: a connection to it is refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


# --- signing ------------------------------------------------------------------------------------

def test_an_attempt_is_signed_per_standard_webhooks_and_the_reference_library_verifies_it(receiver):
    body = event_body()

    result = post(receiver.url, body=body)

    assert result.delivered and result.status == 204 and result.error is None
    assert result.duration_ms >= 0
    assert receiver.rejected == []
    [event] = receiver.events
    assert event == json.loads(body)


def test_a_receiver_with_another_secret_rejects_the_attempt_and_it_counts_as_failed(receiver):
    result = post(receiver.url, secret=OTHER_SECRET)

    assert not result.delivered
    assert (result.status, result.error) == (401, "http")
    assert receiver.events == []
    assert len(receiver.rejected) == 1


def test_the_request_carries_the_given_id_the_senders_clock_and_the_body_byte_for_byte(server):
    body = event_body()

    post(server.url + "/hooks?tenant=a", body=body, clock_ms=lambda: 1_700_000_123_456)

    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/hooks?tenant=a")
    assert request.body == body
    assert request.headers["webhook-id"] == EVENT_ID
    assert request.headers["webhook-timestamp"] == "1700000123"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT
    expected = Webhook(SECRET).sign(EVENT_ID, _at(1_700_000_123), body.decode())
    assert request.headers["webhook-signature"] == expected


def test_two_attempts_of_one_event_share_id_and_body_but_each_is_signed_at_its_own_time(server):
    """A retry is the same message (the receiver's dedupe key and body), signed afresh: replay
    protection on the receiver's side looks at the timestamp."""
    body = event_body()
    now = [1_700_000_000_000]
    send = sender(clock_ms=lambda: now[0])

    send.post(server.url, event_id=EVENT_ID, body=body, timeout_s=2)
    now[0] += 300_000
    send.post(server.url, event_id=EVENT_ID, body=body, timeout_s=2)

    first, second = server.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == EVENT_ID
    assert first.body == second.body == body
    assert (first.headers["webhook-timestamp"], second.headers["webhook-timestamp"]) == ("1700000000", "1700000300")
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]


def test_without_a_secret_the_attempt_carries_id_and_timestamp_but_no_signature(server):
    result = post(server.url, secret=None)

    assert result.delivered
    [request] = server.requests
    assert request.headers["webhook-id"] == EVENT_ID
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert "webhook-signature" not in request.headers


def test_the_secret_is_read_at_every_attempt_so_a_rotated_secret_applies_at_once(server):
    secrets = iter([SECRET, OTHER_SECRET])
    send = HttpWebhookSender(secret=lambda: next(secrets), clock_ms=lambda: 1_700_000_000_000, allow_loopback=True)
    body = event_body()

    send.post(server.url, event_id=EVENT_ID, body=body, timeout_s=2)
    send.post(server.url, event_id=EVENT_ID, body=body, timeout_s=2)

    signed = [request.headers["webhook-signature"] for request in server.requests]
    when = _at(1_700_000_000)
    assert signed == [Webhook(SECRET).sign(EVENT_ID, when, body.decode()), Webhook(OTHER_SECRET).sign(EVENT_ID, when, body.decode())]


# --- the receiver's answer ----------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_attempt_and_its_target_is_never_contacted(server, status):
    target = RecordingServer().start()
    try:
        server.status = status
        server.headers = {"Location": f"{target.url}/stolen"}

        result = post(f"{server.url}/hooks")

        assert not result.delivered
        assert (result.status, result.error) == (status, "redirect")
        assert "not followed" in result.detail
        assert len(server.requests) == 1
        assert target.requests == []
    finally:
        target.stop()


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_delivered(server, status):
    server.status = status

    result = post(server.url)

    assert result.delivered and result.status == status and result.error is None and result.detail == ""


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 502, 503])
def test_any_other_status_is_an_http_error_with_that_status(server, status):
    server.status = status

    result = post(server.url)

    assert not result.delivered and not result.gone
    assert (result.status, result.error) == (status, "http")
    assert result.detail == f"answered {status}"


def test_410_gone_is_an_http_error_the_schedule_treats_as_final(server):
    server.status = 410

    result = post(server.url)

    assert (result.status, result.error, result.gone, result.delivered) == (410, "http", True, False)


def test_retry_after_in_seconds_is_read_into_the_result(server):
    server.status, server.headers = 503, {"Retry-After": "120"}

    result = post(server.url)

    assert (result.status, result.error, result.retry_after_s) == (503, "http", 120.0)


def test_retry_after_as_an_http_date_is_read_as_seconds_from_now(server):
    server.status = 429
    server.headers = {"Retry-After": email.utils.formatdate(time.time() + 90, usegmt=True)}

    result = post(server.url)

    assert result.status == 429
    assert 85 <= result.retry_after_s <= 91


def test_a_2xx_carries_no_retry_after_and_none_when_absent(server):
    server.headers = {"Retry-After": "120"}
    assert post(server.url).retry_after_s is None
    server.status, server.headers = 503, {}
    assert post(server.url).retry_after_s is None


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0),
    (" 7 ", 7.0),
    ("0", 0.0),
    ("Tue, 14 Nov 2023 22:15:20 GMT", 100.0),  # 100 s after NOW_S
    ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # a date already past: now
    (None, None),
    ("", None),
    ("soon", None),
    ("-5", None),
    ("1.5", None),
])
def test_retry_after_parsing(value, expected):
    now_s = 1_700_000_020.0  # Tue, 14 Nov 2023 22:13:40 GMT

    assert retry_after_s(value, now=now_s) == expected


# --- failures of the connection -----------------------------------------------------------------

def test_a_hanging_receiver_is_a_timeout_after_about_the_timeout(server):
    server.hold.clear()
    started = time.monotonic()

    result = post(server.url, timeout_s=0.3)

    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.5
    assert (result.status, result.error) == (None, "timeout")
    assert "0.3" in result.detail
    assert len(server.requests) == 1  # it was reached: it did not answer in time


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_about_the_timeout():
    answer = b"HTTP/1.1 200 OK\r\nX-Pad: abcdefghij\r\n\r\n"  # no length: the body ends when the connection closes
    trickler = _Trickler(answer, gap_s=0.05)  # 38 bytes over about 1.9 s; each gap a tenth of the timeout
    try:
        started = time.monotonic()

        result = post(trickler.url, timeout_s=0.5)

        elapsed = time.monotonic() - started
        assert result.error == "timeout"
        assert elapsed < 1.0, f"the attempt took {elapsed:.1f} s with a 0.5 s timeout"
    finally:
        trickler.stop()


def test_a_connection_refused_is_refused(refusing_port):
    result = post(f"http://127.0.0.1:{refusing_port}/hooks")

    assert (result.status, result.error) == (None, "refused")


def test_a_receiver_that_closes_without_answering_is_a_connection_error():
    closer = _Trickler(b"", gap_s=0)
    try:
        result = post(closer.url)
    finally:
        closer.stop()

    assert result.status is None and result.error == "connection"
    assert "RemoteDisconnected" in result.detail


def test_a_host_without_an_address_is_dns(monkeypatch):
    real = socket.getaddrinfo

    def no_such_host(host, *args, **kwargs):
        if host == "hooks.nowhere.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)

    result = post("https://hooks.nowhere.invalid/hooks")

    assert (result.status, result.error) == (None, "dns")
    assert "hooks.nowhere.invalid" in result.detail


def test_a_loopback_receiver_is_blocked_and_never_contacted_unless_loopback_is_allowed(server):
    result = post(server.url, allow_loopback=False)

    assert (result.status, result.error) == (None, "blocked")
    assert "non-public" in result.detail
    assert server.requests == []


def test_a_host_that_rebinds_to_loopback_after_the_check_is_not_contacted(server, monkeypatch):
    """GIVEN a webhook host whose DNS answers a public address first and 127.0.0.1 afterwards
    WHEN an attempt is made with loopback refused
    THEN the connection goes to the address that was checked, and the loopback receiver is never contacted."""
    real = socket.getaddrinfo
    answers = iter([PUBLIC_IP])
    port = int(server.url.rsplit(":", 1)[1])
    connected_to = []

    def rebinding(host, *args, **kwargs):
        if host != "hooks.rebind.example":
            return real(host, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers, "127.0.0.1"), port))]

    def no_network(address, *args, **kwargs):
        connected_to.append(address)  # never leave this machine: refuse instead of connecting
        raise ConnectionRefusedError("test: no outbound connections")

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(socket, "create_connection", no_network)

    result = post(f"http://hooks.rebind.example:{port}/hooks", allow_loopback=False, timeout_s=0.5)

    assert connected_to == [(PUBLIC_IP, port)]
    assert result.error == "refused"
    assert server.requests == []


def test_a_host_with_one_private_address_among_public_ones_is_blocked(monkeypatch):
    def mixed(host, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 443)) for ip in (PUBLIC_IP, "10.1.2.3")]

    monkeypatch.setattr(socket, "getaddrinfo", mixed)

    with pytest.raises(RefusedTargetError, match="10.1.2.3"):
        resolve("hooks.mixed.example", 443, allow_loopback=True)


# --- resolve ------------------------------------------------------------------------------------

NEVER = [
    ("10.0.0.1", 443),
    ("172.16.5.4", None),
    ("192.168.1.20", None),
    ("169.254.169.254", None),  # the instance metadata service
    ("0xa9fea9fe", None),  # the same, spelt as one hexadecimal number
    ("100.64.0.1", None),  # carrier-grade NAT
    ("0.0.0.0", 80),
    ("fd00::1", None),  # unique local
    ("::ffff:10.0.0.1", None),  # a private IPv4 inside IPv6
]
LOOPBACK = [("127.0.0.1", 8080), ("127.1.2.3", None), ("localhost", None), ("::1", None), ("2130706433", None), ("0x7f.1", None)]


@pytest.mark.parametrize(("host", "port"), NEVER + LOOPBACK)
def test_resolve_refuses_every_non_public_target(host, port):
    with pytest.raises(RefusedTargetError, match="non-public"):
        resolve(host, port, allow_loopback=False)


@pytest.mark.parametrize(("host", "port"), NEVER)
def test_resolve_refuses_private_and_link_local_targets_even_when_loopback_is_allowed(host, port):
    with pytest.raises(RefusedTargetError, match="non-public"):
        resolve(host, port, allow_loopback=True)


@pytest.mark.parametrize(("host", "port"), LOOPBACK)
def test_resolve_allows_loopback_only_when_told_to(host, port):
    address = resolve(host, port, allow_loopback=True)

    assert address in {"127.0.0.1", "127.1.2.3", "::1"}


def test_resolve_accepts_a_public_address_and_returns_it():
    assert resolve(PUBLIC_IP, 443, allow_loopback=False) == PUBLIC_IP


def test_resolve_of_a_host_without_an_address_raises_unresolvable(monkeypatch):
    def nothing(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nothing)

    with pytest.raises(UnresolvableError, match="hooks.gone.example"):
        resolve("hooks.gone.example", 443, allow_loopback=False)


# --- helpers ------------------------------------------------------------------------------------

def _at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def _request_length(received: bytes) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return len(head) + 4 + (int(lengths[0]) if lengths else 0)


class _Trickler:
    """A raw TCP receiver on 127.0.0.1: reads the request, then sends ``answer`` a byte every ``gap_s``
    and closes (an empty answer: closes at once)."""

    def __init__(self, answer: bytes, *, gap_s: float):
        self._answer, self._gap_s = answer, gap_s
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hooks"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self._sock.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(2)
            received = b""
            while b"\r\n\r\n" not in received or len(received) < _request_length(received):
                chunk = connection.recv(65536)
                if not chunk:
                    return
                received += chunk
            for byte in self._answer:
                if self._stop.wait(self._gap_s):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)


@pytest.mark.parametrize("answer", [
    "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "2001::1", "::127.0.0.1", "100.64.0.1", "::ffff:169.254.169.254", "192.0.2.1",
])
def test_delivery_applies_the_same_address_policy_as_submission(monkeypatch, answer):
    """A name whose DNS answer is one of the forms submission refuses as a literal (NAT64 or 6to4 around
    metadata, Teredo, IPv4-compatible, CGNAT...) is refused at delivery for the same reason."""
    family = socket.AF_INET6 if ":" in answer else socket.AF_INET
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: [(family, socket.SOCK_STREAM, 6, "", (answer, 443))])

    with pytest.raises(RefusedTargetError, match="non-public") as raised:
        resolve("hooks.example.com", 443, allow_loopback=True)

    reason = refusal(ipaddress.ip_address(answer), allow_loopback=True)
    assert reason is not None and reason in str(raised.value)
