"""The worker's batcher of deletes and visibility changes (worker.batcher.SqsBatcher) over a scripted SQS client:
10 a call, kinds never mixed, transient refusals tried once more, the request's own faults never retried."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from worker.batcher import SqsBatcher

URL = "https://sqs.example/queue"


class ScriptedSqs:
    """Records batch calls; ``answer`` decides each call's Failed entries (or raises)."""

    def __init__(self, answer: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]] | None = None) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.answer = answer or (lambda kind, entries: [])
        self._lock = threading.Lock()

    def _call(self, kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        assert kwargs["QueueUrl"] == URL and 1 <= len(kwargs["Entries"]) <= 10
        with self._lock:
            self.calls.append((kind, kwargs["Entries"]))
        return {"Failed": self.answer(kind, kwargs["Entries"])}

    def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("delete", kwargs)

    def change_message_visibility_batch(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("visibility", kwargs)

    def receipts(self, kind: str) -> list[str]:
        return [e["ReceiptHandle"] for k, entries in self.calls if k == kind for e in entries]


@pytest.fixture
def running():
    """A batcher's thread, started and stopped around the test."""
    finished = threading.Event()
    threads: list[threading.Thread] = []

    def start(sqs: Any, *, linger_s: float = 0.05) -> SqsBatcher:
        batcher = SqsBatcher(sqs, URL, linger_s=linger_s)
        threads.append(threading.Thread(target=batcher.run, args=(finished,), daemon=True))
        threads[-1].start()
        return batcher

    yield start
    finished.set()
    for thread in threads:
        thread.join(5)


def test_deletes_go_ten_a_call_and_visibility_changes_in_calls_of_their_own(running):
    sqs = ScriptedSqs()
    batcher = running(sqs, linger_s=30)  # only a full batch or the flush sends
    for i in range(23):
        batcher.delete(f"m{i}", f"r{i}")
    batcher.change_visibility("v1", "rv1", 15)
    batcher.change_visibility("v2", "rv2", 0)

    assert batcher.flush(timeout_s=5)

    deletes = [entries for kind, entries in sqs.calls if kind == "delete"]
    assert sorted(len(entries) for entries in deletes) == [3, 10, 10]
    assert sorted(sqs.receipts("delete")) == sorted(f"r{i}" for i in range(23))
    assert [(e["ReceiptHandle"], e["VisibilityTimeout"]) for k, es in sqs.calls if k == "visibility" for e in es] == [
        ("rv1", 15), ("rv2", 0)]


def test_a_lone_delete_is_sent_after_the_linger_without_a_flush(running):
    sent = threading.Event()

    def answer(kind: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sent.set()
        return []

    sqs = ScriptedSqs(answer)
    batcher = running(sqs, linger_s=0.05)

    batcher.delete("m1", "r1")

    assert sent.wait(5)
    assert sqs.receipts("delete") == ["r1"]


def test_an_entry_refused_for_a_transient_reason_is_tried_once_more_and_a_senders_fault_never(running):
    """GIVEN a batch where SQS refuses one entry for its own reason (SenderFault false) and one as invalid
    WHEN the batcher sends it
    THEN only the first goes again, once; the invalid receipt is not sent again."""
    def answer(kind: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        failed = []
        for entry in entries:
            if entry["ReceiptHandle"] in ("busy", "always-busy") and (entry["ReceiptHandle"] == "always-busy" or len(sqs.calls) == 1):
                failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"})
            if entry["ReceiptHandle"] == "stale":
                failed.append({"Id": entry["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "no"})
        return failed

    sqs = ScriptedSqs(answer)
    batcher = running(sqs, linger_s=30)
    for receipt in ("ok", "busy", "stale", "always-busy"):
        batcher.delete(receipt, receipt)

    assert batcher.flush(timeout_s=5)

    assert sqs.receipts("delete") == ["ok", "busy", "stale", "always-busy", "busy", "always-busy"]


def test_a_failed_call_is_tried_once_more_then_left(running):
    def answer(kind: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise ConnectionError("SQS unreachable")

    sqs = ScriptedSqs(answer)
    batcher = running(sqs, linger_s=30)
    batcher.change_visibility("m1", "r1", 30)

    assert batcher.flush(timeout_s=5)

    assert sqs.receipts("visibility") == ["r1", "r1"]
