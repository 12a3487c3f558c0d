"""The task catalogue as the API shows it: where each task's typical job runs and why (the decision framework),
what it typically costs on that lane and through the batch lane; and the route and estimate of one job, which
submission uses too."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from jobcore.errors import UnroutableError
from jobcore.model import Mode
from jobcore.requests import SubmitRequest
from jobcore.routing import Decision, RoutingPolicy, decide
from jobcore.tasks import TaskSpec


class CostEstimator(Protocol):
    """What the service needs of :class:`jobcore.costing.CostModel`."""

    def estimate(
        self, *, lane: str, model_id: str, expected_duration_s: float, input_tokens: int, output_tokens: int,
    ) -> dict[str, Any]: ...

    def break_even_per_min(self, expected_duration_s: float) -> float | None: ...

    def batch_estimate(self, *, model_id: str, input_tokens: int, output_tokens: int) -> dict[str, Any]: ...


@dataclass(kw_only=True)
class CatalogueView:
    catalogue: dict[str, TaskSpec]
    policy: RoutingPolicy
    model_id: str
    cost_model: CostEstimator | None = None
    # Requests per minute by task, as the operator declares them (the frequency question).
    arrival_rates_per_min: dict[str, float] | None = None

    def tasks(self) -> list[dict[str, Any]]:
        return [self.describe(task) for task in self.catalogue.values()]

    def describe(self, task: TaskSpec) -> dict[str, Any]:
        """A task's profile, its input (a JSON Schema), where its typical job runs and why, and what that typically costs."""
        expected_s = task.profile.expected_duration_s
        described: dict[str, Any] = {"name": task.name, "description": task.description, "profile": asdict(task.profile),
                                     "input_schema": task.input_schema}
        try:
            where = self.route(task, expected_s)
        except UnroutableError as error:
            return {**described, "route": {"lane": None, "reason": str(error)}}
        frequency = {
            "declared_rate_per_min": (self.arrival_rates_per_min or {}).get(task.name, 0.0),
            "worker_cheaper_above_per_min": self.cost_model.break_even_per_min(expected_s) if self.cost_model else None,
        }
        return {
            **described, "route": {"lane": where.lane, "reason": where.reason},
            "frequency": frequency, "typical_cost": self.estimate(task, where.lane, expected_s),
            "batch_cost": self.batch_estimate(task),
        }

    def route(self, task: TaskSpec, expected_s: float, request: SubmitRequest | None = None, *,
              async_because: str | None = None) -> Decision:
        """The decision framework for one job (or, without a request, for the task's defaults). ``async_because``:
        why its mode is async, when its client did not ask for that (decide's rule 3)."""
        rate = (self.arrival_rates_per_min or {}).get(task.name, 0.0)
        threshold = self.cost_model.break_even_per_min(expected_s) if self.cost_model and rate > 0 else None
        return decide(
            task.profile, expected_duration_s=expected_s, policy=self.policy,
            hints=request.hints if request else None, mode=request.mode if request else Mode.AUTO,
            arrival_rate_per_min=rate, worker_cheaper_above_per_min=threshold,
            max_queue_s=request.max_queue_s if request else None,
            **({"async_because": async_because} if async_because is not None else {}),
        )

    def estimate(self, task: TaskSpec, lane: str, expected_s: float, *, model_id: str | None = None) -> dict[str, Any] | None:
        """What a job of this task should cost on ``lane``, from its profile's typical tokens."""
        if self.cost_model is None:
            return None
        return self.cost_model.estimate(
            lane=lane, model_id=model_id or self.model_id, expected_duration_s=expected_s,
            input_tokens=task.profile.typical_input_tokens, output_tokens=task.profile.typical_output_tokens,
        )

    def batch_estimate(self, task: TaskSpec) -> dict[str, Any] | None:
        """The typical job's tokens through the Message Batches API (half price, no compute of ours); None for
        a task the batch lane cannot take (one that needs a GPU or computes its result itself)."""
        if self.cost_model is None or task.profile.gpu or not task.profile.model_calls:
            return None
        return self.cost_model.batch_estimate(model_id=self.model_id, input_tokens=task.profile.typical_input_tokens,
                                              output_tokens=task.profile.typical_output_tokens)
