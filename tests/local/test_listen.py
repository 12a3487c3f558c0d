"""Every local server takes a burst of connections as the service it stands for does (local.listen): the default listen
backlog of 5 made a worker's 32 concurrent model calls wait 7-11 s for TCP's SYN retries. And it stops without waiting
out its poll."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

from local.claude_standin import ClaudeStandIn
from local.gateway import Gateway
from local.listen import LISTEN_BACKLOG, BurstHTTPServer
from local.webhook_receiver import WebhookReceiver


def test_the_stand_in_the_gateway_and_the_webhook_receiver_listen_with_a_burst_s_backlog():
    with ClaudeStandIn() as standin:
        assert standin._server is not None and standin._server.request_queue_size == LISTEN_BACKLOG
    gateway = Gateway(lambda event, context: {"statusCode": 200, "body": ""}, require_key=False)
    receiver = WebhookReceiver("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    try:
        assert gateway._server.request_queue_size == LISTEN_BACKLOG
        assert receiver._server.request_queue_size == LISTEN_BACKLOG
    finally:
        gateway._server.server_close()
        receiver._server.server_close()


def test_a_stop_does_not_wait_for_the_serving_loops_poll():
    """With an hour's poll, a stop that waited for it would hang until the per-test timeout stops the suite."""
    server = BurstHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 3600}, daemon=True)
    serving.start()
    try:
        server.shutdown()
        serving.join(timeout=60)
        assert not serving.is_alive()
    finally:
        server.server_close()


def test_a_stop_of_a_server_that_never_served_closes_it_and_returns():
    """``socketserver``'s shutdown waits for a serving loop to end, forever if none ever ran (a local pipeline stopped
    after a partial start hung so on its webhook receiver). Stopped in a thread, so that a hang fails this test."""
    server = BurstHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    stopping = threading.Thread(target=server.stop, daemon=True)
    stopping.start()
    stopping.join(timeout=60)
    assert not stopping.is_alive()
    assert server.socket.fileno() == -1  # closed
