"""Claude calls with a hard deadline, for the inline path.

The SDK's own retries can wait longer than API Gateway does (it honours Retry-After), so the inline
path turns them off and retries here, only while the answer can still arrive before the deadline.
When it can't, the caller gets ModelUnavailableError and queues the job instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jobcore.errors import ModelUnavailableError
from jobcore.ports import LanguageModel


@dataclass
class DeadlineModel:
    """A LanguageModel that gives up by ``deadline`` (a ``clock()`` reading, seconds)."""

    llm: LanguageModel
    deadline: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    max_attempts: int = 2
    backoff_s: float = 0.5
    # Under this much time left a new attempt cannot produce an answer: give up at once.
    min_attempt_s: float = 1.0

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        attempt = 0
        while True:
            attempt += 1
            left = self._left()
            try:
                return self.llm.create(params, timeout_s=left if timeout_s is None else min(timeout_s, left))
            except ModelUnavailableError as error:
                # The workers' rule (jobcore.runner.Backoff): Retry-After is a floor, never a replacement.
                delay = max(self.backoff_s * attempt, error.retry_after_s or 0)
                if attempt >= self.max_attempts or self._left_after(delay) < self.min_attempt_s:
                    raise
                self.sleep(delay)

    def _left(self) -> float:
        left = self.deadline - self.clock()
        if left < self.min_attempt_s:
            raise ModelUnavailableError("inline budget spent before the model answered")
        return left

    def _left_after(self, delay: float) -> float:
        return self.deadline - self.clock() - delay
