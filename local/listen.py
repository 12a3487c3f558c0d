"""The local servers' HTTP server: threaded, and with a listen backlog that takes a burst.

``socketserver``'s default backlog is 5 connections waiting to be accepted. Past it the kernel drops the client's
SYN, and the client's TCP retries it 1, 3, 7 s later: under a worker's 32 concurrent model calls the stand-in's answers
came 7-11 s late in bursts (a 1 s latency), and a burst of submits or webhook deliveries stalled the same way. The
services these servers stand for (API Gateway, the Anthropic API, a webhook receiver behind a load balancer) accept
such bursts.
"""

from __future__ import annotations

from http.server import ThreadingHTTPServer

LISTEN_BACKLOG = 128


class BurstHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG
