"""Webhook deliveries: the outbox entry a terminal job carries, its attempts, and its schedule.

When a job reaches a terminal state that its webhook asked for, the same conditional write that
records the state opens a :class:`Delivery` on the job (the outbox): nothing is sent on the request
path, and a process that dies right after the write loses nothing, since the dispatcher finds every
pending delivery by its due time. The dispatcher (:mod:`jobcore.dispatch`) claims an attempt (recording
it in flight), POSTs, and records its outcome here; each attempt of one event carries the same event id (the
receiver's dedupe key). An attempt whose dispatcher died mid-POST stays in the log, ``interrupted``.

Pure: no clock, no randomness, no I/O of its own; callers pass ``now_ms`` and a random draw.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from jobcore.errors import ConflictError

# Standard Webhooks' (Svix's) schedule, as gaps between attempts: immediately, then 5 s, 5 min, 30 min,
# 2 h, 5 h, 10 h, 10 h: eight attempts over about 27 hours.
DEFAULT_GAPS_S = (5, 300, 1800, 7200, 18000, 36000, 36000)
# Attempts kept in the log across redeliveries (the job item must stay far below DynamoDB's 400 KB).
MAX_ATTEMPTS_KEPT = 60
MAX_RETRY_AFTER_S = 24 * 3600
# A hand-over to the dispatcher's queue is trusted this long past its due time; after that the sweep
# hands the attempt over again (the message was lost, or its dispatcher died before claiming it). An attempt
# that was claimed is the claim's business instead: the sweep acts when the claim ends (Delivery.sweep_at).
HANDOVER_GRACE_MS = 5 * 60 * 1000
# The error kinds of an attempt without an outcome: being made now (claimed, not yet recorded), or left so by
# a dispatcher that died during it (the receiver may have got it: the next attempt sends the same event id).
IN_FLIGHT = "in_flight"
INTERRUPTED = "interrupted"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class RetrySchedule:
    """Seconds to wait after attempt ``n`` (1-based) before attempt ``n + 1``; ± ``jitter`` of each gap."""

    gaps_s: tuple[float, ...] = DEFAULT_GAPS_S
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not all(isinstance(g, int | float) and 0 <= g < math.inf for g in self.gaps_s):
            raise ValueError(f"retry schedule: gaps must be non-negative seconds, not {self.gaps_s!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError("retry schedule: jitter is a fraction below 1")

    @classmethod
    def parse(cls, text: str) -> RetrySchedule:
        """``"5,300,1800"``: the gaps between attempts, in seconds; ValueError saying what is wrong."""
        try:
            gaps = tuple(float(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise ValueError(f"retry schedule {text!r}: comma-separated seconds, e.g. '5,300,1800'") from None
        return cls(gaps)

    @property
    def attempts(self) -> int:
        return len(self.gaps_s) + 1

    def delay_s(self, step: int, *, draw: float, retry_after_s: float | None = None) -> float | None:
        """The wait before the next attempt after ``step`` attempts of a series; None when none is left.

        ``draw`` is a uniform random number in [0, 1) (the jitter); a receiver's Retry-After is a floor.
        """
        if step >= self.attempts:
            return None
        gap = self.gaps_s[step - 1] * (1 + self.jitter * (2 * draw - 1))
        if retry_after_s is not None:
            gap = max(gap, min(retry_after_s, MAX_RETRY_AFTER_S))
        return gap


@dataclass(frozen=True)
class AttemptResult:
    """What one POST came to: the HTTP status if there was one, else the error kind."""

    status: int | None
    duration_ms: int
    error: str | None = None  # timeout, dns, refused, blocked, tls, connection, redirect, http (or IN_FLIGHT, INTERRUPTED)
    detail: str = ""
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the receiver says it will never want this; retrying stops."""
        return self.status == 410


@dataclass(frozen=True)
class Attempt:
    number: int  # across every series of this delivery, from 1
    series: int
    at_ms: int
    duration_ms: int
    status: int | None
    error: str | None
    detail: str


@dataclass(frozen=True, kw_only=True)
class Delivery:
    event_id: str
    event_type: str
    url: str
    state: DeliveryState
    series: int = 1
    step: int = 0  # attempts made in this series
    next_attempt_at: int | None = None  # epoch ms, while pending
    claimed_until: int | None = None  # epoch ms: a dispatcher is attempting it until then
    handed_over: int | None = None  # the due time of the attempt last handed to the dispatcher's queue
    handed_over_at: int | None = None  # when that hand-over was made
    body_ref: str | None = None  # the event body, fixed at the first attempt (same body every attempt)
    reason: str | None = None  # why it failed, or how it was delivered
    attempts: tuple[Attempt, ...] = ()

    @property
    def pending(self) -> bool:
        return self.state is DeliveryState.PENDING

    def due(self, now_ms: int) -> bool:
        return self.pending and (self.next_attempt_at or 0) <= now_ms and (self.claimed_until or 0) <= now_ms

    def sweep_at(self) -> int | None:
        """When the sweep must act on this delivery: when its claim ends if an attempt is claimed (its
        dispatcher died if the claim is still there then: the claim outlasts the POST's timeout by a margin),
        else at its due time if nothing was handed over for it (an attempt beyond the queue's longest delay),
        or a grace period after it if something was (in case that hand-over was lost). None once it is settled.
        The jobs table indexes this."""
        if not self.pending or self.next_attempt_at is None:
            return None
        if self.claimed_until is not None:
            return max(self.claimed_until, self.next_attempt_at)
        if self.handed_over == self.next_attempt_at:
            return max(self.next_attempt_at, self.handed_over_at or 0) + HANDOVER_GRACE_MS
        return self.next_attempt_at

    def handed(self, *, now_ms: int) -> Delivery:
        """This delivery with its next attempt marked as handed over now. Called only while no claim holds it:
        a claim that lapsed (its dispatcher died) is let go; its attempt stays in flight until the next claim."""
        return replace(self, handed_over=self.next_attempt_at, handed_over_at=now_ms, claimed_until=None)

    def summary(self) -> str:
        """One line for the job's view."""
        tries = len(self.attempts)
        if self.state is DeliveryState.DELIVERED:
            return f"delivered on attempt {tries} ({self.reason})"
        if self.state is DeliveryState.FAILED:
            return f"failed after {tries} attempt{'s' * (tries != 1)}: {self.reason}"
        last = f"; last: {_describe(self.attempts[-1])}" if self.attempts else ""
        return f"pending, {tries} attempt{'s' * (tries != 1)} so far{last}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["attempts"] = [{k: v for k, v in asdict(a).items() if v is not None} for a in self.attempts]
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Delivery:
        fields = dict(data)
        fields["state"] = DeliveryState(fields["state"])
        fields["attempts"] = tuple(
            Attempt(**{"status": None, "error": None, "detail": "", **a}) for a in fields.get("attempts", ()))
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in fields.items() if k in known})


def open_delivery(*, event_id: str, event_type: str, url: str, now_ms: int) -> Delivery:
    """The outbox entry of a job that just reached a terminal state: due at once, and handed over by
    the writer right after it is saved."""
    opened = Delivery(event_id=event_id, event_type=event_type, url=url, state=DeliveryState.PENDING, next_attempt_at=now_ms)
    return opened.handed(now_ms=now_ms)


def claim(delivery: Delivery, *, now_ms: int, lease_ms: int) -> Delivery | None:
    """The delivery held by the caller for one attempt until ``now + lease``, that attempt in its log as
    IN_FLIGHT from now (saved before anything is sent, so a dispatcher that dies mid-POST leaves it there);
    None if not due or held. An attempt a dead dispatcher left in flight becomes INTERRUPTED (outcome unknown)
    and counts as one of the series' attempts."""
    if not delivery.due(now_ms):
        return None
    if delivery.attempts and delivery.attempts[-1].error == IN_FLIGHT:
        left = delivery.attempts[-1]
        lost = replace(left, error=INTERRUPTED, detail="its dispatcher stopped during the attempt: the outcome is unknown")
        delivery = replace(delivery, step=delivery.step + 1, attempts=(*delivery.attempts[:-1], lost))
    attempt = Attempt(number=_next_number(delivery), series=delivery.series, at_ms=now_ms, duration_ms=0, status=None,
                      error=IN_FLIGHT, detail="being made; its outcome is not recorded yet")
    return replace(delivery, claimed_until=now_ms + lease_ms, attempts=(*delivery.attempts, attempt)[-MAX_ATTEMPTS_KEPT:])


def record(
    delivery: Delivery, result: AttemptResult, *, at_ms: int, now_ms: int, schedule: RetrySchedule, draw: float,
) -> Delivery:
    """The delivery after one attempt (made at ``at_ms``, ended at ``now_ms``): delivered, failed for
    good, or due again per the schedule, counted from the attempt's end. The attempt :func:`claim` put in
    flight is the one recorded."""
    earlier = delivery.attempts
    if earlier and earlier[-1].error == IN_FLIGHT:
        earlier = earlier[:-1]
    attempt = Attempt(
        number=_next_number(replace(delivery, attempts=earlier)), series=delivery.series,
        at_ms=at_ms, duration_ms=result.duration_ms, status=result.status, error=result.error,
        detail=result.detail[:300],
    )
    step = delivery.step + 1
    done = replace(delivery, step=step, claimed_until=None, attempts=(*earlier, attempt)[-MAX_ATTEMPTS_KEPT:])
    if result.delivered:
        return replace(done, state=DeliveryState.DELIVERED, next_attempt_at=None, reason=f"HTTP {result.status}")
    if result.gone:
        return replace(done, state=DeliveryState.FAILED, next_attempt_at=None, reason="the receiver answered 410 Gone")
    delay = schedule.delay_s(step, draw=draw, retry_after_s=result.retry_after_s)
    if delay is None:
        why = f"no attempt left after {step} ({schedule.attempts} in a series); last: {_describe(attempt)}"
        return replace(done, state=DeliveryState.FAILED, next_attempt_at=None, reason=why)
    return replace(done, next_attempt_at=now_ms + math.ceil(delay * 1000))


def redeliver(delivery: Delivery, *, now_ms: int) -> Delivery:
    """A new series of attempts of the same event (same id, same body), due at once."""
    if delivery.pending:
        raise ConflictError("a delivery of this event is already under way; see its attempts")
    renewed = replace(delivery, state=DeliveryState.PENDING, series=delivery.series + 1, step=0, next_attempt_at=now_ms,
                      claimed_until=None, reason=None)
    return renewed.handed(now_ms=now_ms)


def _next_number(delivery: Delivery) -> int:
    return (delivery.attempts[-1].number if delivery.attempts else 0) + 1


def _describe(attempt: Attempt) -> str:
    what = f"HTTP {attempt.status}" if attempt.status is not None else (attempt.error or "error")
    return f"{what}{': ' + attempt.detail if attempt.detail else ''}"
