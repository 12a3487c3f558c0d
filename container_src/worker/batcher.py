"""Deletes and visibility changes of one queue's messages, 10 a call (DeleteMessageBatch,
ChangeMessageVisibilityBatch): the worker's poll loop (:mod:`worker.poller`) settles each message through
:class:`SqsBatcher`, and sets the visibility of many at once (the heartbeat's extension, the shutdown's release)
with :func:`change_visibility`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from jobcore.limits import SQS_MAX_BATCH

log = logging.getLogger(__name__)

# A delete or visibility change waits at most this long for others to share its batch call.
SETTLE_LINGER_S = 0.05


def change_visibility(sqs: Any, queue_url: str, messages: Sequence[tuple[str, str]], seconds: int) -> None:
    """Set the visibility of ``(message id, receipt)``s, 10 a call, at once; failures are logged, never raised."""
    for start in range(0, len(messages), SQS_MAX_BATCH):
        chunk = messages[start:start + SQS_MAX_BATCH]
        entries = [{"Id": str(i), "ReceiptHandle": receipt, "VisibilityTimeout": int(seconds)} for i, (_, receipt) in enumerate(chunk)]
        try:
            failed = sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
        except Exception as error:  # noqa: BLE001 - the messages expire back into the queue anyway
            log.warning("visibility change of %d messages failed: %s", len(chunk), error)
            continue
        for failure in failed:
            message_id = chunk[int(failure["Id"])][0]
            log.warning("visibility change of message %s failed: %s %s", message_id, failure.get("Code"), failure.get("Message"))


@dataclass(frozen=True)
class _Settle:
    """A delete (``seconds`` None) or a visibility change of one message, and how many calls it has been in."""

    message_id: str
    receipt: str
    seconds: int | None = None
    tries: int = 0


class SqsBatcher:
    """Deletes and visibility changes of one queue, sent 10 a call by one thread.

    A request waits at most ``linger_s`` (from when it was asked for) for others of its kind to share its
    call, less when 10 are waiting or a flush is asked for. A call that fails, and the entries it refuses
    for a reason that is not the request's own (``SenderFault`` false), are tried once more; then logged
    and left: an undeleted message comes back and finds its job finished, a message whose visibility
    did not change comes back when its current visibility ends. One thread also keeps the deletes of
    one queue from overlapping each other (moto's delete of one message is not safe against another's).
    """

    def __init__(self, sqs: Any, queue_url: str, *, linger_s: float):
        self._sqs = sqs
        self._queue_url = queue_url
        self._linger_s = linger_s
        self._cond = threading.Condition()
        self._pending: list[tuple[float, _Settle]] = []  # (asked at, request), oldest first
        self._sending = False
        self._flushes = 0  # flushes waiting: send what is pending without lingering

    def delete(self, message_id: str, receipt: str) -> None:
        self._add(_Settle(message_id, receipt))

    def change_visibility(self, message_id: str, receipt: str, seconds: int) -> None:
        self._add(_Settle(message_id, receipt, int(seconds)))

    def _add(self, request: _Settle) -> None:
        with self._cond:
            self._pending.append((time.monotonic(), request))
            self._cond.notify_all()

    def flush(self, *, timeout_s: float) -> bool:
        """Send everything asked for so far; False if that took longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flushes += 1
            self._cond.notify_all()
            try:
                while self._pending or self._sending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._flushes -= 1

    def run(self, finished: threading.Event) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if finished.is_set():
                        return
                    self._cond.wait(0.5)
                while not (self._flushes or finished.is_set() or self._full()):
                    left = self._pending[0][0] + self._linger_s - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                deletes = [r for _, r in self._pending if r.seconds is None][:SQS_MAX_BATCH]
                changes = [r for _, r in self._pending if r.seconds is not None][:SQS_MAX_BATCH]
                taken = {id(r) for r in deletes + changes}
                self._pending = [(at, r) for at, r in self._pending if id(r) not in taken]
                self._sending = True
            try:
                again = self._send(deletes, delete=True) + self._send(changes, delete=False)
            finally:
                with self._cond:
                    self._pending[:0] = [(0.0, replace(r, tries=r.tries + 1)) for r in again]  # at the front: due now
                    self._sending = False
                    self._cond.notify_all()

    def _full(self) -> bool:
        deletes = sum(r.seconds is None for _, r in self._pending)
        return deletes >= SQS_MAX_BATCH or len(self._pending) - deletes >= SQS_MAX_BATCH

    def _send(self, requests: list[_Settle], *, delete: bool) -> list[_Settle]:
        """One batch call; the requests to try again."""
        if not requests:
            return []
        what = "delete" if delete else "visibility change"
        entries: list[dict[str, Any]] = [{"Id": str(i), "ReceiptHandle": r.receipt} for i, r in enumerate(requests)]
        try:
            if delete:
                failed = self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=entries).get("Failed", [])
            else:
                for entry, request in zip(entries, requests, strict=True):
                    entry["VisibilityTimeout"] = request.seconds
                failed = self._sqs.change_message_visibility_batch(QueueUrl=self._queue_url, Entries=entries).get("Failed", [])
        except Exception as error:  # noqa: BLE001 - tried once more, then the messages come back by themselves
            log.warning("%s of %d messages failed: %s", what, len(requests), error)
            return [r for r in requests if r.tries == 0]
        again = []
        for failure in failed:
            request = requests[int(failure["Id"])]
            if not failure.get("SenderFault") and request.tries == 0:
                again.append(request)
                continue
            log.warning("%s of message %s failed: %s %s", what, request.message_id, failure.get("Code"), failure.get("Message"))
        return again
