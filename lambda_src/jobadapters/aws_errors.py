"""botocore's errors, sorted: those that mean "the service is unavailable right now, retry" become
:class:`jobcore.errors.StoreUnavailableError` (the router answers 503, a worker retries), with a
message of ours; their own text (request ids, table names, the account's limits) is logged, never
shown to a tenant. Anything else (access denied, a missing table: a deployment bug) is left as it is.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from jobcore.errors import StoreUnavailableError

log = logging.getLogger(__name__)

# Error codes of DynamoDB, S3 and SQS that mean "too much, or not now": throttling and server-side failures.
TRANSIENT_CODES = frozenset({
    "ProvisionedThroughputExceededException", "RequestLimitExceeded", "ThrottlingException", "Throttling",
    "ThrottledException", "TooManyRequestsException", "RequestThrottled", "RequestThrottledException", "SlowDown",
    "InternalServerError", "InternalError", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException",
    "RequestTimeout", "RequestTimeoutException", "TransactionInProgressException",
})

_F = TypeVar("_F", bound=Callable[..., Any])


class RequestTimeSpentError(BotoCoreError):
    """An AWS call not attempted: the request it serves has too little time left for it
    (:mod:`jobadapters.request_time`). Transient, like a timeout: a retry of the request may succeed."""

    fmt = "not calling AWS: the request has {left_s:.1f} s left, and an attempt may take {attempt_s:.1f} s"


def transient(error: BaseException) -> bool:
    """Whether ``error`` is botocore's way of saying the service throttled, failed or could not be reached."""
    if isinstance(error, (BotoConnectionError, HTTPClientError, RequestTimeSpentError)):  # endpoint unreachable,
        return True  # connect or read timeout, reset; or no time left to try
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return details.get("Code") in TRANSIENT_CODES or status >= 500 or status == 429
    return False


@contextmanager
def unavailable_as(what: str) -> Iterator[None]:
    """Within it, a transient botocore error becomes StoreUnavailableError("``what`` is unavailable …")."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        if not transient(error):
            raise
        log.warning("%s unavailable: %s", what, error)
        raise StoreUnavailableError(f"{what} is unavailable (throttled or unreachable); retry shortly") from error


def translated(what: str) -> Callable[[_F], _F]:
    """A method decorator: its transient botocore errors become StoreUnavailableError (see unavailable_as)."""

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with unavailable_as(what):
                return method(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
