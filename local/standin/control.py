"""Injected behaviour (latency, hangs, failures, batch settings) and the request counters, shared by the
Python and HTTP controls."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from local.standin.api import ApiError
from local.standin.batches import BatchFailRule, BatchSettings
from local.standin.cache import PromptCache
from local.standin.limits import ModelLimits, RateLimiter

# Error type the real API reports for each status the stand-in can be told to fail with.
FAIL_ERROR_TYPES = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
_FAIL_MESSAGES = {429: "Number of requests has exceeded your rate limit.", 500: "Internal server error.", 529: "Overloaded"}


class State:
    """Injected behaviour and request counters, guarded by one lock since handlers run in threads."""

    def __init__(
        self, latency_s: float, batch: BatchSettings | None = None, clock: Callable[[], float] = time.time,
        limits: ModelLimits | None = None,
    ):
        self._lock = threading.Lock()
        self._default_latency_s = non_negative(latency_s, "latency_s")
        self._default_batch = batch or BatchSettings()
        self._default_limits = limits
        self.clock = clock  # wall-clock seconds: prompt-cache ttls, batch timing, rate limits and timestamps
        self.cache = PromptCache()
        # Set by release(): the waits (hang, latency) of the requests that arrived before it end at once.
        self._released = threading.Event()
        self.reset()

    def reset(self) -> None:
        self.cache.clear()
        with self._lock:
            self.latency_s, self.hang_s = self._default_latency_s, 0.0
            self.batch = self._default_batch
            self.batches_created = 0
            self.batch_requests: dict[str, int] = {}  # batch id → its number of requests
            self.fail_status: int | None = None
            self.fail_remaining: int | None = None
            self.fail_until: float | None = None  # time.monotonic() when a failure for a duration ends
            self.fail_retry_after: float | None = None  # the retry-after header's value (a 429's: 1 unless set)
            self.by_status: dict[str, int] = {}
            self.requests, self.last_request = 0, None
            self.limiter: RateLimiter | None = None if self._default_limits is None else RateLimiter(self._default_limits, self.clock)

    def set_latency(self, seconds: Any) -> None:
        seconds = non_negative(seconds, "latency_s")
        with self._lock:
            self.latency_s = seconds

    def set_hang(self, seconds: Any) -> None:
        seconds = 0.0 if seconds is None else non_negative(seconds, "hang_s")
        with self._lock:
            self.hang_s = seconds

    def release(self) -> None:
        """End the waits (hang, latency) of every request in progress now: each goes on at once, as if its wait had
        run out (a hung one answers). Requests arriving after it wait as configured."""
        with self._lock:
            released, self._released = self._released, threading.Event()
        released.set()

    def set_fail(self, status: Any, times: Any, for_s: Any = None, retry_after: Any = None) -> None:
        if status is not None and status not in FAIL_ERROR_TYPES:
            raise ValueError(f"fail.status: must be one of {sorted(FAIL_ERROR_TYPES)} or null")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 0):
            raise ValueError("fail.times: must be a non-negative integer or null")
        for_s = None if for_s is None else non_negative(for_s, "fail.for_s")
        retry_after = None if retry_after is None else non_negative(retry_after, "fail.retry_after")
        with self._lock:
            self.fail_status, self.fail_remaining = status, times
            self.fail_until = None if for_s is None or status is None else time.monotonic() + for_s
            self.fail_retry_after = retry_after

    def set_limits(self, limits: ModelLimits | None) -> None:
        """Rate limits from now on, with full buckets and fresh counters; None turns the rate-limit mode off."""
        limiter = None if limits is None else RateLimiter(limits, self.clock)
        with self._lock:
            self.limiter = limiter

    def set_batch(self, delay_s: Any = None, cancel_delay_s: Any = None, fail: Any = None) -> None:
        """Settings for batches created from now on; None leaves one unchanged, ``fail=[]`` drops the rules."""
        delay_s = None if delay_s is None else non_negative(delay_s, "batch.delay_s")
        cancel_delay_s = None if cancel_delay_s is None else non_negative(cancel_delay_s, "batch.cancel_delay_s")
        if fail is not None and not isinstance(fail, list):
            raise ValueError("batch.fail: must be a list of rules or null")
        rules = None if fail is None else tuple(BatchFailRule.parse(rule, f"batch.fail.{i}") for i, rule in enumerate(fail))
        with self._lock:
            old = self.batch
            self.batch = BatchSettings(
                old.delay_s if delay_s is None else delay_s,
                old.cancel_delay_s if cancel_delay_s is None else cancel_delay_s,
                old.fail if rules is None else rules,
            )

    def batch_settings(self) -> BatchSettings:
        with self._lock:
            return self.batch

    def batch_created(self, batch_id: str, requests: int) -> None:
        with self._lock:
            self.batches_created += 1
            self.batch_requests[batch_id] = requests

    def apply_control(self, control: Any) -> None:
        """The HTTP control body: only the keys present change; null clears ``fail`` and ``hang_s``."""
        if not isinstance(control, dict):
            raise ValueError("control: must be a JSON object")
        unknown = set(control) - {"latency_s", "fail", "hang_s", "batch", "limits", "release"}
        if unknown:
            raise ValueError(f"control: unknown keys {sorted(unknown)}")
        if not isinstance(control.get("release", False), bool):
            raise ValueError("release: must be true or false")
        if "latency_s" in control:
            self.set_latency(control["latency_s"])
        if "fail" in control:
            fail = control["fail"] or {}
            if not isinstance(fail, dict):
                raise ValueError("fail: must be an object or null")
            unknown = set(fail) - {"status", "times", "for_s", "retry_after"}
            if unknown:
                raise ValueError(f"fail: unknown keys {sorted(unknown)}")
            self.set_fail(fail.get("status"), fail.get("times"), fail.get("for_s"), fail.get("retry_after"))
        if "hang_s" in control:
            self.set_hang(control["hang_s"])
        if "limits" in control:
            self.set_limits(None if control["limits"] is None else ModelLimits.from_dict(control["limits"]))
        if "batch" in control:
            batch = control["batch"]
            if not isinstance(batch, dict):
                raise ValueError("batch: must be an object")
            unknown = set(batch) - {"delay_s", "cancel_delay_s", "fail"}
            if unknown:
                raise ValueError(f"batch: unknown keys {sorted(unknown)}")
            rules = [] if "fail" in batch and batch["fail"] is None else batch.get("fail")
            self.set_batch(batch.get("delay_s"), batch.get("cancel_delay_s"), rules)
        if control.get("release"):  # last: the settings above apply to what arrives after it
            self.release()

    def config(self) -> dict[str, Any]:
        with self._lock:
            fail: dict[str, Any] | None = None
            if self.fail_status and not self._failure_over():
                fail = {"status": self.fail_status, "times": self.fail_remaining}
                if self.fail_until is not None:
                    fail["for_s"] = round(max(0.0, self.fail_until - time.monotonic()), 3)
                if self.fail_retry_after is not None:
                    fail["retry_after"] = self.fail_retry_after
            limits = None if self.limiter is None else self.limiter.limits.as_dict()
            return {"latency_s": self.latency_s, "fail": fail, "hang_s": self.hang_s or None, "batch": self.batch.as_dict(),
                    "limits": limits}

    def _failure_over(self) -> bool:
        """Whether a failure for a duration has run its time (the lock is held)."""
        return self.fail_until is not None and time.monotonic() >= self.fail_until

    def arrive(self, body: Any) -> tuple[float, float, threading.Event]:
        """Count a messages request; return the (hang, latency) it must wait out, and the event that ends them early
        (:meth:`release`)."""
        with self._lock:
            self.requests += 1
            self.last_request = body
            return self.hang_s, self.latency_s, self._released

    def take_failure(self) -> ApiError | None:
        """The injected error for this request, if one is due; counts down ``fail.times``."""
        with self._lock:
            status = self.fail_status
            if status is None or self.fail_remaining == 0 or self._failure_over():
                return None
            if self.fail_remaining is not None:
                self.fail_remaining -= 1
            retry_after = self.fail_retry_after if self.fail_retry_after is not None else (1 if status == 429 else None)
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        return ApiError(status, FAIL_ERROR_TYPES[status], _FAIL_MESSAGES[status], headers)

    def answered(self, status: int) -> None:
        with self._lock:
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            stats = {
                "requests": self.requests, "by_status": dict(self.by_status), "last_request": copy.deepcopy(self.last_request),
                "batches": {"created": self.batches_created, "requests": dict(self.batch_requests)},
            }
            limiter = self.limiter
        return {**stats, "limits": None if limiter is None else limiter.stats()}


def non_negative(value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: must be a non-negative number")
    return float(value)
