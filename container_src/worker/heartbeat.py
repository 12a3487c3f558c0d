"""The worker's heartbeat: while jobs run, their leases stay live, their messages hidden, and a cancel reaches them.

Every ``every_s`` (2 s) one thread reads the state of every job in flight (one strongly consistent BatchGetItem
per 100 jobs, no write: :meth:`jobcore.ports.JobStore.lease_states`), renews the lease of each whose renewal is
due (every ``RENEW_EVERY_BEATS`` beats, at most a third of the lease, after it was received or last renewed:
one small write, the lease's own item in DynamoDB) and, less often, extends its message's visibility (batched),
so a long job is neither swept as stale nor delivered twice while it runs. A read that finds the job
``canceling``, or finds the lease gone (the sweeper re-queued the job, or it was settled), or a renewal refused,
tells that job's run to stop: its ``RunContext.check`` raises :class:`JobCanceledError` before its next model
call, and the runner confirms the cancel. A job of a few seconds is thus never written by the heartbeat at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from jobcore.model import ACTIVE, JobStatus
from jobcore.runner import JobRunner

log = logging.getLogger(__name__)

# A lease is renewed every this many heartbeats (and at most a third of the lease apart); the beats between
# only read the jobs' states, 100 a call.
RENEW_EVERY_BEATS = 10


@dataclass(eq=False)
class InFlight:
    """A received message while it is this worker's: its job, and whether its run must stop."""

    message_id: str
    receipt: str  # the newest: SQS may deliver the same message again while it runs here
    receives: int
    job_id: str | None  # None: not a job message (``problem`` says why)
    problem: str = ""
    leased: bool = False  # the runner has claimed the job (its run began, or a beat found it held)
    renew_at_ms: int = 0  # when its lease is next renewed (runner clock): due a set time after receipt or renewal
    tenant: str = ""  # its message group (the job's tenant, as :func:`jobadapters.sqs.message_group` makes it)
    started: bool = False  # given a slot: before, it is only held (hidden, not claimed)
    beyond_room: bool = False  # received by a follow-up receive, beyond the room the poller's semaphore counts
    ran: bool = False  # the runner has returned: nothing left to renew
    released: bool = False  # given back to the queue at shutdown: never settled from here
    why: str = ""  # why the run was told to stop
    traceparent: str | None = None  # the submit's trace context, from the message's attributes
    stop: threading.Event = field(default_factory=threading.Event)

    def stop_run(self, why: str) -> None:
        if not self.stop.is_set():
            self.why = why
            self.stop.set()
            log.info("job %s: stopping its run: %s", self.job_id, why)


@dataclass(kw_only=True)
class Heartbeat:
    """The beat of one poller: ``in_flight()`` its messages now, ``extend(seconds)`` hides them all that long."""

    runner: JobRunner
    every_s: float
    hold_s: int  # how long a message stays hidden while held (the poller's; extended every third of it)
    clock: Callable[[], float]  # seconds, for the visibility's schedule
    in_flight: Callable[[], list[InFlight]]
    extend: Callable[[int], None]

    @property
    def renew_every_ms(self) -> int:
        """How often a job's lease is renewed: every ``RENEW_EVERY_BEATS`` beats, at most a third of the lease."""
        return int(min(self.runner.lease_ms / 3, RENEW_EVERY_BEATS * self.every_s * 1000))

    def run(self, finished: threading.Event) -> None:
        visibility_every_s = max(1.0, self.hold_s / 3)
        visibility_due = self.clock() + visibility_every_s
        while not finished.wait(self.every_s):
            self.check(self.in_flight())
            if self.clock() >= visibility_due:
                visibility_due = self.clock() + visibility_every_s
                self.extend(self.hold_s)

    def check(self, entries: Sequence[InFlight]) -> None:
        """Read the state of the jobs in flight, 100 a call; renew the leases that are due of those still held."""
        store, owner = self.runner.store, self.runner.owner
        # A run told to stop is renewed still until it returns (a call in progress ends first), so the
        # sweeper does not take a live run for a dead one; a released one is left to run out. Whether the run
        # had claimed its job is read before asking: a claim made after the read means nothing lost.
        live = [(e, e.job_id, e.leased) for e in entries if e.job_id is not None and e.started and not e.ran and not e.released]
        if not live:
            return
        try:
            states: dict[str, tuple[JobStatus, str | None]] | None = store.lease_states([job_id for _, job_id, _ in live])
        except Exception as error:  # noqa: BLE001 - the next beat reads again; the due leases are renewed still
            log.warning("reading the state of %d jobs in flight failed: %s", len(live), error)
            states = None
        now = self.runner.clock_ms()
        for entry, job_id, was_leased in live:
            if states is None:  # only the renewal, when due, tells whether the job is still held
                renewed = self._renew(entry, job_id, now) if now >= entry.renew_at_ms else None
                if renewed is not None:
                    self._observe(entry, was_leased, JobStatus.RUNNING if renewed else None)
                continue
            status, holder = states.get(job_id, (None, None))
            held = status in ACTIVE and holder == owner
            if held and now >= entry.renew_at_ms and self._renew(entry, job_id, now) is False:
                held = False  # lost since the read
            self._observe(entry, was_leased, status if held else None)

    def _renew(self, entry: InFlight, job_id: str, now: int) -> bool | None:
        """Renew ``entry``'s lease: whether this worker still holds it; None if the store could not say."""
        try:
            renewed = self.runner.store.renew_lease(job_id, owner=self.runner.owner, until_ms=now + self.runner.lease_ms)
        except Exception as error:  # noqa: BLE001 - the next beat tries again; the lease outlives several
            log.warning("job %s: lease renewal failed: %s", job_id, error)
            return None
        entry.renew_at_ms = now + self.renew_every_ms
        return renewed

    @staticmethod
    def _observe(entry: InFlight, was_leased: bool, status: JobStatus | None) -> None:
        """Act on a job's state as its heartbeat found it: ``status`` None when this worker does not hold it."""
        if status is None:
            if was_leased and not entry.ran:  # a run that has just ended (and settled its job) lost nothing
                entry.stop_run("its lease was lost (re-queued by the sweeper, or settled elsewhere)")
            return
        entry.leased = True
        if status is JobStatus.CANCELING:
            entry.stop_run("it is being canceled")
