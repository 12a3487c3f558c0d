"""HttpWebhookNotifier over real HTTP on 127.0.0.1: signed, stable ids, no redirects, no private targets."""

from __future__ import annotations

import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jobadapters.webhook_sender import HttpWebhookNotifier, RefusedTargetError, resolve
from jobcore.model import JobStatus, Webhook
from jobcore.views import job_view
from local.webhook_receiver import WebhookReceiver
from tests.adapters.support import NOW_MS, RecordingServer, make_job

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def notifier(*, secret=SECRET, allow_private_targets=True, timeout_s=2.0, executor=None):
    return HttpWebhookNotifier(
        render=job_view, secret=lambda: secret, clock_ms=lambda: time.time_ns() // 1_000_000,
        executor=executor, allow_private_targets=allow_private_targets, timeout_s=timeout_s,
    )


def finished(url, *, status=JobStatus.SUCCEEDED, events=("completed",), job_id="job_hook"):
    return make_job(job_id, status=status, webhook=Webhook(url, events), started_at=NOW_MS, finished_at=NOW_MS + 500)


@pytest.fixture
def receiver():
    server = WebhookReceiver(SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def server():
    made = RecordingServer(status=204).start()
    yield made
    made.stop()


def test_a_delivery_is_signed_per_standard_webhooks_and_verifies(receiver):
    notifier().notify(finished(receiver.url))

    assert receiver.rejected == []
    [event] = receiver.events
    assert event["id"] == "evt_job_hook_succeeded"
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == "job_hook" and event["data"]["status"] == "succeeded"


def test_a_receiver_with_another_secret_rejects_the_delivery(receiver):
    notifier(secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY").notify(finished(receiver.url))

    assert receiver.events == []
    assert len(receiver.rejected) == 1


def test_the_event_id_is_stable_for_the_same_job_and_status_and_differs_per_status(server):
    send = notifier()
    send.notify(finished(server.url))
    send.notify(finished(server.url))
    send.notify(finished(server.url, status=JobStatus.FAILED))

    ids = [r.headers["webhook-id"] for r in server.requests]
    assert ids == ["evt_job_hook_succeeded", "evt_job_hook_succeeded", "evt_job_hook_failed"]
    assert [r.json()["id"] for r in server.requests] == ids
    first = server.requests[0]
    assert first.headers["webhook-signature"].startswith("v1,")
    assert abs(int(first.headers["webhook-timestamp"]) - time.time()) < 60
    assert first.headers["content-type"] == "application/json"


def test_without_a_secret_the_delivery_carries_id_and_timestamp_but_no_signature(server):
    notifier(secret=None).notify(finished(server.url))

    [request] = server.requests
    assert request.headers["webhook-id"] == "evt_job_hook_succeeded"
    assert "webhook-signature" not in request.headers


def test_only_terminal_jobs_and_the_events_asked_for_are_delivered(server):
    send = notifier()
    send.notify(finished(server.url, status=JobStatus.RUNNING))
    send.notify(finished(server.url, status=JobStatus.SUCCEEDED, events=("failed",)))
    send.notify(make_job("job_no_hook", status=JobStatus.SUCCEEDED))
    send.notify(finished(server.url, status=JobStatus.FAILED, events=("failed",), job_id="job_wanted"))

    assert [r.json()["id"] for r in server.requests] == ["evt_job_wanted_failed"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirecting_receiver_is_not_followed(server, status, caplog):
    target = RecordingServer().start()
    try:
        server.status = status
        server.headers = {"Location": f"{target.url}/stolen"}

        with caplog.at_level(logging.INFO, logger="jobadapters.webhook_sender"):
            notifier().notify(finished(f"{server.url}/hooks"))

        assert len(server.requests) == 1
        assert target.requests == []
        assert f"answered {status}" in caplog.text
    finally:
        target.stop()


@pytest.mark.parametrize(("host", "port"), [
    ("127.0.0.1", 8080),
    ("10.0.0.1", 443),
    ("169.254.169.254", None),
    ("localhost", None),
    ("::1", None),
    ("192.168.1.20", None),
])
def test_resolve_refuses_non_public_targets(host, port):
    with pytest.raises(RefusedTargetError, match="non-public"):
        resolve(host, port, allow_private=False)


def test_resolve_accepts_a_public_address_and_returns_it():
    assert resolve("93.184.216.34", 443, allow_private=False) == "93.184.216.34"  # an IP literal: no DNS needed


def test_resolve_allows_a_private_target_only_when_told_to():
    assert resolve("127.0.0.1", 8080, allow_private=True) == "127.0.0.1"


def test_a_loopback_receiver_is_never_contacted_unless_private_targets_are_allowed(server, caplog):
    with caplog.at_level(logging.WARNING, logger="jobadapters.webhook_sender"):
        notifier(allow_private_targets=False).notify(finished(server.url))

    assert server.requests == []
    assert "non-public" in caplog.text


def test_a_receiver_answering_500_does_not_raise_into_the_caller(server, caplog):
    server.status = 500

    with caplog.at_level(logging.INFO, logger="jobadapters.webhook_sender"):
        notifier().notify(finished(server.url))

    assert len(server.requests) == 1
    assert "answered 500" in caplog.text


def test_a_hanging_receiver_gives_up_after_the_timeout_without_raising(server, caplog):
    server.hold.clear()
    started = time.monotonic()

    with caplog.at_level(logging.WARNING, logger="jobadapters.webhook_sender"):
        notifier(timeout_s=0.3).notify(finished(server.url))

    assert time.monotonic() - started < 2
    assert "not delivered" in caplog.text


def test_with_an_executor_notify_returns_at_once_and_delivers_in_the_background(server):
    server.hold.clear()
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        notifier(executor=pool).notify(finished(server.url))
        assert time.monotonic() - started < 0.2
        server.hold.set()
    assert len(server.requests) == 1


def test_a_host_that_rebinds_to_loopback_after_the_check_is_not_contacted(server, monkeypatch):
    """GIVEN a webhook host whose DNS answers a public address first and 127.0.0.1 afterwards
    WHEN a delivery is made with private targets refused
    THEN the connection goes to the address that was checked, and the loopback receiver is never contacted."""
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34"])
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

    notifier(allow_private_targets=False, timeout_s=0.5).notify(finished(f"http://hooks.rebind.example:{port}/hooks"))

    assert connected_to == [("93.184.216.34", port)]
    assert server.requests == []
