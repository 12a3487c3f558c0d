"""BatchApi over the anthropic SDK's Message Batches (``client.messages.batches``): create, retrieve, results,
cancel, each bounded by a timeout, the SDK's errors mapped onto the domain's (:func:`jobadapters.claude.translate`;
a 404 is :class:`jobcore.batches.BatchGoneError`).

The SDK is imported on first use, as in :mod:`jobadapters.claude`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from jobadapters.claude import translate
from jobcore.batches import BatchGoneError
from jobcore.ports import BatchInfo, BatchRequest, BatchResult

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 60.0  # create (up to 256 MB), retrieve, cancel
RESULTS_TIMEOUT_S = 300.0  # the results stream: per read, not in all


class AnthropicBatches:
    """One SDK client, built lazily, rebuilt when the API key changes (secret rotation)."""

    def __init__(self, *, api_key: Callable[[], str | None], base_url: str | None = None, max_retries: int = 2,
                 timeout_s: float = CALL_TIMEOUT_S, results_timeout_s: float = RESULTS_TIMEOUT_S):
        self._api_key = api_key
        self._base_url = base_url
        self._max_retries = max_retries
        self._timeout_s = timeout_s
        self._results_timeout_s = results_timeout_s
        self._client: Any = None
        self._client_key: str | None = None
        self._lock = threading.Lock()

    def create(self, requests: Sequence[BatchRequest]) -> BatchInfo:
        body = [{"custom_id": request.custom_id, "params": dict(request.params)} for request in requests]
        return _info(self._call(lambda c: c.messages.batches.create(requests=body, timeout=self._timeout_s)))

    def retrieve(self, batch_id: str) -> BatchInfo:
        return _info(self._call(lambda c: c.messages.batches.retrieve(batch_id, timeout=self._timeout_s), batch_id))

    def cancel(self, batch_id: str) -> BatchInfo:
        return _info(self._call(lambda c: c.messages.batches.cancel(batch_id, timeout=self._timeout_s), batch_id))

    def results(self, batch_id: str) -> Iterator[BatchResult]:
        lines = self._call(lambda c: c.messages.batches.results(batch_id, timeout=self._results_timeout_s), batch_id)
        try:
            for line in lines:
                yield _result(line)
        except Exception as error:  # noqa: BLE001 - a stream cut short is the domain's error too
            raise _domain(error, batch_id) from error

    def _call(self, call: Callable[[Any], Any], batch_id: str | None = None) -> Any:
        try:
            return call(self._current_client())
        except Exception as error:  # noqa: BLE001 - the SDK's errors become the domain's
            raise _domain(error, batch_id) from error

    def _current_client(self) -> Any:
        key = self._api_key()
        with self._lock:
            if self._client is None or key != self._client_key:
                import anthropic

                self._client = anthropic.Anthropic(api_key=key, base_url=self._base_url, timeout=self._timeout_s,
                                                   max_retries=self._max_retries)
                self._client_key = key
            return self._client


def _domain(error: Exception, batch_id: str | None) -> Exception:
    import anthropic

    if batch_id is not None and isinstance(error, anthropic.NotFoundError):
        log.warning("batch %s: not found (%s)", batch_id, error)
        return BatchGoneError(f"the Message Batches API has no batch {batch_id}")
    return translate(error)


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _info(batch: Any) -> BatchInfo:
    counts = batch.request_counts
    return BatchInfo(
        batch_id=batch.id, status=batch.processing_status, created_at=_ms(batch.created_at) or 0,
        expires_at=_ms(batch.expires_at) or 0, ended_at=_ms(batch.ended_at),
        counts={name: int(getattr(counts, name, 0) or 0) for name in ("processing", "succeeded", "errored", "canceled", "expired")},
    )


def _result(line: Any) -> BatchResult:
    result = line.result
    kind = result.type
    if kind == "succeeded":
        return BatchResult(custom_id=line.custom_id, kind=kind, message=result.message.model_dump(mode="json", exclude_none=True))
    if kind == "errored":
        inner = getattr(result.error, "error", None)  # ErrorResponse {type: "error", error: {type, message}}
        return BatchResult(custom_id=line.custom_id, kind=kind,
                           error={"type": str(getattr(inner, "type", "api_error")), "message": str(getattr(inner, "message", ""))})
    return BatchResult(custom_id=line.custom_id, kind=kind)
