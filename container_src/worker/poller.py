"""The poll loop: receive, run concurrently, keep messages hidden while running, settle each one.

- Long-polls up to 10 messages at a time, never more than the free slots.
- A heartbeat thread extends the visibility of every message in flight, so a long job is not
  delivered twice while it runs.
- A message is deleted only after the job's result and state are written (the runner does both
  before it returns); a retryable failure makes it visible again after the runner's back-off.
- On stop (SIGTERM: Spot reclaim, scale-in, deploy) it receives nothing more, waits for the jobs in
  flight up to ``drain_s``, and releases the rest (visibility 0) so another task takes them at once.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from jobadapters.sqs import decode
from jobcore.runner import JobRunner
from jobcore.tasks import RunContext
from worker.protection import TaskProtection

log = logging.getLogger(__name__)

# A message that is not a job is left for the DLQ (after maxReceiveCount), seen again after this.
_MALFORMED_RETRY_S = 60


@dataclass(kw_only=True)
class Poller:
    sqs: Any
    queue_url: str
    runner: JobRunner
    ctx: RunContext
    concurrency: int
    max_receives: int
    visibility_timeout_s: int
    protection: TaskProtection = field(default_factory=lambda: TaskProtection(None))
    wait_time_s: int = 20
    drain_s: float = 100.0  # under ECS's 120 s stop timeout

    def __post_init__(self) -> None:
        self._in_flight: dict[str, str] = {}  # message id -> receipt handle
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.concurrency)
        self._protection_lock = threading.Lock()
        self._protected = False
        self.processed = 0

    def run(self, stop: threading.Event) -> None:
        finished = threading.Event()
        threading.Thread(target=self._heartbeat, args=(finished,), name="heartbeat", daemon=True).start()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="job")
        try:
            while not stop.is_set():
                for message in self._receive():
                    pool.submit(self._handle, message)
                self._sync_protection()
            self._drain()
        finally:
            finished.set()
            pool.shutdown(wait=False, cancel_futures=True)
        log.info("worker stopped after %d messages", self.processed)

    def _receive(self) -> list[dict[str, Any]]:
        free = self._acquire_slots()
        if not free:
            return []
        try:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=min(10, free), WaitTimeSeconds=self.wait_time_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
        except Exception:  # noqa: BLE001 - a failed poll is logged and retried, never fatal
            log.exception("receive failed")
            messages = []
            time.sleep(1)
        for _ in range(free - len(messages)):
            self._slots.release()
        with self._lock:
            self._in_flight.update({m["MessageId"]: m["ReceiptHandle"] for m in messages})
        return messages

    def _acquire_slots(self) -> int:
        if not self._slots.acquire(timeout=1):
            return 0
        free = 1
        while free < 10 and self._slots.acquire(blocking=False):
            free += 1
        return free

    def _handle(self, message: dict[str, Any]) -> None:
        try:
            self._settle(message)
        except Exception:  # noqa: BLE001 - the message stays in SQS and comes back; nothing is lost
            log.exception("message %s not settled", message["MessageId"])
        finally:
            with self._lock:
                self._in_flight.pop(message["MessageId"], None)
                self.processed += 1
            self._slots.release()
            self._sync_protection()

    def _sync_protection(self) -> None:
        """Make scale-in protection match whether jobs are in flight.

        Serialized, and the wanted state is read under the lock, so the last request the agent gets
        is always the current truth: "off" for a finished job can't land after "on" for a new one.
        """
        with self._protection_lock:
            with self._lock:
                busy = bool(self._in_flight)
            if busy != self._protected and self.protection.set(busy):
                self._protected = busy

    def _settle(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        try:
            job_id = decode(message["Body"])
        except ValueError as error:
            log.error("message %s: %s", message["MessageId"], error)
            self._change_visibility(receipt, _MALFORMED_RETRY_S)
            return
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        outcome = self.runner.process(job_id, ctx=self.ctx, receive_count=receives, max_receives=self.max_receives)
        log.info("job %s: %s %s", job_id, outcome.job.status.value if outcome.job else "-", outcome.note)
        if outcome.delete:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
        else:
            self._change_visibility(receipt, outcome.retry_in_s)

    def _heartbeat(self, finished: threading.Event) -> None:
        interval = max(1.0, self.visibility_timeout_s / 3)
        while not finished.wait(interval):
            with self._lock:
                receipts = list(self._in_flight.values())
            for receipt in receipts:
                self._change_visibility(receipt, self.visibility_timeout_s)

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    return
            time.sleep(0.2)
        with self._lock:
            receipts = list(self._in_flight.values())
        log.warning("releasing %d unfinished messages", len(receipts))
        for receipt in receipts:
            self._change_visibility(receipt, 0)

    def _change_visibility(self, receipt: str, seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=int(seconds))
        except Exception as error:  # noqa: BLE001 - the message expires back into the queue anyway
            log.warning("visibility change failed: %s", error)
