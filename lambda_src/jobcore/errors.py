"""The domain's errors. Each maps to one HTTP status (router) and one SQS outcome (worker)."""

from __future__ import annotations

from jobcore.capacity import PHRASES


class JobError(Exception):
    """Base of every error the core raises on purpose."""

    type = "internal_error"
    retryable = False


class BadRequestError(JobError):
    """The request body is not what the API accepts (not UTF-8, not JSON, not text); ``field`` names
    where, when a place in it is to blame (``input.messages[0].content``)."""

    type = "bad_request"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class PayloadTooLargeError(JobError):
    """The request is larger than the router can be handed (a Lambda event's 6 MB)."""

    type = "payload_too_large"


class InvalidInputError(JobError):
    """A field of the request or of the task input is wrong; ``field`` names it (dotted path)."""

    type = "invalid_input"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownTaskError(JobError):
    type = "unknown_task"


class UnauthenticatedError(JobError):
    """No caller identity: every route requires an API key, which names the tenant."""

    type = "unauthenticated"


class JobNotFoundError(JobError):
    type = "not_found"


class JobFinishedError(JobError):
    """The job is already finished: it cannot be canceled (409, with its state)."""

    type = "job_finished"

    def __init__(self, message: str, *, status: str):
        super().__init__(message)
        self.status = status


class IdempotencyMismatchError(InvalidInputError):
    """The Idempotency-Key was used before with another request body."""

    type = "idempotency_mismatch"

    def __init__(self, message: str):
        super().__init__("Idempotency-Key", message)


class IdempotencyInProgressError(JobError):
    """A request with this Idempotency-Key is still being answered; retry shortly."""

    type = "idempotency_in_progress"


class UnroutableError(JobError):
    """The request is valid but no lane can run it (sync + GPU, memory beyond every lane...)."""

    type = "unroutable"


class ConflictError(JobError):
    """A conditional write lost: the job changed since it was read (or already exists)."""

    type = "conflict"


class InvalidTransitionError(ConflictError):
    """The lifecycle forbids this move (e.g. a finished job cannot start again)."""


class NoDeliveryError(ConflictError):
    """A redelivery was asked of a job with no webhook delivery (no webhook, or not finished yet)."""

    type = "no_delivery"


class MisconfiguredError(JobError):
    """The deployment's settings are invalid: the service refuses work until they are fixed."""

    type = "misconfigured"


class EnqueueError(JobError):
    """The queue refused the job; the job is marked failed and the client told to retry."""

    type = "unavailable"


class StoreUnavailableError(JobError):
    """A store we depend on (DynamoDB, S3) throttled us, failed (5xx) or could not be reached: retry shortly.

    The adapters raise it in place of botocore's errors, whose text never reaches a tenant (it is logged).
    ``job_id`` names a job that was recorded before the failure (the router answers 503 with it, so the
    client polls that job rather than submitting it again).
    """

    type = "unavailable"
    retryable = True

    def __init__(self, message: str, *, job_id: str | None = None):
        super().__init__(message)
        self.job_id = job_id


class BlobNotFoundError(JobError):
    """A stored document (a result, a large input) is gone: deleted by the bucket's lifecycle, or by hand."""

    type = "not_found"


# --- model (Claude) errors: the adapter maps SDK exceptions onto these -------------------------


class ModelError(JobError):
    """Claude could not answer. ``retryable`` decides between backing off and failing the job."""

    type = "model_error"


class SyncUnavailableError(JobError):
    """A ``mode: sync`` job met a model that could not answer in time: sync means inline or not at all, so
    it is not queued. The job is recorded failed; the client is told when to try again (``retry_after_s``)
    and that ``mode: auto`` would have queued it."""

    type = "model_unavailable"
    retryable = True

    def __init__(self, message: str, *, job_id: str | None, retry_after_s: int):
        super().__init__(message)
        self.job_id = job_id
        self.retry_after_s = retry_after_s


class InlineBusyError(SyncUnavailableError):
    """A ``mode: sync`` job found every inline slot of the router in use (jobcore.concurrency): not recorded, not
    queued (sync means inline or not at all); the client is told when to try again, and that ``mode: auto``
    would have queued it."""

    type = "router_busy"


# The kinds of ModelUnavailableError that mean the model itself is down for a while (not this job's
# fault): a worker waits for it, re-queued with a delay, without spending the job's receives.
MODEL_DOWN_KINDS = frozenset({"rate_limited", "overloaded", "server_error", "unreachable"})


class ModelUnavailableError(ModelError):
    """Timed out, rate limited (429), overloaded (529) or a 5xx: try later, elsewhere.

    The message is ours, fit for the tenant (the adapter logs the SDK's own text). ``kind`` says which:
    ``rate_limited``, ``overloaded``, ``server_error``, ``unreachable`` (the model is down: see
    :data:`MODEL_DOWN_KINDS`), ``timeout`` or ``unavailable`` (anything else, e.g. the inline budget).
    """

    type = "model_unavailable"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, status: int | None = None,
                 kind: str | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status = status
        self.kind = kind or _kind_of(status)

    @property
    def model_down(self) -> bool:
        """The model is rate-limited, overloaded or failing: worth waiting for, whatever the job."""
        return self.kind in MODEL_DOWN_KINDS

    def describe(self) -> str:
        """A short phrase for the job's view: ``model rate-limited (429)``."""
        status = f" ({self.status})" if self.status is not None else ""
        return {
            "rate_limited": "model rate-limited", "overloaded": "model overloaded", "server_error": "model server error",
            "unreachable": "model unreachable", "timeout": "model timed out",
        }.get(self.kind, "model unavailable") + status


def _kind_of(status: int | None) -> str:
    if status == 429:
        return "rate_limited"
    if status == 529:
        return "overloaded"
    if status is not None and status >= 500:
        return "server_error"
    return "unavailable"


class ModelRequestError(ModelError):
    """Claude refused the request itself (400, 401, 403, 404...): retrying cannot help."""

    type = "model_rejected"


class TaskOutputError(JobError):
    """The model answered, but not with what the task promises (e.g. an invalid invoice)."""

    type = "invalid_output"


class JobCanceledError(JobError):
    """Raised inside a run when its job is being canceled: the run stops, the job ends canceled."""

    type = "canceled"


class TaskTimeoutError(JobError):
    """The job ran past its task's time limit."""

    type = "timed_out"


class CapacityWaitError(ModelUnavailableError):
    """The call was not made: the model's shared budget (jobcore.capacity) grants it no sooner than
    ``expected_at_ms``, later than the caller can wait. Not the model's failure and not the job's: a queued job
    waits for it re-queued with a delay (no receive, no attempt spent, not counted toward the runner's
    ``model_wait_limit_s``); an inline job falls back to the queue (``auto``) or is refused with this Retry-After
    (``sync``). ``dimension``: the limit that binds (``input_tokens``...), None when a 429's Retry-After does."""

    def __init__(self, message: str, *, expected_at_ms: int, now_ms: int, dimension: str | None):
        super().__init__(message, retry_after_s=max(1.0, (expected_at_ms - now_ms) / 1000), kind="capacity")
        self.expected_at_ms = expected_at_ms
        self.dimension = dimension

    def describe(self) -> str:
        """``model capacity (input tokens)``: the job view's reason."""
        return f"model capacity ({PHRASES.get(self.dimension or '', 'rate-limited')})"


class BudgetExceededError(JobError):
    """A job would cost more than its tenant may still spend this month, or more than its own ``max_cost_usd``
    (refused at submission, 402 with the figures); or a running job reached its ``max_cost_usd`` (it fails)."""

    type = "budget_exceeded"

    def __init__(self, message: str, *, figures: dict[str, float | str]):
        super().__init__(message)
        self.figures = figures
