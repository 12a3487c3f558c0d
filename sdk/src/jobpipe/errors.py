"""The SDK's exceptions: one class per error ``type`` the API answers with, and the transport's own.

Every error the API returns has the body ``{"error": {"type", "message", "field"?, "job_id"?, "links"?}}``;
:func:`from_response` turns it into the class registered for its ``type`` (:data:`ERROR_TYPES`), or, for a
``type`` this SDK does not know yet (or a body that is not the API's, such as API Gateway's own 403 or 429),
into the class for its HTTP status. A job that *finished* badly is not an exception: ``jobs.wait`` returns
it, and :meth:`jobpipe.Job.raise_for_status` raises the class of its ``error.type`` when you want one.

    JobpipeError
    ├── APIConnectionError          no answer: refused, reset, DNS
    │   └── APITimeoutError         connected (or tried to), but nothing came back in time
    ├── WaitTimeoutError            jobs.wait: the job did not finish within the time given
    └── APIError                    the API answered with an error (``status_code``, ``type``, ``field``...)
        ├── BadRequestError (400, bad_request), InvalidInputError (422, invalid_input), ...
        └── ...                     one per ``type``: see ERROR_TYPES
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class JobpipeError(Exception):
    """Base of every exception the SDK raises."""

    attempts = 1  # how many times the failed request was sent, retries included


class APIConnectionError(JobpipeError):
    """The API could not be reached (connection refused or reset, DNS, TLS)."""

    def __init__(self, message: str, *, url: str | None = None):
        super().__init__(message)
        self.url = url


class APITimeoutError(APIConnectionError, TimeoutError):
    """The API did not answer within the client's timeout (connect or read)."""


class WaitTimeoutError(JobpipeError, TimeoutError):
    """``jobs.wait``: the job was not finished within the time given; ``job`` is its last state seen."""

    def __init__(self, message: str, *, job_id: str, job: Any = None):
        super().__init__(message)
        self.job_id = job_id
        self.job = job


class APIError(JobpipeError):
    """The API answered with an error. ``type`` is the body's ``error.type`` (or, for an answer that is
    not the API's own, the class's default); ``field`` names the input to blame (422 ``invalid_input``);
    ``job_id`` a job recorded before the failure (poll it rather than submitting again);
    ``retry_after`` the seconds the ``Retry-After`` header asked for."""

    type = "error"

    def __init__(self, message: str, *, status_code: int | None = None, type: str | None = None,
                 field: str | None = None, job_id: str | None = None, links: Mapping[str, str] | None = None,
                 retry_after: float | None = None, body: Any = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        if type is not None:
            self.type = type
        self.field = field
        self.job_id = job_id
        self.links = dict(links or {})
        self.retry_after = retry_after
        self.body = body
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        status = f"{self.status_code} " if self.status_code is not None else ""
        return f"{status}{self.type}: {self.message}"


# --- one class per error type ------------------------------------------------------------------------


class BadRequestError(APIError):
    """400: the body is not what the API accepts (not JSON, not UTF-8...)."""

    type = "bad_request"


class UnauthenticatedError(APIError):
    """401 (or API Gateway's 403): no valid API key."""

    type = "unauthenticated"


class NotFoundError(APIError):
    """404: no such job (another tenant's job is missing too), no such route, or a stored result is gone."""

    type = "not_found"


class PayloadTooLargeError(APIError):
    """413: the request is larger than the API takes (use an upload)."""

    type = "payload_too_large"


class InvalidInputError(APIError):
    """422: a field of the request or of the task's input is wrong; ``field`` names it."""

    type = "invalid_input"


class IdempotencyMismatchError(InvalidInputError):
    """422: the Idempotency-Key was used before with another body."""

    type = "idempotency_mismatch"


class UnknownTaskError(APIError):
    """422: no task of that name (``jobpipe tasks`` lists them)."""

    type = "unknown_task"


class UnroutableError(APIError):
    """422: a valid job no lane can run (``mode: sync`` for a long job, memory beyond every lane...)."""

    type = "unroutable"


class ConflictError(APIError):
    """409: the job changed while the request was answered."""

    type = "conflict"


class JobFinishedError(ConflictError):
    """409: the job is already finished (cannot be canceled); ``status`` is its state."""

    type = "job_finished"

    @property
    def status(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("status") if isinstance(error, dict) else None


class NoDeliveryError(ConflictError):
    """409: the job has no webhook delivery to send again."""

    type = "no_delivery"


class IdempotencyInProgressError(ConflictError):
    """409: a request with this Idempotency-Key is still being answered (the client retries it)."""

    type = "idempotency_in_progress"


class RateLimitedError(APIError):
    """429: too many requests (API Gateway's usage plan); the client retries it after ``retry_after``."""

    type = "rate_limited"


class InternalError(APIError):
    """500: the API failed; the request id is in its logs."""

    type = "internal_error"


class UnavailableError(APIError):
    """503: a queue or store the API depends on is unavailable; retry after ``retry_after``."""

    type = "unavailable"


class RouterBusyError(UnavailableError):
    """503 for a ``mode: sync`` job when the router's inline runs are at their concurrency budget (nothing was
    recorded); retry after ``retry_after``, or submit it ``auto`` to have it queued."""

    type = "router_busy"


class MisconfiguredError(APIError):
    """503: the deployment's settings are invalid; its operator must fix them."""

    type = "misconfigured"


class ModelError(APIError):
    """A job's model (Claude) could not answer."""

    type = "model_error"


class ModelUnavailableError(ModelError):
    """503 for a ``mode: sync`` job whose model was busy (``job_id``: the failed job; ``retry_after``);
    a job's error when the model stayed unavailable."""

    type = "model_unavailable"


class ModelRejectedError(ModelError):
    """A job's error: the model refused the request itself."""

    type = "model_rejected"


class InvalidOutputError(APIError):
    """A job's error: the model answered, but not with what the task promises."""

    type = "invalid_output"


class CanceledError(APIError):
    """A job's error: it was canceled."""

    type = "canceled"


class BudgetExceededError(APIError):
    """402: the job's estimate exceeds its ``max_cost_usd`` or the tenant's budget left this month (``figures`` in the
    body say by how much); or, as a job's error, its run reached its ``max_cost_usd``."""

    type = "budget_exceeded"


class TimedOutError(APIError):
    """A job's error: it ran past its task's time limit."""

    type = "timed_out"


def _subclasses(cls: type[APIError]) -> list[type[APIError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


# Each error ``type`` to its class; tests/sdk checks it covers every type the service defines.
ERROR_TYPES: dict[str, type[APIError]] = {cls.type: cls for cls in _subclasses(APIError)}

# For an answer whose ``type`` is unknown (or missing): the class of its HTTP status.
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError, 401: UnauthenticatedError, 402: BudgetExceededError, 403: UnauthenticatedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 422: InvalidInputError, 429: RateLimitedError,
    500: InternalError, 502: UnavailableError, 503: UnavailableError, 504: UnavailableError,
}


def error_class(type_: str | None, status_code: int | None = None) -> type[APIError]:
    """The class for an error ``type``; else the one for ``status_code``; else :class:`APIError`."""
    if type_ in ERROR_TYPES:
        return ERROR_TYPES[type_]
    if status_code is not None:
        if status_code in _BY_STATUS:
            return _BY_STATUS[status_code]
        if status_code >= 500:
            return InternalError
    return APIError


def from_response(status_code: int, body: bytes, headers: Mapping[str, str], *, retry_after: float | None = None) -> APIError:
    """The exception for an error answer: its body's ``error`` when it is the API's, else its status."""
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        cls = error_class(error.get("type"), status_code)
        return cls(error["message"], status_code=status_code, type=error.get("type") or cls.type,
                   field=error.get("field"), job_id=error.get("job_id"), links=error.get("links"),
                   retry_after=retry_after, body=parsed, headers=headers)
    # Not the API's own body: API Gateway's ({"message": "Forbidden"}), a proxy's, or none at all.
    text = parsed.get("message") if isinstance(parsed, dict) and isinstance(parsed.get("message"), str) else None
    if text is None:
        text = body[:200].decode("utf-8", "replace").strip() or f"HTTP {status_code}"
    cls = error_class(None, status_code)
    if status_code == 403:
        text += " (API Gateway refuses a missing or unknown API key with 403: check JOBPIPE_API_KEY)"
    return cls(text, status_code=status_code, retry_after=retry_after, body=parsed, headers=headers)
