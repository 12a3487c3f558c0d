"""The domain's errors. Each maps to one HTTP status (router) and one SQS outcome (worker)."""

from __future__ import annotations


class JobError(Exception):
    """Base of every error the core raises on purpose."""

    type = "internal_error"
    retryable = False


class BadRequestError(JobError):
    """The request body is not what the API accepts (not JSON, not an object)."""

    type = "bad_request"


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


# --- model (Claude) errors: the adapter maps SDK exceptions onto these -------------------------


class ModelError(JobError):
    """Claude could not answer. ``retryable`` decides between backing off and failing the job."""

    type = "model_error"


class ModelUnavailableError(ModelError):
    """Timed out, rate limited (429), overloaded (529) or a 5xx: try later, elsewhere."""

    type = "model_unavailable"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


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
