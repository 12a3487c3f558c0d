"""What a running job has spent on the model, and the stop at its ``max_cost_usd``; the budget check at submission.

Every run's model goes through a :class:`MeteredModel`: it adds up each answer's tokens (so a job that fails
half-way still records what it used) and, with a cap, refuses the next call unless what the job's earlier
attempts spent, the tokens spent, the calls in flight and that call's *ceiling* all fit under it. The ceiling is
what the call can cost at most: its input counted as one token per byte of its JSON (a token always covers at
least one byte) plus ``max_tokens`` of output, so the cap is never passed, whatever the model answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobcore.errors import BudgetExceededError
from jobcore.model import Usage
from jobcore.ports import LanguageModel

# Tokens of framing per message on top of its bytes (role markers): a margin, so the ceiling stays one.
_FRAMING_TOKENS_PER_MESSAGE = 16
_INPUT_PARTS = ("system", "messages", "tools", "tool_choice")


def ceiling(params: Mapping[str, Any]) -> Usage:
    """The most tokens one Messages API call can use: its input's bytes (plus framing) and ``max_tokens``."""
    parts = {key: params[key] for key in _INPUT_PARTS if key in params}
    input_bytes = len(json.dumps(parts, ensure_ascii=False).encode("utf-8"))
    messages = len(params.get("messages") or ())
    return Usage(input_tokens=input_bytes + _FRAMING_TOKENS_PER_MESSAGE * (messages + 1),
                 output_tokens=int(params.get("max_tokens") or 0), model_calls=1)


@dataclass
class MeteredModel:
    """A LanguageModel that counts what its calls used and, given ``cap_usd``, stops before passing it.

    ``price(model_id, usage)``: what those tokens cost in USD (the cost model's Claude part).
    ``usage_of(response)``: one answer's tokens.
    ``spent_before_usd``: what the job's earlier attempts spent on the model: the cap is the job's, over all of them.
    """

    llm: LanguageModel
    price: Callable[[str | None, Usage], float]
    usage_of: Callable[[Mapping[str, Any]], Usage]
    model_id: str | None = None
    cap_usd: float | None = None
    spent_before_usd: float = 0.0
    usage: Usage = Usage()
    _reserved_usd: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def spent_usd(self) -> float:
        return self.price(self.model_id, self.usage)

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        model = params.get("model") or self.model_id
        most = self.price(model, ceiling(params)) if self.cap_usd is not None else 0.0
        with self._lock:
            if self.cap_usd is not None:
                spent = self.spent_before_usd + self.spent_usd
                if spent + self._reserved_usd + most > self.cap_usd:
                    before = f" (${self.spent_before_usd:.6f} of it by earlier attempts)" if self.spent_before_usd else ""
                    raise BudgetExceededError(
                        f"stopped before its next model call: ${spent:.6f} spent{before}, ${self._reserved_usd:.6f} in calls in "
                        f"flight, and the next call may cost up to ${most:.6f}, which would pass its max_cost_usd "
                        f"${self.cap_usd:g}", figures={"spent_usd": round(spent, 6), "next_call_ceiling_usd": round(most, 6),
                                                      "max_cost_usd": self.cap_usd})
            self._reserved_usd += most
        try:
            response = self.llm.create(params, timeout_s=timeout_s)
        finally:
            with self._lock:
                self._reserved_usd -= most
        with self._lock:
            self.usage = self.usage + self.usage_of(response)
        return response


def check_submission(*, estimate_usd: float, max_cost_usd: float | None, budget_usd: float | None,
                     month_spent_usd: float) -> None:
    """Refuse a job whose estimate exceeds its own ``max_cost_usd``, or would take its tenant past the monthly
    ``budget_usd`` (what the month's finished jobs spent, plus this estimate): BudgetExceededError with the figures."""
    if max_cost_usd is not None and estimate_usd > max_cost_usd:
        raise BudgetExceededError(
            f"the job's estimated cost ${estimate_usd:.6f} exceeds its max_cost_usd ${max_cost_usd:g}",
            figures={"estimate_usd": round(estimate_usd, 6), "max_cost_usd": max_cost_usd})
    if budget_usd is not None and month_spent_usd + estimate_usd > budget_usd:
        remaining = max(0.0, budget_usd - month_spent_usd)
        raise BudgetExceededError(
            f"the job's estimated cost ${estimate_usd:.6f} would pass the tenant's monthly budget: ${month_spent_usd:.6f} of "
            f"${budget_usd:g} spent this month, ${remaining:.6f} left",
            figures={"estimate_usd": round(estimate_usd, 6), "budget_usd": budget_usd,
                     "month_spent_usd": round(month_spent_usd, 6), "remaining_usd": round(remaining, 6)})
