"""The poll loop: receive, run concurrently, keep messages hidden and leases live while running, settle each one.

- Long-polls up to 10 messages at a time, holding at most ``lookahead`` + ``fair_extra_slots`` more than its slots, from two receivers
  at once above 10 slots (``MAX_RECEIVERS``): slots that free while a receive is in flight are filled
  by the next receiver, not left idle until that receive returns. No receive waits on a timer: each
  goes as soon as there is room.
- Which held job starts when a slot frees is the tenants' turn (:mod:`worker.fairness`: deficit round robin by
  ``tenant_shares`` weights, ``max_in_flight`` while another tenant waits), the tenant being the message's group.
  A tenant running fewer than its fair share of the slots also starts at once in one of ``fair_extra_slots``
  beyond them (a quarter of the slots by default; none on GPU lanes), so it does not wait for another tenant's
  job to end. A receive that brings such a tenant's message is followed at once by another, beyond the room the
  slots and the lookahead hold (at most ``fair_extra_slots`` messages beyond it): the fair queue delivers that
  tenant's other messages first, so its whole burst starts together instead of one message per job another
  tenant ends (while a busy tenant fills the room, a receive waits for one of its jobs to end).
  A held job not started yet keeps its message hidden (the heartbeat extends it with the others) and is not
  claimed, so another worker cannot run it meanwhile and nothing runs it twice; at the stop it is released.
- A heartbeat thread (:mod:`worker.heartbeat`), every ``heartbeat_s``, reads the state of every job in flight,
  renews the leases that are due and, less often, extends the messages' visibility; a job found ``canceling`` or
  no longer this worker's is told to stop.
- A message is deleted only after the job's result and state are written (the runner does both
  before it returns); a retryable failure makes it visible again after the runner's back-off. Deletes
  and these visibility changes go 10 a call (:mod:`worker.batcher`: DeleteMessageBatch, ChangeMessageVisibilityBatch), each
  waiting at most ``SETTLE_LINGER_S`` for others to share its call; an entry a call refuses for a
  transient reason is tried again once (a message left undeleted comes back, finds its job finished
  and is deleted then). The slot is free as soon as the delete is asked for. A job
  waiting for the model (rate-limited, overloaded, failing) is sent again as a new message delayed by
  the back-off before its old message is deleted: waiting for the model spends none of its receives.
- Scale-in protection is on while jobs are in flight, renewed at half its lifetime, off when idle.
- On stop (SIGTERM: Spot reclaim, scale-in, deploy) it receives nothing more; messages a receive in
  flight returns are released (visibility 0) without running; the jobs in flight may finish until the
  drain deadline, counted from the stop, so that everything ends ``STOP_MARGIN_S`` before ECS's SIGKILL;
  what is still running then is released, and its lease is left to run out (another worker's runner
  backs off until then, then claims it). The deletes and visibility changes still waiting for their
  call are sent before ``run`` returns.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from jobadapters.sqs import decode, message_group, send, traceparent_of
from jobadapters.tracing import TRACEPARENT
from jobcore.capacity import TenantShare
from jobcore.errors import JobCanceledError
from jobcore.limits import ECS_MAX_STOP_TIMEOUT_S, MALFORMED_RETRY_S, SQS_MAX_BATCH, SQS_MAX_WAIT_S
from jobcore.runner import Disposition, JobRunner
from jobcore.tasks import RunContext
from worker.batcher import SETTLE_LINGER_S, SqsBatcher, change_visibility
from worker.fairness import FairSlots
from worker.heartbeat import Heartbeat, InFlight
from worker.protection import TaskProtection

log = logging.getLogger(__name__)

# The whole shutdown ends at least this long before ECS's SIGKILL ...
STOP_MARGIN_S = 10
# ... with this long kept, after the drain deadline, to release what is left (one batch call per 10).
RELEASE_RESERVE_S = 5
# So the jobs in flight may finish for at most this long after the stop. A receive in flight at the
# stop (at most SQS_MAX_WAIT_S) returns well within it, and its messages are released at once.
DRAIN_LIMIT_S = ECS_MAX_STOP_TIMEOUT_S - STOP_MARGIN_S - RELEASE_RESERVE_S
# Receives in flight at once: one per SQS_MAX_BATCH slots, at most this many. Two keep one receive in flight while
# another takes the slots freed meanwhile; more only split the freed slots into more, smaller receives (each a
# request: SQS bills per request, and on the bench machine each costs CPU).
MAX_RECEIVERS = 2


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
    wait_time_s: int = SQS_MAX_WAIT_S
    # Cancel and lease check (a read); the lease is renewed every RENEW_EVERY_BEATS beats, visibility every third of its timeout.
    heartbeat_s: float = 2.0
    receivers: int = 0  # receives in flight at once; 0: one per SQS_MAX_BATCH slots, at most MAX_RECEIVERS
    settle_linger_s: float = SETTLE_LINGER_S
    drain_s: float = DRAIN_LIMIT_S  # the jobs in flight may finish for this long after the stop
    clock: Callable[[], float] = time.monotonic  # seconds; injected by tests
    tenant_shares: Mapping[str, TenantShare] = field(default_factory=dict)  # weights and caps, by tenant id
    # Messages held beyond the slots, for the tenants' turns to choose among; -1: one per slot, at most 10. More
    # hide more of the queue from the other workers (a short queue's last jobs wait here while they idle).
    lookahead: int = -1
    # Slots beyond ``concurrency`` for the jobs of a tenant running fewer than its fair share of the slots
    # (worker.fairness): a tenant arriving while another fills every slot starts at once. -1: a quarter of the
    # slots, at least 1; 0 on lanes whose slots are a hard resource (a GPU's memory).
    fair_extra_slots: int = -1
    # A message that is not a job is left for the DLQ (after maxReceiveCount), seen again after this.
    malformed_retry_s: int = MALFORMED_RETRY_S

    def __post_init__(self) -> None:
        lease_s = self.runner.lease_ms / 1000
        if not 0 < self.heartbeat_s <= lease_s / 3:
            raise ValueError(f"heartbeat_s={self.heartbeat_s}: need 0 < heartbeat_s <= a third of the lease ({lease_s:g} s)")
        if not 0 <= self.drain_s <= DRAIN_LIMIT_S:
            raise ValueError(f"drain_s={self.drain_s}: need 0 <= drain_s <= {DRAIN_LIMIT_S} (ECS's stop timeout less margins)")
        if not 0 <= self.wait_time_s <= SQS_MAX_WAIT_S:
            raise ValueError(f"wait_time_s={self.wait_time_s}: need 0 <= wait_time_s <= {SQS_MAX_WAIT_S}")
        if not self.receivers:
            self.receivers = min(MAX_RECEIVERS, math.ceil(self.concurrency / SQS_MAX_BATCH))
        if not 1 <= self.receivers <= self.concurrency:
            raise ValueError(f"receivers={self.receivers}: need 1 <= receivers <= concurrency ({self.concurrency})")
        self._batcher = SqsBatcher(self.sqs, self.queue_url, linger_s=self.settle_linger_s)
        self._heartbeat = Heartbeat(runner=self.runner, every_s=self.heartbeat_s, hold_s=self.hold_s, clock=self.clock,
                                    in_flight=self._in_flight_now, extend=self._extend_visibility)
        self._in_flight: dict[str, InFlight] = {}  # by message id
        self._lock = threading.Lock()
        if self.lookahead < 0:
            self.lookahead = min(SQS_MAX_BATCH, self.concurrency)
        if self.fair_extra_slots < 0:
            self.fair_extra_slots = max(1, self.concurrency // 4)
        # Room for messages held (running or waiting for a slot); the slots themselves are counted in ``_fair``. The
        # fair extra slots need room for the jobs they run (alone, a tenant's held messages fill it as they fill
        # the lookahead's: a quiet tenant's message, which the fair queue delivers first, arrives when any frees).
        self._slots = threading.Semaphore(self.concurrency + self.lookahead + self.fair_extra_slots)
        # The shares by message group, as the messages name their tenant (a long or odd tenant id is hashed).
        self._fair: FairSlots[InFlight] = FairSlots(
            {key if key == "*" else message_group(key): share for key, share in self.tenant_shares.items()})
        self._beyond_room = 0  # messages held beyond the semaphore's room (follow-up receives), under _lock
        self._pool: ThreadPoolExecutor | None = None
        self._stop: threading.Event | None = None
        self._protection_lock = threading.Lock()
        # Held across the heartbeat's extension and the shutdown's release: an extension read before the
        # release must not land after it (the message would stay hidden for a whole visibility timeout).
        self._visibility_lock = threading.Lock()
        self._protected = False
        self._protection_renew_at = 0.0
        self.stopped_at: float | None = None  # when the stop came, on ``clock``
        self.processed = 0

    def run(self, stop: threading.Event) -> None:
        finished = threading.Event()
        threading.Thread(target=self._watch_stop, args=(stop, finished), name="stop-watch", daemon=True).start()
        threading.Thread(target=self._heartbeat.run, args=(finished,), name="heartbeat", daemon=True).start()
        threading.Thread(target=self._batcher.run, args=(finished,), name="sqs-batcher", daemon=True).start()
        pool = ThreadPoolExecutor(max_workers=self.concurrency + self.fair_extra_slots, thread_name_prefix="job")
        self._pool, self._stop = pool, stop
        others = [threading.Thread(target=self._receive_loop, args=(stop, pool), name=f"receiver-{n}", daemon=True)
                  for n in range(1, self.receivers)]
        try:
            for thread in others:
                thread.start()
            self._receive_loop(stop, pool)
            for thread in others:  # each returns once its receive in flight has (at most wait_time_s)
                thread.join()
            self._release_waiting()
            self._drain()
            if not self._batcher.flush(timeout_s=RELEASE_RESERVE_S):
                log.warning("some deletes and visibility changes were not sent before the stop; their messages come back")
        finally:
            finished.set()
            pool.shutdown(wait=False, cancel_futures=True)
        log.info("worker stopped after %d messages", self.processed)

    def _receive_loop(self, stop: threading.Event, pool: ThreadPoolExecutor) -> None:
        while not stop.is_set():
            entries = self._receive(stop)
            with self._lock:
                for entry in entries:
                    self._fair.add(entry.tenant, entry)
            self._dispatch()
            self._sync_protection()

    def _dispatch(self) -> None:
        """Start held jobs in the tenants' turns while slots are free (none once the stop has come)."""
        with self._lock:
            if self._pool is None or (self._stop is not None and self._stop.is_set()):
                return
            starting = []
            while self._fair.running.total() < self.concurrency:  # the slots in use, counted by the scheduler
                taken = self._fair.take()
                if taken is None:
                    break
                starting.append(taken[1])
            while self._fair.running.total() < self.concurrency + self.fair_extra_slots:
                taken = self._fair.take_under_share(self.concurrency)
                if taken is None:
                    break
                starting.append(taken[1])
            for entry in starting:
                entry.started = True
        for entry in starting:
            self._pool.submit(self._handle, entry)

    def waiting(self) -> dict[str, int]:
        """Jobs held here waiting for a slot, by tenant (message group)."""
        with self._lock:
            return {str(tenant): n for tenant, n in self._fair.waiting().items()}

    def stopping(self) -> dict[str, str]:
        """The jobs in flight whose runs were told to stop, with why (canceled, lease lost, released)."""
        with self._lock:
            return {e.job_id: e.why for e in self._in_flight.values() if e.job_id and e.stop.is_set()}

    # --- receiving ------------------------------------------------------------------------------

    def _watch_stop(self, stop: threading.Event, finished: threading.Event) -> None:
        while not stop.wait(0.5):
            if finished.is_set():
                return
        self._stop_time()

    def _stop_time(self) -> float:
        """When the stop came: noted by the watcher as it fires (the loop may be in a long poll then)."""
        with self._lock:
            if self.stopped_at is None:
                self.stopped_at = self.clock()
                log.info("stop requested: no more receives; draining for at most %g s", self.drain_s)
            return self.stopped_at

    def _receive(self, stop: threading.Event) -> list[InFlight]:
        free = self._acquire_slots()
        if not free:
            return []
        entries = self._receive_some(stop, free, wait_s=self.wait_time_s)
        for _ in range(free - len(entries)):
            self._slots.release()
        return entries + self._follow_up(stop, entries)

    def _follow_up(self, stop: threading.Event, received: list[InFlight]) -> list[InFlight]:
        """While the last receive brought a message of a tenant under its fair share beside busy ones, receive again at
        once (no wait), beyond the room, into at most ``fair_extra_slots`` held beyond it: the fair queue hands out that
        tenant's other messages first. What comes with them of other tenants is held like the lookahead."""
        entries: list[InFlight] = []
        while not stop.is_set():
            with self._lock:
                newcomer = any(self._fair.newcomer_under_share(e.tenant, self.concurrency) for e in received)
                room = self.fair_extra_slots - self._beyond_room
                if not newcomer or room <= 0:
                    return entries
                self._beyond_room += room
            received = self._receive_some(stop, min(SQS_MAX_BATCH, room), wait_s=0)
            with self._lock:
                self._beyond_room -= room - len(received)
                for entry in received:
                    entry.beyond_room = True
            entries += received
        return entries

    def _receive_some(self, stop: threading.Event, count: int, *, wait_s: int) -> list[InFlight]:
        messages: list[dict[str, Any]] = []
        if not stop.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=count, WaitTimeSeconds=wait_s,
                    VisibilityTimeout=self.hold_s, MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
                    MessageAttributeNames=[TRACEPARENT],
                ).get("Messages", [])
            except Exception:  # noqa: BLE001 - a failed poll is logged and retried, never fatal
                log.exception("receive failed")
                stop.wait(1)
        if stop.is_set():  # received during the stop: never started, visible again at once
            if messages:
                log.warning("releasing %d messages received after the stop", len(messages))
                self._change_visibility([(m["MessageId"], m["ReceiptHandle"]) for m in messages], 0)
            messages = []
        entries, held = self._register(messages)
        if held:  # its job runs here already (the lease cannot tell two runs of one process apart)
            log.warning("holding back %d messages whose jobs already run here", len(held))
            self._change_visibility(held, self.visibility_timeout_s)
        return entries

    def _free_room(self, entries: list[InFlight]) -> None:
        """The room each of ``entries`` held is free again (the semaphore's, or that beyond it)."""
        beyond = sum(e.beyond_room for e in entries)
        if beyond:
            with self._lock:
                self._beyond_room -= beyond
        for _ in range(len(entries) - beyond):
            self._slots.release()

    def _register(self, messages: list[dict[str, Any]]) -> tuple[list[InFlight], list[tuple[str, str]]]:
        entries: list[InFlight] = []
        held: list[tuple[str, str]] = []
        # Renewed this long after its receipt: its claim comes after it, so its lease lasts longer still.
        renew_at_ms = self.runner.clock_ms() + self.renew_every_ms
        with self._lock:
            for message in messages:
                message_id, receipt = message["MessageId"], message["ReceiptHandle"]
                known = self._in_flight.get(message_id)
                if known is not None:  # delivered again while it runs here: its newest receipt is the valid one
                    known.receipt = receipt
                    continue
                entry = _entry(message)
                if entry.job_id is not None and any(e.job_id == entry.job_id for e in self._in_flight.values()):
                    held.append((message_id, receipt))
                    continue
                entry.renew_at_ms = renew_at_ms
                self._in_flight[message_id] = entry
                entries.append(entry)
        return entries, held

    def _acquire_slots(self) -> int:
        if not self._slots.acquire(timeout=1):
            return 0
        free = 1
        while free < SQS_MAX_BATCH and self._slots.acquire(blocking=False):
            free += 1
        return free

    # --- running --------------------------------------------------------------------------------

    def _handle(self, entry: InFlight) -> None:
        try:
            if not entry.released:
                self._settle(entry)
        except Exception:  # noqa: BLE001 - the message stays in SQS and comes back; nothing is lost
            log.exception("message %s not settled", entry.message_id)
        finally:
            with self._lock:
                self._in_flight.pop(entry.message_id, None)
                self.processed += 1
                self._fair.done(entry.tenant)
            self._free_room([entry])
            self._dispatch()
            self._sync_protection()

    def _settle(self, entry: InFlight) -> None:
        if entry.job_id is None:
            log.error("message %s: %s", entry.message_id, entry.problem)
            self._batcher.change_visibility(entry.message_id, entry.receipt, self.malformed_retry_s)
            return
        # Each receive is a span of the submit's trace, linked to the submit: a retry or a redelivery is another.
        attributes = {"job.id": entry.job_id, "messaging.system": "aws_sqs", "messaging.receive_count": entry.receives}
        try:
            with self.runner.observer.span("worker.run", parent=entry.traceparent, link=entry.traceparent,
                                           attributes=attributes):
                outcome = self.runner.process(entry.job_id, ctx=self._context(entry), receive_count=entry.receives,
                                              max_receives=self.max_receives)
        finally:
            entry.ran = True
        log.info("job %s: %s %s", entry.job_id, outcome.job.status.value if outcome.job else "-", outcome.note)
        with self._lock:
            if entry.released:  # given back at shutdown: another worker has it, or will
                log.info("job %s: its message was released at shutdown; not settled here", entry.job_id)
                return
            receipt = entry.receipt
        if outcome.delete or (outcome.requeue and self._requeue(outcome)):
            self._batcher.delete(entry.message_id, receipt)
        else:
            self._batcher.change_visibility(entry.message_id, receipt, outcome.retry_in_s)

    def _requeue(self, outcome: Disposition) -> bool:
        """Send the job again as a new message, delayed by the runner's back-off, so that its old message
        (and with it the receives it has used) can be deleted; False if SQS refused (the old message is
        then made visible again after the same delay, spending a receive)."""
        if outcome.job is None:
            return False
        try:
            send(self.sqs, self.queue_url, outcome.job, delay_s=outcome.retry_in_s)
        except Exception as error:  # noqa: BLE001 - the old message brings the job back instead
            log.warning("job %s: could not re-queue it as a new message (%s); its message comes back in %d s instead",
                        outcome.job.job_id, error, outcome.retry_in_s)
            return False
        return True

    def _context(self, entry: InFlight) -> RunContext:
        """The run's context: its ``check`` stops the run once its job is canceled or its lease lost."""
        base = self.ctx.check

        def check() -> None:
            base()
            entry.leased = True  # called only once the runner has claimed the job
            if entry.stop.is_set():
                raise JobCanceledError(f"job {entry.job_id}: {entry.why}")

        return replace(self.ctx, check=check)

    # --- while running: leases, visibility, protection --------------------------------------------

    @property
    def hold_s(self) -> int:
        """How long a message stays hidden while this worker holds it, renewed by the heartbeat: no longer
        than a job's lease, so the messages of a worker that dies (claimed or not yet) come back as soon
        as its leases have run out, not after the lane's whole visibility timeout."""
        return max(1, min(self.visibility_timeout_s, self.runner.lease_ms // 1000))

    @property
    def renew_every_ms(self) -> int:
        """How often a job's lease is renewed (:attr:`worker.heartbeat.Heartbeat.renew_every_ms`)."""
        return self._heartbeat.renew_every_ms

    def _in_flight_now(self) -> list[InFlight]:
        with self._lock:
            return list(self._in_flight.values())

    def _extend_visibility(self, seconds: int) -> None:
        """Keep every message held here hidden ``seconds`` more (none released meanwhile: see ``_visibility_lock``)."""
        with self._visibility_lock:
            with self._lock:
                receipts = [(e.message_id, e.receipt) for e in self._in_flight.values() if not e.released]
            self._change_visibility(receipts, seconds)

    def _sync_protection(self) -> None:
        """Make scale-in protection match whether jobs are in flight, renewing it before it expires.

        Serialized, and the wanted state is read under the lock, so the last request the agent gets
        is always the current truth: "off" for a finished job can't land after "on" for a new one.
        """
        with self._protection_lock:
            with self._lock:
                busy = bool(self._in_flight)
            now = self.clock()
            renew = busy and self._protected and now >= self._protection_renew_at
            if (busy != self._protected or renew) and self.protection.set(busy):
                self._protected = busy
                self._protection_renew_at = now + self.protection.renew_after_s

    # --- stopping -------------------------------------------------------------------------------

    def _release_waiting(self) -> None:
        """At the stop: the held jobs not started are given back to the queue at once, never started here."""
        with self._visibility_lock:
            with self._lock:
                waiting = self._fair.drain()
                for entry in waiting:
                    entry.released = True
                    self._in_flight.pop(entry.message_id, None)
            if waiting:
                log.warning("releasing %d held messages not started", len(waiting))
                self._change_visibility([(e.message_id, e.receipt) for e in waiting], 0)
        self._free_room(waiting)

    def _drain(self) -> None:
        deadline = self._stop_time() + self.drain_s
        while True:
            with self._lock:
                left = [e for e in self._in_flight.values() if not e.released]
            if not left:
                return
            if self.clock() >= deadline:
                break
            time.sleep(0.1)
        with self._visibility_lock:
            with self._lock:
                left = [e for e in self._in_flight.values() if not e.released]
                for entry in left:
                    entry.released = True
            log.warning("releasing %d unfinished messages; their leases are left to run out", len(left))
            for entry in left:
                entry.stop_run("the worker is stopping; released to the queue")
            self._change_visibility([(e.message_id, e.receipt) for e in left], 0)

    # --- SQS ------------------------------------------------------------------------------------

    def _change_visibility(self, messages: Sequence[tuple[str, str]], seconds: int) -> None:
        change_visibility(self.sqs, self.queue_url, messages, seconds)


def _entry(message: dict[str, Any]) -> InFlight:
    attributes = message.get("Attributes", {})
    receives = int(attributes.get("ApproximateReceiveCount", "1"))
    try:
        job_id, problem = decode(message["Body"]), ""
    except ValueError as error:
        job_id, problem = None, str(error)
    return InFlight(message["MessageId"], message["ReceiptHandle"], receives, job_id, problem,
                     traceparent=traceparent_of(message), tenant=attributes.get("MessageGroupId", ""))
