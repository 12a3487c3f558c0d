"""The job pipeline's Python SDK and its command line, ``jobpipe``.

    from jobpipe import Client

    client = Client()  # JOBPIPE_API_URL and JOBPIPE_API_KEY, or the file `jobpipe configure` wrote
    job = client.jobs.create("claude.messages", {"max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]},
                             wait=60)
    print(job.status, job.result)
"""

from jobpipe._http import Retries, Timeout
from jobpipe._version import __version__
from jobpipe.client import Client, JobList
from jobpipe.config import ConfigurationError
from jobpipe.errors import (
    ERROR_TYPES,
    APIConnectionError,
    APIError,
    APITimeoutError,
    BadRequestError,
    BudgetExceededError,
    CanceledError,
    ConflictError,
    IdempotencyInProgressError,
    IdempotencyMismatchError,
    InternalError,
    InvalidInputError,
    InvalidOutputError,
    JobFinishedError,
    JobpipeError,
    MisconfiguredError,
    ModelError,
    ModelRejectedError,
    ModelUnavailableError,
    NoDeliveryError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    RouterBusyError,
    TimedOutError,
    UnauthenticatedError,
    UnavailableError,
    UnknownTaskError,
    UnroutableError,
    WaitTimeoutError,
)
from jobpipe.models import TERMINAL_STATUSES, Job, Page
from jobpipe.webhooks import WebhookVerificationError, verify

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "BadRequestError",
    "CanceledError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "ERROR_TYPES",
    "IdempotencyInProgressError",
    "IdempotencyMismatchError",
    "InternalError",
    "InvalidInputError",
    "InvalidOutputError",
    "Job",
    "JobFinishedError",
    "JobList",
    "JobpipeError",
    "MisconfiguredError",
    "ModelError",
    "ModelRejectedError",
    "ModelUnavailableError",
    "NoDeliveryError",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RouterBusyError",
    "Retries",
    "TERMINAL_STATUSES",
    "BudgetExceededError",
    "TimedOutError",
    "Timeout",
    "UnauthenticatedError",
    "UnavailableError",
    "UnknownTaskError",
    "UnroutableError",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "__version__",
    "verify",
]
