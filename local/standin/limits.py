"""The rate-limit mode: Anthropic's per-minute limits as token buckets, counted the way Anthropic counts.

Each limit (requests, input tokens, output tokens per minute: RPM, ITPM, OTPM) is a bucket whose capacity
is the per-minute limit, refilled continuously at limit/60 a second, as Anthropic documents its own. A
request needs room in every bucket at once, else it is refused with a 429 ``rate_limit_error`` whose
``retry-after`` is the whole seconds until the bucket that refused it has room:

* requests: 1;
* input tokens: the prompt's tokens less those read from the prompt cache (cache reads do not count
  toward ITPM; cache writes do), counted before the answer is built;
* output tokens: estimated from ``max_tokens`` when the request starts, and the estimate settled with
  the real ``output_tokens`` when the answer is sent (the unused part flows back into the bucket), as
  Anthropic estimates OTPM.

A request larger than a whole bucket is admitted once that bucket is full, and leaves it in debt (it
would otherwise never run). Every answer carries ``anthropic-ratelimit-{requests,input-tokens,
output-tokens}-{limit,remaining,reset}``: remaining tokens rounded to the nearest thousand, as the API
rounds them; reset (RFC 3339) when the bucket will be full again. The combined ``-tokens-`` headers are
not sent. One set of buckets serves every model (a deployment's models are one family locally), and
Message Batches are not limited: the API counts batch requests toward their own queue limits, not
these.

Time is the clock passed in (the stand-in's), so tests move a fake one instead of sleeping.
"""

from __future__ import annotations

import argparse
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.standin.api import ApiError, rfc3339

# Bucket name → (the limit's key in ModelLimits, the header infix, the unit in a 429's message).
DIMENSIONS = {
    "requests": ("rpm", "requests", "requests"),
    "input_tokens": ("itpm", "input-tokens", "input tokens"),
    "output_tokens": ("otpm", "output-tokens", "output tokens"),
}


@dataclass(frozen=True)
class ModelLimits:
    """Per-minute limits; None leaves that dimension unlimited."""

    rpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelLimits:
        """``rpm=120,itpm=40000,otpm=8000`` (any of the three, in any order), as ``--model-limits`` takes it."""
        spec: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep or not value.strip().isdigit():
                raise ValueError(f"model limits: {part!r} is not name=integer (e.g. rpm=120,itpm=40000,otpm=8000)")
            spec[name.strip()] = int(value)
        return cls.from_dict(spec)

    @classmethod
    def from_dict(cls, spec: Any, path: str = "limits") -> ModelLimits:
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: must be an object with rpm, itpm and/or otpm")
        unknown = set(spec) - {"rpm", "itpm", "otpm"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)} (rpm, itpm, otpm)")
        for name, value in spec.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{path}.{name}: must be a positive integer or null")
        if all(spec.get(name) is None for name in ("rpm", "itpm", "otpm")):
            raise ValueError(f"{path}: give at least one of rpm, itpm, otpm")
        return cls(**spec)

    def as_dict(self) -> dict[str, int | None]:
        return {"rpm": self.rpm, "itpm": self.itpm, "otpm": self.otpm}


def limits_argument(text: str) -> ModelLimits:
    """``--model-limits``' argparse type: a bad value is a usage error naming the problem."""
    try:
        return ModelLimits.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class TokenBucket:
    """Capacity ``per_minute``, refilled continuously at ``per_minute / 60`` a second; starts full."""

    def __init__(self, per_minute: int, now: float):
        self.capacity, self.rate = float(per_minute), per_minute / 60.0
        self._level, self._at = self.capacity, now

    def __repr__(self) -> str:
        return f"TokenBucket(capacity={self.capacity:g}, level={self._level:.1f})"

    def level(self, now: float) -> float:
        """What is in the bucket at ``now`` (negative while in debt)."""
        if now > self._at:
            self._level = min(self.capacity, self._level + (now - self._at) * self.rate)
            self._at = now
        return self._level

    def seconds_until(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (a full bucket for more than its capacity); 0 if it fits now."""
        return max(0.0, min(amount, self.capacity) - self.level(now)) / self.rate

    def take(self, amount: float, now: float) -> None:
        self._level = self.level(now) - amount

    def give(self, amount: float, now: float) -> None:
        self._level = min(self.capacity, self.level(now) + amount)

    def full_at(self, now: float) -> float:
        return now + (self.capacity - self.level(now)) / self.rate


class Grant:
    """One admitted request's charge: what it took from the buckets, settled once its answer is known."""

    def __init__(self, limiter: RateLimiter, input_tokens: int, output_reserved: int):
        self._limiter, self.input_tokens, self.output_reserved = limiter, input_tokens, output_reserved

    def settle(self, input_tokens: int, output_tokens: int) -> dict[str, str]:
        """Correct the charge to the real usage; the ratelimit headers for the answer."""
        return self._limiter.settle(self, input_tokens, output_tokens)


class RateLimiter:
    """The buckets of one :class:`ModelLimits`, and what they admitted and refused, second by second."""

    def __init__(self, limits: ModelLimits, clock: Callable[[], float]):
        self.limits, self._clock = limits, clock
        self._lock = threading.Lock()
        now = clock()
        self._started = now
        self._buckets = {name: TokenBucket(per_minute, now) for name, (key, _, _) in DIMENSIONS.items()
                         if (per_minute := getattr(limits, key)) is not None}
        self._totals = {"admitted": 0, "refused": 0, "input_tokens": 0, "output_tokens": 0}
        self._refused_by = dict.fromkeys(self._buckets, 0)
        self._timeline: dict[int, list[int]] = {}  # whole seconds since start → [admitted, refused, input, output]

    def admit(self, input_tokens: int, max_tokens: int) -> Grant:
        """A grant for a request of ``input_tokens`` (cache reads left out) and ``max_tokens``; a 429 when a bucket lacks room."""
        demand = {"requests": 1, "input_tokens": input_tokens, "output_tokens": max_tokens}
        with self._lock:
            now = self._clock()
            waits = {name: bucket.seconds_until(demand[name], now) for name, bucket in self._buckets.items()}
            short = {name: wait for name, wait in waits.items() if wait > 0}
            if short:
                binding = max(short, key=lambda name: short[name])
                self._totals["refused"] += 1
                self._refused_by[binding] += 1
                self._second(now)[1] += 1
                headers = {"retry-after": str(max(1, math.ceil(short[binding]))), **self._headers(now)}
                raise ApiError(429, "rate_limit_error", self._refusal(binding), headers)
            for name, bucket in self._buckets.items():
                bucket.take(demand[name], now)
            self._totals["admitted"] += 1
            self._totals["input_tokens"] += input_tokens
            second = self._second(now)
            second[0] += 1
            second[2] += input_tokens
            return Grant(self, input_tokens, max_tokens)

    def settle(self, grant: Grant, input_tokens: int, output_tokens: int) -> dict[str, str]:
        with self._lock:
            now = self._clock()
            corrections = {"input_tokens": input_tokens - grant.input_tokens, "output_tokens": output_tokens - grant.output_reserved}
            for name, delta in corrections.items():
                bucket = self._buckets.get(name)
                if bucket is not None:
                    bucket.take(delta, now) if delta > 0 else bucket.give(-delta, now)
            self._totals["input_tokens"] += corrections["input_tokens"]
            self._totals["output_tokens"] += output_tokens
            second = self._second(now)
            second[2] += corrections["input_tokens"]
            second[3] += output_tokens
            return self._headers(now)

    def headers(self) -> dict[str, str]:
        with self._lock:
            return self._headers(self._clock())

    def stats(self) -> dict[str, Any]:
        """Totals, refusals by the bucket that bound, and ``timeline``: per second since the limits were
        set, ``[second, admitted, refused, input tokens, output tokens]`` (seconds with none left out)."""
        with self._lock:
            now = self._clock()
            return {
                "limits": self.limits.as_dict(), "started_at": self._started, "elapsed_s": round(now - self._started, 3),
                **self._totals, "refused_by": dict(self._refused_by),
                "remaining": {name: math.floor(bucket.level(now)) for name, bucket in self._buckets.items()},
                "timeline": [[second, *counts] for second, counts in sorted(self._timeline.items())],
            }

    def _second(self, now: float) -> list[int]:
        return self._timeline.setdefault(int(now - self._started), [0, 0, 0, 0])

    def _refusal(self, binding: str) -> str:
        key, _, unit = DIMENSIONS[binding]
        return (f"This request would exceed your organization's rate limit of {getattr(self.limits, key):,} {unit} per minute. "
                "Reduce the prompt length or the maximum tokens requested, or try again later.")

    def _headers(self, now: float) -> dict[str, str]:
        headers = {}
        for name, bucket in self._buckets.items():
            _, infix, _ = DIMENSIONS[name]
            remaining = max(0, math.floor(bucket.level(now)))
            if name != "requests":
                remaining = round(remaining, -3)  # as the API rounds tokens remaining: to the nearest thousand
            headers[f"anthropic-ratelimit-{infix}-limit"] = str(int(bucket.capacity))
            headers[f"anthropic-ratelimit-{infix}-remaining"] = str(remaining)
            headers[f"anthropic-ratelimit-{infix}-reset"] = str(rfc3339(bucket.full_at(now)))
        return headers

