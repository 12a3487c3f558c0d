"""A circuit breaker per model provider, its state shared between processes through a :class:`BreakerStore`.

Closed: calls go through; a run of ``failures`` refusals (529, 5xx, throttling, timeouts) within ``window_ms``
opens it. Open: no calls for ``cool_down_ms``. Then half-open: one process claims the probe (a conditional write,
so a fleet of workers does not all probe at once); its success closes the breaker, its failure opens it again for
another cool-down. A probe whose process died is given up after ``probe_timeout_ms`` and another may claim it.

Pure: the transitions are functions of a state and the time; :class:`Breakers` reads and writes the shared copy,
and keeps a local one (a closed breaker's for ``refresh_ms``, an open one's until its cool-down ends) so that neither
costs a store read per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from jobcore.ports import BreakerStore

Position = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, kw_only=True)
class BreakerPolicy:
    failures: int = 5  # refusals within the window that open the breaker
    window_ms: int = 30_000
    cool_down_ms: int = 30_000  # how long an open breaker refuses before one probe
    probe_timeout_ms: int = 120_000  # a probe not reported by then is presumed lost
    refresh_ms: int = 1_000  # how long a process trusts its copy of a closed breaker

    def __post_init__(self) -> None:
        for name in ("failures", "window_ms", "cool_down_ms", "probe_timeout_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"breaker {name}: must be at least 1")
        if self.refresh_ms < 0:
            raise ValueError("breaker refresh_ms: must not be negative")


@dataclass(frozen=True, kw_only=True)
class BreakerState:
    failures_at: tuple[int, ...] = ()  # the recent refusals (epoch ms), at most the policy's count
    opened_at: int | None = None  # None: closed
    probe_until: int | None = None  # a probe is out until then
    version: int = 0  # the store's conditional writes

    def position(self, policy: BreakerPolicy, now_ms: int) -> Position:
        if self.opened_at is None:
            return "closed"
        return "open" if now_ms < self.opened_at + policy.cool_down_ms else "half_open"

    def reopens_at(self, policy: BreakerPolicy) -> int | None:
        return None if self.opened_at is None else self.opened_at + policy.cool_down_ms


def failed(state: BreakerState, policy: BreakerPolicy, now_ms: int) -> BreakerState:
    """A refusal: counted in the window; the run's last one opens a closed breaker, a failed probe reopens it."""
    if state.opened_at is not None:
        # Open or probing: a refusal (the probe's, or a call sent before it opened) restarts the cool-down.
        return replace(state, opened_at=now_ms, probe_until=None, failures_at=())
    recent = tuple(t for t in state.failures_at if t > now_ms - policy.window_ms) + (now_ms,)
    if len(recent) >= policy.failures:
        return replace(state, opened_at=now_ms, probe_until=None, failures_at=())
    return replace(state, failures_at=recent[-policy.failures:])


def succeeded(state: BreakerState) -> BreakerState:
    return replace(state, failures_at=(), opened_at=None, probe_until=None)


def claim_probe(state: BreakerState, policy: BreakerPolicy, now_ms: int) -> BreakerState | None:
    """The state with this caller's probe out, or None when it may not call (open, or another probe is out)."""
    if state.position(policy, now_ms) != "half_open":
        return None
    if state.probe_until is not None and now_ms < state.probe_until:
        return None
    return replace(state, probe_until=now_ms + policy.probe_timeout_ms)


@dataclass(frozen=True)
class Permit:
    """May this call go to the provider; ``probe``: it is the half-open breaker's one probe."""

    allowed: bool
    probe: bool = False
    retry_at: int | None = None  # when not allowed: when the breaker half-opens


class Breakers:
    """The providers' breakers: the shared copies in ``store``, a local copy each for ``policy.refresh_ms``."""

    def __init__(self, store: BreakerStore, policy: BreakerPolicy, clock_ms: Callable[[], int]):
        self.store, self.policy, self.clock_ms = store, policy, clock_ms
        self._local: dict[str, tuple[BreakerState, int]] = {}
        self._lock = threading.Lock()

    def permit(self, provider: str) -> Permit:
        now = self.clock_ms()
        state = self._state(provider, now)
        position = state.position(self.policy, now)
        if position == "closed":
            return Permit(True)
        if position == "open":
            return Permit(False, retry_at=state.reopens_at(self.policy))
        claimed = claim_probe(state, self.policy, now)
        if claimed is not None and self._write(provider, claimed, state.version, now):
            return Permit(True, probe=True)
        return Permit(False, retry_at=now + self.policy.cool_down_ms)

    def record_failure(self, provider: str) -> None:
        self._update(provider, lambda state, now: failed(state, self.policy, now))

    def record_success(self, provider: str, *, probe: bool = False) -> None:
        now = self.clock_ms()
        state = self._state(provider, now)
        if not probe and state.opened_at is None and not state.failures_at:
            return  # the common case, closed and clean: no write
        self._update(provider, lambda state, now: succeeded(state))

    def position(self, provider: str) -> Position:
        now = self.clock_ms()
        return self._state(provider, now).position(self.policy, now)

    def _state(self, provider: str, now: int) -> BreakerState:
        with self._lock:
            cached = self._local.get(provider)
        if cached is not None and self._trusted(*cached, now):
            return cached[0]
        state = self.store.load(provider)
        with self._lock:
            self._local[provider] = (state, now)
        return state

    def _trusted(self, state: BreakerState, seen_at: int, now: int) -> bool:
        """Whether the local copy stands without a read: closed, for ``refresh_ms``; open, until its cool-down ends,
        so that an outage costs no store read per call (another process's refusal only lengthens the cool-down,
        seen when this one ends; a late success elsewhere that closes it early is seen then too)."""
        if state.opened_at is None:
            return now - seen_at < self.policy.refresh_ms
        reopens_at = state.reopens_at(self.policy)
        return reopens_at is not None and now < reopens_at

    def _update(self, provider: str, change: Callable[[BreakerState, int], BreakerState]) -> None:
        # Another process's write between the read and ours loses us the race: read again and reapply,
        # a few times at most (each try is one read and one conditional write).
        for _ in range(3):
            now = self.clock_ms()
            state = self.store.load(provider)
            if self._write(provider, change(state, now), state.version, now):
                return

    def _write(self, provider: str, state: BreakerState, expected_version: int, now: int) -> bool:
        written = replace(state, version=expected_version + 1)
        if not self.store.save(provider, written, expected_version=expected_version):
            with self._lock:
                self._local.pop(provider, None)
            return False
        with self._lock:
            self._local[provider] = (written, now)
        return True


class MemoryBreakerStore:
    """A process's own breakers (one provider, tests, the local runtime's single process)."""

    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}
        self._lock = threading.Lock()

    def load(self, provider: str) -> BreakerState:
        with self._lock:
            return self._states.get(provider, BreakerState())

    def save(self, provider: str, state: BreakerState, *, expected_version: int) -> bool:
        with self._lock:
            if self._states.get(provider, BreakerState()).version != expected_version:
                return False
            self._states[provider] = state
            return True
