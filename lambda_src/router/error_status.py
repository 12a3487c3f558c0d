"""One table from domain errors to HTTP statuses: the handler answers with it, the OpenAPI description
(router/openapi.py) documents it."""

from __future__ import annotations

from jobcore import errors

# The most specific class wins.
STATUS_BY_ERROR: list[tuple[type[errors.JobError], int]] = [
    (errors.BadRequestError, 400),
    (errors.PayloadTooLargeError, 413),
    (errors.UnauthenticatedError, 401),
    (errors.InvalidInputError, 422),
    (errors.UnknownTaskError, 422),
    (errors.UnroutableError, 422),
    (errors.BudgetExceededError, 402),
    (errors.JobNotFoundError, 404),
    (errors.JobFinishedError, 409),
    (errors.IdempotencyInProgressError, 409),
    (errors.ConflictError, 409),
    (errors.EnqueueError, 503),
    (errors.StoreUnavailableError, 503),
    (errors.SyncUnavailableError, 503),
    (errors.MisconfiguredError, 503),
]
