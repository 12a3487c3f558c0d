"""Waking an idle lane: a queued job on a worker lane with no task asks for one at once.

A scale-to-zero lane otherwise waits for its backlog alarm: a 1-minute SQS metric (later still for a queue
idle for hours), an alarm evaluation and a step policy, and only then ECS starts a task. The router, which
has just queued the job, can ask ECS itself (:class:`jobcore.ports.LaneWaker`, ``jobadapters.ecs``).

That call sits on the submit request's path, so it is bounded twice: :class:`GatedWaker` lets one attempt
per lane through every ``every_s`` seconds per process (:data:`jobcore.limits.WAKE_EVERY_S`; the threads of
the process share the gate, so a burst of submits costs one attempt), and whatever the attempt does
(an error, a timeout) is logged, never raised: the job is already queued, and the alarm is the fallback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from jobcore.lanes import Lanes
from jobcore.limits import WAKE_EVERY_S
from jobcore.ports import LaneWaker

log = logging.getLogger(__name__)


class WakeGate:
    """Per lane: at most one attempt every ``every_s`` seconds of ``monotonic``, whatever the threads."""

    def __init__(self, *, monotonic: Callable[[], float], every_s: float = WAKE_EVERY_S) -> None:
        if not every_s > 0:
            raise ValueError("every_s: a positive number of seconds")
        self._monotonic = monotonic
        self._every_s = every_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def admit(self, lane: str) -> bool:
        """True (and the window starts now) if no attempt on ``lane`` was admitted in the last ``every_s``."""
        with self._lock:
            now = self._monotonic()
            last = self._last.get(lane)
            if last is not None and now - last < self._every_s:
                return False
            self._last[lane] = now
            return True


class GatedWaker:
    """A :class:`LaneWaker` for the job service: only the lanes a worker service drains (never inline, never the
    batch lane, whose collector runs on a schedule), through the gate, never raising."""

    def __init__(self, inner: LaneWaker, *, lanes: Lanes, gate: WakeGate) -> None:
        self._inner = inner
        self._gate = gate
        self._lanes = frozenset(lane.name for lane in lanes.worker_lanes())

    def wake(self, lane: str) -> bool:
        if lane not in self._lanes or not self._gate.admit(lane):
            return False
        try:
            return self._inner.wake(lane)
        except Exception as error:  # noqa: BLE001 - the job is queued; the lane's backlog alarm still starts a task
            log.warning("lane %s: could not ask for a worker (%s); its backlog alarm will", lane, error)
            return False
