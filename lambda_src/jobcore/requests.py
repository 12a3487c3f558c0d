"""The ``POST /v1/jobs`` body, checked field by field into a SubmitRequest."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jobcore.errors import BadRequestError, InvalidInputError
from jobcore.limits import SQS_MAX_RETENTION_S
from jobcore.model import JobStatus, Mode, Webhook
from jobcore.routing import Hints
from jobcore.validation import expect_object, get, in_range, reject_unknown
from jobcore.webhooks import COMPLETED, EVENT_TYPES, normalise_event

_MAX_METADATA = 16


@dataclass(frozen=True, kw_only=True)
class SubmitRequest:
    task: str
    input: Any
    mode: Mode = Mode.AUTO
    hints: Hints = Hints()
    webhook: Webhook | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    max_queue_s: float | None = None  # a job not started by then expires, never runs


def parse_json(body: str | None) -> Any:
    if not body:
        raise BadRequestError("the request body is empty; send a JSON object")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise BadRequestError(f"the request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON (and DynamoDB) do not.
    raise BadRequestError(f"the request body is not valid JSON: {name} is not a JSON number")


def parse_submit(body: Any, *, allow_http_webhooks: bool = False) -> SubmitRequest:
    body = expect_object(body, "body")
    reject_unknown(body, {"task", "input", "mode", "hints", "webhook", "metadata", "max_queue_s"}, "")
    task = get(body, "task", str, "")
    if "input" not in body:
        raise InvalidInputError("input", "is required")
    return SubmitRequest(
        task=task,
        input=body["input"],
        mode=_mode(body),
        hints=_hints(body.get("hints")),
        webhook=_webhook(body.get("webhook"), allow_http=allow_http_webhooks),
        metadata=_metadata(body.get("metadata")),
        max_queue_s=_max_queue_s(body),
    )


def _max_queue_s(body: dict[str, Any]) -> float | None:
    value = get(body, "max_queue_s", float, "", required=False)
    if value is not None:
        in_range(value, "max_queue_s", 1, SQS_MAX_RETENTION_S)
    return value


def _mode(body: dict[str, Any]) -> Mode:
    raw = get(body, "mode", str, "", required=False, default="auto")
    try:
        return Mode(raw)
    except ValueError:
        raise InvalidInputError("mode", "must be one of auto, sync, async") from None


def _hints(raw: Any) -> Hints:
    if raw is None:
        return Hints()
    hints = expect_object(raw, "hints")
    reject_unknown(hints, {"expected_duration_s", "memory_mb"}, "hints")
    duration = get(hints, "expected_duration_s", float, "hints", required=False)
    memory = get(hints, "memory_mb", int, "hints", required=False)
    if duration is not None:
        in_range(duration, "hints.expected_duration_s", 0, 7 * 24 * 3600)
    if memory is not None:
        in_range(memory, "hints.memory_mb", 128, 1_048_576)
    return Hints(expected_duration_s=duration, memory_mb=memory)


def _webhook(raw: Any, *, allow_http: bool) -> Webhook | None:
    if raw is None:
        return None
    hook = expect_object(raw, "webhook")
    reject_unknown(hook, {"url", "events"}, "webhook")
    url = get(hook, "url", str, "webhook")
    parts = urlsplit(url)
    schemes = {"https", "http"} if allow_http else {"https"}
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidInputError("webhook.url", f"must be an absolute {' or '.join(sorted(schemes))} URL")
    events = get(hook, "events", list, "webhook", required=False, default=[COMPLETED])
    names = [normalise_event(e) if isinstance(e, str) else None for e in events]
    if not events or None in names:
        known = ", ".join([COMPLETED, *sorted(EVENT_TYPES)])
        raise InvalidInputError("webhook.events", f"must be a non-empty list of {known}")
    return Webhook(url, tuple(dict.fromkeys(name for name in names if name)))


def _metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    metadata = expect_object(raw, "metadata")
    if len(metadata) > _MAX_METADATA:
        raise InvalidInputError("metadata", f"at most {_MAX_METADATA} keys")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(value) > 512:
            raise InvalidInputError(f"metadata.{key}", "must be a string of at most 512 characters")
    return dict(metadata)


MAX_PAGE = 100
MAX_WAIT_S = 20  # a long poll answers within API Gateway's 29 s, with room to spare
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ListQuery:
    status: JobStatus | None = None
    limit: int = 20
    cursor: str | None = None


def parse_list_query(params: Mapping[str, str] | None) -> ListQuery:
    """``GET /v1/jobs``'s query string: ``status``, ``limit`` (1 to 100), ``cursor``."""
    params = dict(params or {})
    reject_unknown(params, {"status", "limit", "cursor"}, "query")
    status = None
    if "status" in params:
        try:
            status = JobStatus(params["status"])
        except ValueError:
            raise InvalidInputError("query.status", f"must be one of {', '.join(s.value for s in JobStatus)}") from None
    limit = _whole_number(params.get("limit"), "query.limit", 1, MAX_PAGE, default=20)
    return ListQuery(status=status, limit=limit, cursor=params.get("cursor") or None)


def parse_wait(params: Mapping[str, str] | None) -> float:
    """``GET /v1/jobs/{id}?wait=N``: seconds to wait for the job to finish (0 to 20)."""
    params = dict(params or {})
    reject_unknown(params, {"wait"}, "query")
    raw = params.get("wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise InvalidInputError("query.wait", f"must be a number of seconds from 0 to {MAX_WAIT_S}") from None
    if not 0 <= wait <= MAX_WAIT_S:
        raise InvalidInputError("query.wait", f"must be a number of seconds from 0 to {MAX_WAIT_S}")
    return wait


def well_formed_job_id(job_id: str) -> bool:
    """Whether ``job_id`` could be a job's id at all (anything else is a 404 without a lookup)."""
    return bool(_JOB_ID.fullmatch(job_id))


def _whole_number(raw: str | None, field_name: str, low: int, high: int, *, default: int) -> int:
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,6}", raw) or not low <= int(raw) <= high:
        raise InvalidInputError(field_name, f"must be a whole number from {low} to {high}")
    return int(raw)
