"""The API's wire conventions: its error answer (raised anywhere in a request to end it) and its timestamps."""

from __future__ import annotations

import datetime as dt
from typing import Any


class ApiError(Exception):
    """An error answer in the real API's shape; raising it anywhere in a request ends that request."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.headers = headers or {}

    def payload(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.error_type, "message": self.message}}


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def rfc3339(seconds: float | None) -> str | None:
    """Seconds since the epoch as the API writes a time (``2026-12-01T12:00:00.250000Z``); None stays None."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
