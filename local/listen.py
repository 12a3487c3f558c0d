"""The local servers' HTTP server: threaded, with a listen backlog that takes a burst, and a stop that is prompt.

``socketserver``'s default backlog is 5 connections waiting to be accepted. Past it the kernel drops the client's
SYN, and the client's TCP retries it 1, 3, 7 s later: under a worker's 32 concurrent model calls the stand-in's answers
came 7-11 s late in bursts (a 1 s latency), and a burst of submits or webhook deliveries stalled the same way. The
services these servers stand for (API Gateway, the Anthropic API, a webhook receiver behind a load balancer) accept
such bursts.

``socketserver.BaseServer.shutdown`` returns once ``serve_forever`` next looks at its flag: after its ``select`` times
out (``poll_interval``, 0.5 s by default) or a connection arrives. The tests start and stop these servers by the
hundred, and each stop waited out a poll (they polled every 50 ms for it); :meth:`BurstHTTPServer.shutdown` wakes
the ``select`` with a connection, which ``serve_forever`` drops unanswered once the flag is set (CPython's bpo-35017),
so the servers poll at the default interval and a stop is still prompt.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import ThreadingHTTPServer

LISTEN_BACKLOG = 128
WAKE_EVERY_S = 0.005


class BurstHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    serving = False  # serve_forever was called (or its thread started): only then does a stop wait for its end

    def serve_in_thread(self, name: str) -> threading.Thread:
        """Serve in a daemon thread, started; :meth:`stop` ends it."""
        self.serving = True
        thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        thread.start()
        return thread

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self.serving = True
        super().serve_forever(poll_interval)

    def stop(self) -> None:
        """Stop serving (promptly: :meth:`shutdown`) and close the listening socket. A server that never served is
        only closed (``socketserver``'s shutdown would wait forever for a loop that never ran: a local pipeline
        stopped after a partial start hung on its webhook receiver)."""
        if self.serving:
            self.shutdown()
        self.server_close()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` now, not at its next poll; returns when it has returned, like the base class's."""
        stopping = threading.Thread(target=super().shutdown, name="shutdown", daemon=True)
        stopping.start()
        host, port = self.server_address[:2]
        while stopping.is_alive():
            # A wake that comes before the flag is set is served as an empty request (the handler reads nothing and
            # closes); the next one, after it, ends the loop.
            with contextlib.suppress(OSError):
                socket.create_connection((str(host), int(port)), timeout=1).close()
            stopping.join(WAKE_EVERY_S)
