"""The seed article's decision framework as a policy: which lane runs a job, and why.

The questions, in the order the policy asks them (each answer is recorded on the job):

1. Needs a GPU?                      → gpu lane (ECS on EC2), if enabled; never sync.
2. Memory beyond every lane?         → unroutable (422).
3. Client asked ``async``?           → cpu lane.
4. Expected duration > inline budget → cpu lane (sync: unroutable, it cannot answer in time).
5. Memory > the router's memory?     → cpu lane (sync: unroutable).
6. A batch task (not event-driven)?  → cpu lane, unless the client asked ``sync``.
7. Arriving faster than the rate at which the always-on worker becomes cheaper than
   per-request inline runs?          → cpu lane, unless the client asked ``sync``.
8. Otherwise                         → inline: short, small, event-driven, run it now.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobcore.errors import UnroutableError
from jobcore.model import Mode, Route


@dataclass(frozen=True, kw_only=True)
class TaskProfile:
    """What a task declares about itself: the decision framework's inputs."""

    expected_duration_s: float
    memory_mb: int
    gpu: bool = False
    trigger: str = "event"  # "event": a request waits for it; "batch": nobody waits
    typical_input_tokens: int = 0
    typical_output_tokens: int = 0
    timeout_s: float = 900.0


@dataclass(frozen=True, kw_only=True)
class Hints:
    """What a request may add: its own expectation of duration and memory."""

    expected_duration_s: float | None = None
    memory_mb: int | None = None


@dataclass(frozen=True, kw_only=True)
class RoutingPolicy:
    inline_budget_s: float = 20.0
    router_memory_mb: int = 1024
    worker_memory_mb: int = 4096
    gpu_memory_mb: int = 15360
    gpu_enabled: bool = False


@dataclass(frozen=True)
class Decision:
    route: Route
    reason: str


def decide(
    profile: TaskProfile,
    *,
    expected_duration_s: float,
    hints: Hints = Hints(),
    mode: Mode = Mode.AUTO,
    policy: RoutingPolicy,
    arrival_rate_per_min: float = 0.0,
    worker_cheaper_above_per_min: float | None = None,
) -> Decision:
    """Route one job; raises UnroutableError with the reason when no lane can honour the request.

    ``arrival_rate_per_min`` is how often this task arrives; ``worker_cheaper_above_per_min`` the
    rate above which the always-on worker costs less than inline runs
    (:func:`jobcore.costing.break_even_rate_per_min`; None: never prefer the worker for rate alone).
    """
    duration = hints.expected_duration_s if hints.expected_duration_s is not None else expected_duration_s
    memory = max(profile.memory_mb, hints.memory_mb or 0)
    if profile.gpu:
        return _gpu(mode, policy, memory)
    largest = max(policy.router_memory_mb, policy.worker_memory_mb)
    if memory > largest:
        raise UnroutableError(f"needs {memory} MB, more than any lane offers ({largest} MB)")
    if mode is Mode.ASYNC:
        return Decision(Route.CPU, "cpu: client asked for async")
    if duration > policy.inline_budget_s:
        return _queued_or_refused(mode, f"expected {duration:.1f} s > inline budget {policy.inline_budget_s:g} s")
    if memory > policy.router_memory_mb:
        return _queued_or_refused(mode, f"needs {memory} MB > router memory {policy.router_memory_mb} MB")
    if mode is Mode.SYNC:
        return Decision(Route.INLINE, f"inline: client asked for sync; expected {duration:.1f} s fits the budget")
    if profile.trigger == "batch":
        return Decision(Route.CPU, "cpu: batch task, nobody waits on it")
    threshold = worker_cheaper_above_per_min
    if threshold is not None and arrival_rate_per_min > threshold:
        return Decision(
            Route.CPU,
            f"cpu: arriving at {arrival_rate_per_min:,.4g}/min > {threshold:.3g}/min, where the always-on worker is cheaper",
        )
    return Decision(
        Route.INLINE,
        f"inline: expected {duration:.1f} s <= budget {policy.inline_budget_s:g} s, {memory} MB <= {policy.router_memory_mb} MB",
    )


def _gpu(mode: Mode, policy: RoutingPolicy, memory: int) -> Decision:
    if mode is Mode.SYNC:
        raise UnroutableError("needs a GPU, which only the queued gpu lane has: sync is impossible, use auto or async")
    if not policy.gpu_enabled:
        raise UnroutableError("needs a GPU, and the gpu lane is not enabled in this deployment")
    if memory > policy.gpu_memory_mb:
        raise UnroutableError(f"needs {memory} MB, more than the gpu lane offers ({policy.gpu_memory_mb} MB)")
    return Decision(Route.GPU, "gpu: task needs a GPU (ECS on EC2)")


def _queued_or_refused(mode: Mode, why: str) -> Decision:
    if mode is Mode.SYNC:
        raise UnroutableError(f"cannot run sync: {why}")
    return Decision(Route.CPU, f"cpu: {why}")
