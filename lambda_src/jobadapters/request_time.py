"""AWS calls on a request's path, bounded by the time the request has left.

API Gateway gives up on a request after ``API_GATEWAY_TIMEOUT_S`` (29 s) and answers the client 504 itself.
The router must answer first: a 503 (retry shortly) when DynamoDB or S3 cannot answer, never a gateway
timeout. The boto3 defaults (a 60 s read timeout, several attempts) and the workers' bounds (3 attempts of
up to 10 s) both outlast it, so the router's clients are made with two bounds of their own:

- each *attempt* is bounded: it connects within :data:`CONNECT_TIMEOUT_S` and hears the first byte of the
  answer within :data:`READ_TIMEOUT_S` (a socket timeout: silence that long, not a whole transfer), at most
  :data:`ATTEMPTS` attempts: one call gives up within :data:`CALL_BOUND_S`;
- before each attempt, the request's :class:`RequestDeadline` (started when the request arrives: the
  gateway's timeout or the Lambda's own, whichever comes first, less :data:`ANSWER_MARGIN_S` to answer in):
  an attempt that could end past it is never started. The call fails at once with
  :class:`~jobadapters.aws_errors.RequestTimeSpentError`, which is transient: the adapters raise
  StoreUnavailableError (or EnqueueError) and the router answers 503, with the job's id when it was recorded.

So a hanging S3 or DynamoDB costs a request at most its deadline, whatever the number of calls on its path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from botocore.config import Config

from jobadapters.aws_errors import RequestTimeSpentError
from jobcore.limits import API_GATEWAY_TIMEOUT_S

CONNECT_TIMEOUT_S = 2.0
# DynamoDB answers in milliseconds and S3 starts answering a PUT of a few MB as soon as it has it: a second
# of silence is already an outage; three leave room for a slow moment without holding a request hostage.
READ_TIMEOUT_S = 3.0
ATTEMPTS = 2
ATTEMPT_BOUND_S = CONNECT_TIMEOUT_S + READ_TIMEOUT_S
# The standard retry mode waits at most 1 s (a random fraction of 2 ** 0) before the second attempt.
RETRY_BACKOFF_MAX_S = 1.0
CALL_BOUND_S = ATTEMPTS * ATTEMPT_BOUND_S + (ATTEMPTS - 1) * RETRY_BACKOFF_MAX_S
# Kept back from the deadline for what follows the last AWS call: the answer's rendering and its way back.
ANSWER_MARGIN_S = 1.0

CONFIG = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                retries={"total_max_attempts": ATTEMPTS, "mode": "standard"})

_C = TypeVar("_C")


class RequestDeadline:
    """When the current request must have its answer, per thread (the local gateway answers requests in
    threads); bound to boto3 clients, it refuses an attempt that could end past it. No deadline set (outside
    a request): calls are bounded by the clients' own timeouts only."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic, attempt_bound_s: float = ATTEMPT_BOUND_S):
        self._monotonic = monotonic
        self._attempt_bound_s = attempt_bound_s
        self._local = threading.local()

    @contextmanager
    def request(self, context: Any = None) -> Iterator[None]:
        """The deadline of one request, from now: the gateway's timeout, or the Lambda ``context``'s remaining
        time when that is shorter, less ANSWER_MARGIN_S."""
        budget_s = float(API_GATEWAY_TIMEOUT_S)
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining):
            budget_s = min(budget_s, remaining() / 1000)
        self._local.at = self._monotonic() + budget_s - ANSWER_MARGIN_S
        try:
            yield
        finally:
            self._local.at = None

    def left_s(self) -> float | None:
        """Seconds left to the current request's deadline; None outside a request."""
        at = getattr(self._local, "at", None)
        return None if at is None else at - self._monotonic()

    def check(self, **_: Any) -> None:
        """botocore's ``before-send`` hook (every attempt, retries included): refuse an attempt that could end
        past the deadline."""
        left = self.left_s()
        if left is not None and left < self._attempt_bound_s:
            raise RequestTimeSpentError(left_s=max(left, 0.0), attempt_s=self._attempt_bound_s)

    def bind(self, client: _C) -> _C:
        """``client`` (a boto3 client, or a resource such as a DynamoDB Table), its attempts checked first."""
        low_level: Any = getattr(getattr(client, "meta", None), "client", None) or client
        low_level.meta.events.register_first("before-send", self.check, unique_id=f"request-deadline-{id(self)}")
        return client


# The router's: its clients are bound to it and its handler starts it for each request.
REQUEST_DEADLINE = RequestDeadline()
