"""The ``POST /v1/jobs`` body, checked field by field into a SubmitRequest."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jobcore import jsonbody
from jobcore.addresses import MalformedHostError, host_refusal
from jobcore.errors import BadRequestError, InvalidInputError
from jobcore.limits import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    MAX_WEBHOOK_URL_CHARS,
    SQS_MAX_RETENTION_S,
)
from jobcore.model import JobStatus, Mode, Webhook
from jobcore.routing import Hints
from jobcore.validation import expect_object, field_path, get, in_range, quoted, reject_unknown
from jobcore.webhooks import COMPLETED, EVENT_TYPES, normalise_event

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_URL_CHARACTERS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space
_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True, kw_only=True)
class SubmitRequest:
    task: str
    input: Any
    mode: Mode = Mode.AUTO
    hints: Hints = Hints()
    webhook: Webhook | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    max_queue_s: float | None = None  # a job not started by then expires, never runs
    input_upload: str | None = None  # an upload's id (jobcore.uploads) in place of ``input``
    max_cost_usd: float | None = None  # refused if its estimate is higher; stopped between model calls on reaching it


def parse_json(body: str | bytes | None) -> Any:
    """The request body parsed, and checked whole by :mod:`jobcore.jsonbody` (numbers DynamoDB can
    store, text UTF-8 can encode, bounded nesting): BadRequestError or InvalidInputError otherwise."""
    if not body:
        raise BadRequestError("the request body is empty; send a JSON object")
    return jsonbody.parse(body)


def parse_submit(body: Any, *, allow_http_webhooks: bool = False) -> SubmitRequest:
    """``POST /v1/jobs``'s body. ``allow_http_webhooks``: the local runtime's receivers, plain ``http``
    on loopback (every other non-public target stays refused)."""
    body = expect_object(body, "body")
    reject_unknown(body, {"task", "input", "input_upload", "mode", "hints", "webhook", "metadata", "max_queue_s",
                         "max_cost_usd"}, "")
    task = get(body, "task", str, "")
    if "input_upload" in body:
        if "input" in body:
            raise InvalidInputError("input_upload", "send either input or input_upload, not both")
        get(body, "input_upload", str, "")
    elif "input" not in body:
        raise InvalidInputError("input", "is required (or input_upload: an upload's id from POST /v1/uploads)")
    return SubmitRequest(
        task=task,
        input=body.get("input"),
        input_upload=body.get("input_upload"),
        mode=_mode(body),
        hints=_hints(body.get("hints")),
        webhook=_webhook(body.get("webhook"), allow_http=allow_http_webhooks),
        metadata=_metadata(body.get("metadata")),
        max_queue_s=_max_queue_s(body),
        max_cost_usd=_max_cost_usd(body),
    )


# A job's own cost cap: a tenth of a micro-dollar would stop every job; a million dollars is no cap.
MAX_COST_USD_RANGE = (0.000001, 1_000_000.0)


def _max_cost_usd(body: dict[str, Any]) -> float | None:
    value = get(body, "max_cost_usd", float, "", required=False)
    if value is not None:
        in_range(value, "max_cost_usd", *MAX_COST_USD_RANGE)
    return None if value is None else float(value)


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
        raise InvalidInputError("mode", f"must be one of {', '.join(mode.value for mode in Mode)}") from None


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
    url = webhook_url(get(hook, "url", str, "webhook"), allow_http=allow_http, allow_loopback=allow_http)
    return Webhook(url, _events(hook.get("events")))


def webhook_url(url: str, *, allow_http: bool = False, allow_loopback: bool = False) -> str:
    """``url`` if a webhook can be delivered there; InvalidInputError naming ``webhook.url`` if it is
    malformed, or points somewhere the dispatcher will never send to (:mod:`jobcore.addresses`, checked
    without DNS: the dispatcher resolves the host again on every attempt)."""
    schemes = ("http", "https") if allow_http else ("https",)

    def refuse(why: str) -> InvalidInputError:
        return InvalidInputError("webhook.url", why)

    if len(url) > MAX_WEBHOOK_URL_CHARS:
        raise refuse(f"must be at most {MAX_WEBHOOK_URL_CHARS:,} characters, not {len(url):,}")
    if not _URL_CHARACTERS.fullmatch(url):
        raise refuse("must be printable ASCII without spaces (percent-encode anything else, an IDN host as punycode)")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, say
        raise refuse("is not a valid URL") from None
    if parts.scheme not in schemes or not parts.netloc:
        raise refuse(f"must be an absolute {' or '.join(schemes)} URL")
    if "@" in parts.netloc:
        raise refuse("must not carry a user name or password")
    host, port, bracketed = _host_and_port(parts.netloc)
    if not host:
        raise refuse("must name a host")
    if bracketed and ":" not in host:
        raise refuse("has a host that is not a valid IPv6 address")
    if port is not None and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65_535):
        raise refuse("has an invalid port: a port is a number from 1 to 65535")
    try:
        refused = host_refusal(host, allow_loopback=allow_loopback)
    except MalformedHostError as error:
        raise refuse(f"has a host that {error}") from None
    if refused:
        raise refuse(f"points at {refused}, where a webhook can never be delivered; use a public https URL")
    return url


def _host_and_port(netloc: str) -> tuple[str, str | None, bool]:
    """The host (an IPv6 literal without its brackets), the port's text (None when absent or empty) and
    whether the host was in brackets; an empty host when the brackets are wrong."""
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return "", None, True
        return host, rest[1:] or None, True
    if "[" in netloc or "]" in netloc:
        return "", None, False
    host, _, port = netloc.partition(":")
    return host, port or None, False


def _events(raw: Any) -> tuple[str, ...]:
    """The webhook's events, normalised (``job.failed`` → ``failed``); each wrong one named."""
    if raw is None:
        return (COMPLETED,)
    known = ", ".join([COMPLETED, *(name.removeprefix("job.") for name in sorted(EVENT_TYPES))])
    if not isinstance(raw, list):
        raise InvalidInputError("webhook.events", f"must be a list of event names: {known}")
    if not raw:
        raise InvalidInputError("webhook.events", f"must not be empty (leave it out for {COMPLETED!r}); events: {known}")
    events: list[str] = []
    for i, name in enumerate(raw):
        where = f"webhook.events[{i}]"
        if not isinstance(name, str):
            raise InvalidInputError(where, f"must be an event name: {known}")
        event = normalise_event(name)
        if event is None:
            raise InvalidInputError(where, f"{quoted(name)} is not an event; events: {known} (or job.<state>)")
        if event in events:
            raise InvalidInputError(where, f"repeats {event!r}, already listed")
        events.append(event)
    return tuple(events)


def _metadata(raw: Any) -> dict[str, str]:
    """Up to MAX_METADATA_KEYS string values by key (see :mod:`jobcore.limits`), each wrong one named."""
    if raw is None:
        return {}
    metadata = expect_object(raw, "metadata")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidInputError("metadata", f"must have at most {MAX_METADATA_KEYS} keys, not {len(metadata)}")
    for key, value in metadata.items():
        where = field_path("metadata", key)
        if not key:
            raise InvalidInputError(where, "a key must not be empty")
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise InvalidInputError(where, f"a key must be at most {MAX_METADATA_KEY_CHARS} characters, not {len(key):,}")
        if _CONTROL.search(key):
            raise InvalidInputError(where, "a key must not contain control characters")
        if not isinstance(value, str):
            raise InvalidInputError(where, "must be a string")
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise InvalidInputError(where, f"must be at most {MAX_METADATA_VALUE_CHARS} characters, not {len(value):,}")
    return dict(metadata)


MAX_PAGE = 100
MAX_WAIT_S = 20  # a long poll answers within API Gateway's 29 s, with room to spare
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ListQuery:
    status: JobStatus | None = None
    limit: int = 20
    cursor: str | None = None
    source: str | None = None  # an S3 intake object, s3://bucket/key: only its jobs


def parse_list_query(params: Mapping[str, str] | None) -> ListQuery:
    """``GET /v1/jobs``'s query string: ``status``, ``limit`` (1 to 100), ``cursor``."""
    params = dict(params or {})
    reject_unknown(params, {"status", "limit", "cursor", "source"}, "query")
    source = params.get("source") or None
    if source is not None and (not source.startswith("s3://") or len(source) > 1100):
        raise InvalidInputError("query.source", "must be an S3 intake object's URL, s3://bucket/key")
    status = None
    if "status" in params:
        try:
            status = JobStatus(params["status"])
        except ValueError:
            raise InvalidInputError("query.status", f"must be one of {', '.join(s.value for s in JobStatus)}") from None
    limit = _whole_number(params.get("limit"), "query.limit", 1, MAX_PAGE, default=20)
    return ListQuery(status=status, limit=limit, cursor=params.get("cursor") or None, source=source)


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
