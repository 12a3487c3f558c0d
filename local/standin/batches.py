"""The Message Batches API: batches that advance lazily on the stand-in's clock, and their fail rules."""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.standin.answers import build_message
from local.standin.api import ApiError, invalid, rfc3339
from local.standin.cache import PromptCache
from local.standin.prompt import validate_request

BATCH_MAX_REQUESTS = 100_000
BATCH_MAX_BYTES = 256 * 1024 * 1024
BATCH_LIFETIME_S = 24 * 3600.0  # a batch expires (and ends) this long after its creation
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# Error types a batch request can be told to come back ``errored`` with, and their messages.
BATCH_ERROR_MESSAGES = {
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error.",
    "invalid_request_error": "Invalid request.",
    "rate_limit_error": "Number of requests has exceeded your rate limit.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
}


@dataclass(frozen=True)
class BatchFailRule:
    """Which requests of a new batch fail, and how: ``errored`` (with ``error_type``) or ``expired``.

    Select by exactly one of ``custom_id`` (a regex, ``re.search``ed in the custom id), ``index``
    (0-based position in the batch) or ``fraction`` (0..1: floor(n * fraction) requests, spread evenly).
    """

    custom_id: str | None = None
    index: int | None = None
    fraction: float | None = None
    result: str = "errored"
    error_type: str = "overloaded_error"
    message: str | None = None

    @classmethod
    def parse(cls, spec: Any, path: str) -> BatchFailRule:
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: must be an object")
        unknown = set(spec) - {"custom_id", "index", "fraction", "result", "error_type", "message"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        if sum(spec.get(k) is not None for k in ("custom_id", "index", "fraction")) != 1:
            raise ValueError(f"{path}: give exactly one of custom_id, index, fraction")
        rule = cls(**spec)
        if rule.custom_id is not None:
            try:
                re.compile(rule.custom_id)
            except (re.error, TypeError) as err:
                raise ValueError(f"{path}.custom_id: not a regular expression ({err})") from None
        if rule.index is not None and (not isinstance(rule.index, int) or isinstance(rule.index, bool) or rule.index < 0):
            raise ValueError(f"{path}.index: must be a non-negative integer")
        if rule.fraction is not None and not (isinstance(rule.fraction, (int, float)) and 0 <= rule.fraction <= 1):
            raise ValueError(f"{path}.fraction: must be a number from 0 to 1")
        if rule.result not in ("errored", "expired"):
            raise ValueError(f"{path}.result: must be 'errored' or 'expired'")
        if rule.error_type not in BATCH_ERROR_MESSAGES:
            raise ValueError(f"{path}.error_type: must be one of {sorted(BATCH_ERROR_MESSAGES)}")
        if rule.message is not None and not isinstance(rule.message, str):
            raise ValueError(f"{path}.message: must be a string")
        return rule

    def selects(self, index: int, count: int, custom_id: str) -> bool:
        if self.custom_id is not None:
            return re.search(self.custom_id, custom_id) is not None
        if self.index is not None:
            return index == self.index
        fraction = float(self.fraction or 0)
        return math.floor((index + 1) * fraction) > math.floor(index * fraction)

    def outcome(self) -> dict[str, Any]:
        if self.result == "expired":
            return {"type": "expired"}
        message = self.message or BATCH_ERROR_MESSAGES[self.error_type]
        return {"type": "errored", "error": {"type": "error", "error": {"type": self.error_type, "message": message}}}

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class BatchSettings:
    """How a new batch is processed; each batch keeps the settings it was created under."""

    delay_s: float = 1.0  # request i of n is answered at created + delay_s * (i + 1) / n; the batch ends at created + delay_s
    cancel_delay_s: float = 0.2  # a cancel leaves the batch ``canceling`` this long before it ends
    fail: tuple[BatchFailRule, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"delay_s": self.delay_s, "cancel_delay_s": self.cancel_delay_s, "fail": [r.as_dict() for r in self.fail] or None}


def validate_batch(body: Any) -> list[tuple[str, dict[str, Any]]]:
    """A create-batch body's (custom_id, params) pairs; a 400 as the API's when it is malformed.

    The ``params`` themselves are validated when the request is processed, as the API does: a bad
    one comes back ``errored`` with an ``invalid_request_error``.
    """
    if not isinstance(body, dict):
        raise invalid("request body: must be a JSON object")
    unknown = set(body) - {"requests"}
    if unknown:
        raise invalid(f"{sorted(unknown)[0]}: Extra inputs are not permitted")
    requests = body.get("requests")
    if not isinstance(requests, list):
        raise invalid("requests: Field required (a list of requests)")
    if not 1 <= len(requests) <= BATCH_MAX_REQUESTS:
        raise invalid(f"requests: must hold from 1 to {BATCH_MAX_REQUESTS} requests, not {len(requests)}")
    pairs, seen = [], set()
    for i, request in enumerate(requests):
        if not isinstance(request, dict):
            raise invalid(f"requests.{i}: must be an object with custom_id and params")
        custom_id, params = request.get("custom_id"), request.get("params")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            raise invalid(f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise invalid(f"requests.{i}.custom_id: Duplicate custom_id {custom_id!r}; each request's custom_id must be unique")
        if not isinstance(params, dict):
            raise invalid(f"requests.{i}.params: Field required (Messages API parameters)")
        unknown = set(request) - {"custom_id", "params"}
        if unknown:
            raise invalid(f"requests.{i}.{sorted(unknown)[0]}: Extra inputs are not permitted")
        seen.add(custom_id)
        pairs.append((custom_id, params))
    return pairs


class Batch:
    """One message batch. It advances lazily: whenever it is looked at, requests whose time has come
    (see :class:`BatchSettings`) are answered at that time, so results do not depend on polling."""

    def __init__(self, batch_id: str, requests: list[tuple[str, dict[str, Any]]], created: float, settings: BatchSettings):
        self.id, self.requests, self.settings = batch_id, requests, settings
        self.created_at, self.expires_at = created, created + BATCH_LIFETIME_S
        self.results: list[dict[str, Any] | None] = [None] * len(requests)
        self.cancel_at: float | None = None
        self.ended_at: float | None = None

    def due(self, i: int) -> float:
        return self.created_at + self.settings.delay_s * (i + 1) / len(self.requests)

    def advance(self, now: float, cache: PromptCache) -> None:
        if self.ended_at is not None:
            return
        stop = min(now, self.expires_at, math.inf if self.cancel_at is None else self.cancel_at)
        for i, result in enumerate(self.results):
            if result is None and self.due(i) <= stop:
                self.results[i] = self._process(i, self.due(i), cache)
        ends: list[tuple[float, dict[str, Any]]] = [(self.expires_at, {"type": "expired"})]
        if self.cancel_at is not None:
            ends.append((self.cancel_at + self.settings.cancel_delay_s, {"type": "canceled"}))
        end, rest = min(ends, key=lambda e: e[0])
        if all(r is not None for r in self.results):
            self.ended_at = self.due(len(self.requests) - 1)
        elif now >= end:
            self.results = [rest if r is None else r for r in self.results]
            self.ended_at = end

    def _process(self, i: int, at: float, cache: PromptCache) -> dict[str, Any]:
        custom_id, params = self.requests[i]
        rule = next((r for r in self.settings.fail if r.selects(i, len(self.requests), custom_id)), None)
        if rule is not None:
            return rule.outcome()
        try:
            validate_request(params)
            message = build_message(params, json.dumps(params).encode(), cache=cache, now=at, service_tier="batch")
        except ApiError as err:
            return {"type": "errored", "error": err.payload()}
        return {"type": "succeeded", "message": message}

    @property
    def status(self) -> str:
        return "ended" if self.ended_at is not None else "in_progress" if self.cancel_at is None else "canceling"

    def as_json(self, base_url: str) -> dict[str, Any]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if self.ended_at is None:
            counts["processing"] = len(self.requests)  # the others stay 0 until the whole batch ends, as in the API
        else:
            for result in self.results:
                counts[str((result or {}).get("type"))] += 1
        ended = self.ended_at is not None
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.status,
            "request_counts": counts,
            "ended_at": rfc3339(self.ended_at),
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "archived_at": None,
            "cancel_initiated_at": rfc3339(self.cancel_at),
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if ended else None,
        }

    def jsonl(self) -> bytes:
        pairs = zip(self.requests, self.results, strict=True)
        return "".join(json.dumps({"custom_id": custom_id, "result": result}) + "\n" for (custom_id, _), result in pairs).encode()


class Batches:
    """Every batch made in the stand-in's life (``reset`` keeps them), newest last."""

    def __init__(self, clock: Callable[[], float], cache: PromptCache):
        self._lock = threading.Lock()
        self._clock, self._cache = clock, cache
        self._batches: dict[str, Batch] = {}
        self._made = 0

    def create(self, requests: list[tuple[str, dict[str, Any]]], raw: bytes, settings: BatchSettings) -> Batch:
        with self._lock:
            self._made += 1
            batch_id = "msgbatch_" + hashlib.sha256(f"{self._made}:".encode() + raw).hexdigest()[:24]
            batch = self._batches[batch_id] = Batch(batch_id, requests, self._clock(), settings)
            batch.advance(self._clock(), self._cache)
            return batch

    def get(self, batch_id: str) -> Batch:
        """The batch, advanced to now; a 404 as the API's when there is none (or it was deleted)."""
        with self._lock:
            return self._get(batch_id)

    def _get(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, "not_found_error", f"message_batch_id: no message batch {batch_id!r}")
        batch.advance(self._clock(), self._cache)
        return batch

    def page(self, after_id: str | None, before_id: str | None, limit: int) -> tuple[list[Batch], bool]:
        """A page of batches, newest first, after (older than) or before (newer than) a cursor."""
        with self._lock:
            newest_first = list(reversed(self._batches))
            for name, cursor in (("after_id", after_id), ("before_id", before_id)):
                if cursor is not None and cursor not in self._batches:
                    raise invalid(f"{name}: no message batch {cursor!r}")
            if before_id is not None:
                end = newest_first.index(before_id)
                ids, more = newest_first[max(0, end - limit):end], end - limit > 0
            else:
                start = 0 if after_id is None else newest_first.index(after_id) + 1
                ids, more = newest_first[start:start + limit], start + limit < len(newest_first)
            return [self._get(batch_id) for batch_id in ids], more

    def cancel(self, batch_id: str) -> Batch:
        with self._lock:
            batch = self._get(batch_id)
            if batch.status == "ended":
                raise invalid(f"message_batch_id: batch {batch_id!r} has ended and can no longer be canceled")
            if batch.cancel_at is None:
                batch.cancel_at = self._clock()
                batch.advance(batch.cancel_at, self._cache)
            return batch

    def delete(self, batch_id: str) -> None:
        with self._lock:
            batch = self._get(batch_id)
            if batch.status != "ended":
                raise invalid(f"message_batch_id: batch {batch_id!r} is still {batch.status}; cancel it, and delete it once it has ended")
            del self._batches[batch_id]

    def results(self, batch_id: str) -> bytes:
        with self._lock:
            batch = self._get(batch_id)
            if batch.status != "ended":
                raise invalid(f"message_batch_id: batch {batch_id!r} is still {batch.status}; results are ready once it has ended")
            return batch.jsonl()
