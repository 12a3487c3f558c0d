"""Workloads: a month of each task on all-Lambda, all-Fargate (on-demand and Spot), all-EC2 and this
pipeline's hybrid routing, priced with the runtime's own cost primitives and routed by its own policy.

Used by the ``cost`` command only (``python -m tools.cost``); it never ships in the Lambda or the image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from jobcore.costing import (
    MB_PER_GB,
    SECONDS_PER_HOUR,
    Cost,
    break_even_rate_per_min,
    claude_cost,
    ec2_hours,
    fargate_hourly,
    job_requests,
    lambda_compute,
    sig,
)
from jobcore.errors import UnroutableError
from jobcore.lanes import INLINE, Ec2Compute, FargateCompute, LambdaCompute, Lane, Lanes
from jobcore.limits import (
    FARGATE_MAX_MEMORY_MB,
    FARGATE_MAX_VCPU,
    LAMBDA_MAX_DURATION_S,
    LAMBDA_MAX_MEMORY_MB,
    LAMBDA_MAX_VCPU,
    LAMBDA_MB_PER_VCPU,
    SQS_MAX_VISIBILITY_S,
)
from jobcore.model import Usage
from jobcore.pricing import Instance, Prices
from jobcore.providers import ANTHROPIC, BEDROCK, DEFAULT_BEDROCK_SCOPE, PROVIDERS
from jobcore.routing import RoutingPolicy, TaskProfile, decide

STRATEGIES = ("lambda", "fargate", "fargate-spot", "ec2", "hybrid")
ROUTES = STRATEGIES[:-1]  # the concrete places a job can run; hybrid picks one of them per task
_HYBRID_STRATEGY = {"cpu": "fargate-spot", "gpu": "ec2"}


def _ceil(value: float) -> int:
    """Ceiling that ignores float noise (200.00000000001 workers is 200)."""
    return math.ceil(value - 1e-9)


def fargate_task(prices: Prices, *, vcpu: float, memory_mb: int, seconds: float, spot: bool) -> float:
    """One task that runs ``seconds``: Fargate bills at least its minimum (60 s) per task."""
    billed_s = max(seconds, prices.fargate.min_billed_s)
    return billed_s / SECONDS_PER_HOUR * fargate_hourly(prices, vcpu=vcpu, memory_mb=memory_mb, spot=spot)


@dataclass(frozen=True, kw_only=True)
class WorkloadTask:
    """One line of a workload: a kind of job, how big it is and how often it comes."""

    name: str
    duration_s: float
    memory_mb: int
    monthly_volume: float
    vcpu: float = 0.25
    gpu: bool = False
    gpu_model: str | None = None  # e.g. "A10G": the duration was measured on that GPU
    always_on: bool = False  # a continuous service: queued lanes keep enough workers up all month
    concurrency: int = 1  # jobs one worker container runs at once (I/O-bound Claude jobs: several)
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    # Who answers the calls, priced as it bills them: the Anthropic API, or Amazon Bedrock through an inference
    # profile of this scope (its price file entry: a geographic profile costs 10 % more than the global one).
    provider: str = ANTHROPIC
    bedrock_profile: str = DEFAULT_BEDROCK_SCOPE
    # Prompt caching, an assumption of the workload's: this many of input_tokens are a prefix shared by every
    # job (instructions, tool schema), and this fraction of jobs find it still cached (5-minute TTL).
    cached_prefix_tokens: int = 0
    cache_hit_rate: float = 0.0
    cache_note: str = ""
    note: str = ""


_TASK_KEYS = frozenset(f.name for f in fields(WorkloadTask)) | {"rate_per_s"}
_POSITIVE = ("duration_s", "memory_mb", "vcpu", "concurrency")


def load_workload(data: Any, prices: Prices) -> tuple[WorkloadTask, ...]:
    """The tasks of a parsed workload file (``{"tasks": [...]}`` or a bare list); ValueError names the field.

    A task gives its volume as ``monthly_volume`` (jobs a month) or ``rate_per_s`` (converted with the
    price file's hours a month).
    """
    tasks = data.get("tasks") if isinstance(data, Mapping) else data
    if not isinstance(tasks, list) or not tasks:
        raise ValueError("workload: needs a non-empty list of tasks")
    return tuple(_workload_task(spec, f"workload.tasks[{i}]", prices) for i, spec in enumerate(tasks))


def _workload_task(spec: Any, where: str, prices: Prices) -> WorkloadTask:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: must be an object")
    values = dict(spec)
    unknown = sorted(set(values) - _TASK_KEYS)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field")
    if "rate_per_s" in values:
        if "monthly_volume" in values:
            raise ValueError(f"{where}: give monthly_volume or rate_per_s, not both")
        values["monthly_volume"] = _number(values.pop("rate_per_s"), f"{where}.rate_per_s") * prices.hours_per_month * SECONDS_PER_HOUR
    for key in ("name", "duration_s", "memory_mb", "monthly_volume"):
        if key not in values:
            raise ValueError(f"{where}.{key}: missing")
    task = WorkloadTask(**values)
    for key in _POSITIVE:
        if _number(getattr(task, key), f"{where}.{key}") <= 0:
            raise ValueError(f"{where}.{key}: must be positive")
    _number(task.monthly_volume, f"{where}.monthly_volume")
    if not 0 <= _number(task.cache_hit_rate, f"{where}.cache_hit_rate") <= 1:
        raise ValueError(f"{where}.cache_hit_rate: must be a fraction from 0 to 1")
    if _number(task.cached_prefix_tokens, f"{where}.cached_prefix_tokens") > task.input_tokens:
        raise ValueError(f"{where}.cached_prefix_tokens: must be at most input_tokens ({task.input_tokens:,})")
    check_provider(task, prices, where)
    return task


def check_provider(task: WorkloadTask, prices: Prices, where: str) -> None:
    """ValueError naming the field unless the task's provider can serve its model (Bedrock: a profile of its scope)."""
    if task.provider not in PROVIDERS:
        raise ValueError(f"{where}.provider: must be {' or '.join(map(repr, PROVIDERS))}, not {task.provider!r}")
    if task.provider == BEDROCK:
        try:
            prices.claude.bedrock_profile(task.model or prices.claude.default_model, task.bedrock_profile)
        except ValueError as error:
            raise ValueError(f"{where}.bedrock_profile: {error}") from None


def task_claude_cost(prices: Prices, task: WorkloadTask, usage: Usage, *, batch: bool = False) -> float:
    """``usage``'s tokens at the price of the provider that answers the task's calls (Bedrock: its profile's)."""
    return claude_cost(prices, task.model, replace(usage, by_provider={task.provider: usage}), batch=batch,
                       bedrock_scope=task.bedrock_profile)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{where}: must be a non-negative number, not {value!r}")
    return value


@dataclass(frozen=True)
class Option:
    """One way to run a task for a month: its cost, or the plain reasons it cannot run there."""

    route: str
    cost: Cost | None = None
    cannot_run: tuple[str, ...] = ()

    @property
    def priced(self) -> Cost:
        """The cost, for an option known to run the task; ValueError for one that cannot."""
        if self.cost is None:
            raise ValueError(f"{self.route} cannot run the task: {'; '.join(self.cannot_run)}")
        return self.cost

    def to_dict(self, currency: str) -> dict[str, Any]:
        if self.cost is None:
            return {"route": self.route, "cannot_run": list(self.cannot_run)}
        return {"route": self.route, **self.cost.to_dict(currency)}


@dataclass(frozen=True)
class ClaudeCut:
    """One way to cut a task's Claude bill for the month, against what the hybrid route costs today."""

    name: str  # "today", "batch lane", "prompt caching", "batch lane + caching"
    claude: float | None  # None: the cut does not apply (a prefix too short to cache)
    total: float | None
    saves: float  # against today's total
    note: str

    def to_dict(self) -> dict[str, Any]:
        figures = {"claude": self.claude, "total": self.total, "saves": self.saves}
        return {"name": self.name, **{k: None if v is None else sig(v) for k, v in figures.items()}, "note": self.note}


@dataclass(frozen=True)
class TaskComparison:
    task: WorkloadTask
    options: Mapping[str, Option]  # by strategy, in STRATEGIES order
    hybrid_reason: str
    cuts: tuple[ClaudeCut, ...] = ()  # for a task with Claude tokens the hybrid can run

    @property
    def cheapest(self) -> str | None:
        """The strategy of the cheapest concrete route that can actually run the task (None: nothing can)."""
        feasible = [s for s in ROUTES if self.options[s].cost is not None]
        return min(feasible, key=lambda s: self.options[s].priced.total, default=None)

    @property
    def best(self) -> Option:
        """The cheapest option that can run the task; ValueError when none can."""
        if self.cheapest is None:
            raise ValueError(f"{self.task.name}: no route can run it")
        return self.options[self.cheapest]


@dataclass(frozen=True)
class Comparison:
    tasks: tuple[TaskComparison, ...]
    currency: str
    prices_as_of: str

    def totals(self) -> dict[str, tuple[float, tuple[str, ...]]]:
        """Per strategy: the monthly total of the tasks it can run, and the names of those it cannot."""
        out = {}
        for strategy in STRATEGIES:
            costs = [row.options[strategy].cost for row in self.tasks]
            cannot = tuple(row.task.name for row, cost in zip(self.tasks, costs, strict=True) if cost is None)
            out[strategy] = (sum(cost.total for cost in costs if cost is not None), cannot)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency, "prices_as_of": self.prices_as_of,
            "tasks": [_row_dict(row, self.currency) for row in self.tasks],
            "totals": {s: {"total": sig(total), "cannot_run": list(cannot)} for s, (total, cannot) in self.totals().items()},
        }


def _row_dict(row: TaskComparison, currency: str) -> dict[str, Any]:
    return {
        "task": row.task.name, "cheapest": row.cheapest, "hybrid_reason": row.hybrid_reason,
        "options": {strategy: option.to_dict(currency) for strategy, option in row.options.items()},
        "claude_cuts": [cut.to_dict() for cut in row.cuts],
    }


def compare(workload: Iterable[WorkloadTask], prices: Prices, *, inline_budget_s: float, router_memory_mb: int) -> Comparison:
    """Every task priced for a month on all-Lambda, all-Fargate (on-demand and Spot), all-EC2 and hybrid.

    Each route is sized to the task (a Lambda function or worker of its memory and vCPU); the hybrid runs
    inline jobs in the router Lambda (``router_memory_mb``) and sends the rest to Fargate Spot or EC2 GPU.
    """
    rows = tuple(_compare_task(prices, task, inline_budget_s, router_memory_mb) for task in workload)
    return Comparison(rows, prices.currency, prices.as_of)


def _compare_task(prices: Prices, task: WorkloadTask, inline_budget_s: float, router_memory_mb: int) -> TaskComparison:
    options = {
        "lambda": monthly_lambda(prices, task),
        "fargate": monthly_fargate(prices, task, spot=False),
        "fargate-spot": monthly_fargate(prices, task, spot=True),
        "ec2": monthly_ec2(prices, task),
    }
    try:
        lane, reason = hybrid_lane(prices, task, inline_budget_s=inline_budget_s, router_memory_mb=router_memory_mb)
    except UnroutableError as error:
        options["hybrid"] = Option("unroutable", cannot_run=(str(error),))
        return TaskComparison(task, options, f"unroutable: {error}")
    if lane == INLINE:
        chosen = monthly_lambda(prices, task, memory_mb=router_memory_mb, label="router Lambda")
    else:
        chosen = options[_HYBRID_STRATEGY[lane]]
    options["hybrid"] = replace(chosen, route=f"{lane}: {chosen.route}")
    hybrid = options["hybrid"].cost
    return TaskComparison(task, options, reason, claude_cuts(prices, task, hybrid) if hybrid else ())


# What the Message Batches API costs in latency, as Anthropic states it.
BATCH_LATENCY = "latency: up to 24 h, usually minutes"


def claude_cuts(prices: Prices, task: WorkloadTask, today: Cost) -> tuple[ClaudeCut, ...]:
    """A month of ``task``'s Claude bill cut two ways, against ``today`` (the hybrid route):

    - the batch lane: every token at the Message Batches price, and no worker of ours (the batch API does the
      waiting; the collector's polls are shared by every job and left out), a queued job's requests;
    - prompt caching: the workload's ``cached_prefix_tokens`` of each job's input written to the cache by a
      miss (1.25×) and read by a hit (0.1×, ``cache_hit_rate`` of jobs), when the prefix is at least the
      model's minimum cacheable length; compute and requests as today;
    - both (the same hit rate assumed: inside a batch, cache hits are best effort).
    """
    if not (task.input_tokens or task.output_tokens):
        return ()
    plain = _monthly_usage(task, hit_rate=None)
    batch_requests = task.monthly_volume * job_requests(prices, queued=True)

    def cut(name: str, claude: float, total: float, note: str) -> ClaudeCut:
        return ClaudeCut(name, claude, total, today.total - total, note)

    on_bedrock = task.provider == BEDROCK
    cuts = [ClaudeCut("today", today.claude, today.total, 0.0,
                      f"Amazon Bedrock ({task.bedrock_profile} profile) at list price, no caching" if on_bedrock
                      else "Messages API at list price, no caching")]
    if on_bedrock:  # the batch lane is Anthropic's Message Batches API
        cuts.append(ClaudeCut("batch lane", None, None, 0.0, "not with Bedrock: the batch lane is Anthropic's Message Batches API"))
    else:
        batch = task_claude_cost(prices, task, plain, batch=True)
        cuts.append(cut("batch lane", batch, batch + batch_requests,
                        f"tokens {prices.claude.batch_discount:.0%} off, no worker; {BATCH_LATENCY}"))
    if not task.cached_prefix_tokens:
        return tuple(cuts)
    rates, _ = prices.claude.for_model(task.model)
    assumption = (f"assumes {task.cached_prefix_tokens:,} of {task.input_tokens:,} input tokens a shared prefix, "
                  f"{task.cache_hit_rate:.0%} of jobs finding it cached")
    if task.cached_prefix_tokens < rates.min_cacheable_tokens:
        reason = (f"not cacheable: a {task.cached_prefix_tokens:,}-token prefix is under {task.model}'s "
                  f"{rates.min_cacheable_tokens:,}-token minimum")
        return (*cuts, ClaudeCut("prompt caching", None, None, 0.0, reason))
    cached_usage = _monthly_usage(task, hit_rate=task.cache_hit_rate)
    cached = task_claude_cost(prices, task, cached_usage)
    cuts.append(cut("prompt caching", cached, today.total - today.claude + cached, assumption))
    if not on_bedrock:
        both = task_claude_cost(prices, task, cached_usage, batch=True)
        cuts.append(cut("batch lane + caching", both, both + batch_requests, f"the same assumptions; {BATCH_LATENCY}"))
    return tuple(cuts)


def _monthly_usage(task: WorkloadTask, *, hit_rate: float | None) -> Usage:
    """A month of the task's tokens; with a ``hit_rate``, its cached prefix written by misses and read by hits."""
    volume = task.monthly_volume
    prefix = task.cached_prefix_tokens if hit_rate is not None else 0
    hits = hit_rate or 0.0
    return Usage(
        input_tokens=round(volume * (task.input_tokens - prefix)), output_tokens=round(volume * task.output_tokens),
        model_calls=round(volume), cache_creation_input_tokens=round(volume * prefix * (1 - hits)),
        cache_read_input_tokens=round(volume * prefix * hits),
    )


def task_lanes(task: WorkloadTask, *, inline_budget_s: float, router_memory_mb: int) -> Lanes:
    """The hybrid pipeline's lanes for one workload task: workers sized to the task."""
    return Lanes((
        Lane(name=INLINE, queued=False, memory_mb=router_memory_mb, time_limit_s=inline_budget_s,
             compute=LambdaCompute(memory_mb=router_memory_mb)),
        Lane(name="cpu", queued=True, memory_mb=task.memory_mb, time_limit_s=SQS_MAX_VISIBILITY_S,
             concurrency=task.concurrency,
             compute=FargateCompute(vcpu=task.vcpu, memory_mb=task.memory_mb, spot=True)),
        Lane(name="gpu", queued=True, gpu=True, memory_mb=task.memory_mb, time_limit_s=SQS_MAX_VISIBILITY_S,
             concurrency=task.concurrency, compute=Ec2Compute(instance="g5.xlarge")),
    ))


def hybrid_lane(
    prices: Prices, task: WorkloadTask, *, inline_budget_s: float, router_memory_mb: int,
) -> tuple[str, str]:
    """Where this pipeline's router sends ``task``, and why: :func:`jobcore.routing.decide` itself.

    Workers are sized to the task, and the rate question uses :func:`break_even_rate_per_min` with a
    worker of the task's own size.
    """
    lanes = task_lanes(task, inline_budget_s=inline_budget_s, router_memory_mb=router_memory_mb)
    profile = TaskProfile(expected_duration_s=task.duration_s, memory_mb=task.memory_mb, gpu=task.gpu,
                          timeout_s=SQS_MAX_VISIBILITY_S)
    threshold = break_even_rate_per_min(prices, expected_duration_s=task.duration_s, inline=lanes.inline,
                                        worker=lanes.get("cpu"))
    decision = decide(
        profile, expected_duration_s=task.duration_s, policy=RoutingPolicy(lanes=lanes),
        arrival_rate_per_min=rate_per_min(prices, task), worker_cheaper_above_per_min=threshold,
    )
    return decision.lane, decision.reason


def rate_per_min(prices: Prices, task: WorkloadTask) -> float:
    return task.monthly_volume / (prices.hours_per_month * 60)


def in_flight(prices: Prices, task: WorkloadTask) -> float:
    """Jobs running at once on average (Little's law: arrival rate × duration)."""
    return task.monthly_volume * task.duration_s / (prices.hours_per_month * SECONDS_PER_HOUR)


def monthly_lambda(
    prices: Prices, task: WorkloadTask, *, memory_mb: int | None = None, arch: str = "arm64", label: str = "Lambda",
) -> Option:
    """A month of ``task`` on Lambda: every job its own invocation, billed for its whole duration."""
    memory = memory_mb or lambda_memory_mb(prices, task)
    route = f"{label} {arch} {memory:,} MB"
    reasons = lambda_limits(prices, task, memory)
    if reasons:
        return Option(route, cannot_run=reasons)
    compute = task.monthly_volume * lambda_compute(prices, duration_s=task.duration_s, memory_mb=memory, arch=arch)
    basis = f"{task.monthly_volume:,.0f} invocations × {task.duration_s:,g} s × {memory:,} MB"
    return Option(route, _monthly_cost(prices, task, compute, basis, queued=False))


def lambda_memory_mb(prices: Prices, task: WorkloadTask) -> int:
    """The memory to configure: the task's, or more when it needs more CPU (Lambda's CPU follows memory)."""
    for_cpu = min(math.ceil(task.vcpu * LAMBDA_MB_PER_VCPU), LAMBDA_MAX_MEMORY_MB)
    return max(task.memory_mb, for_cpu)


def lambda_limits(prices: Prices, task: WorkloadTask, memory_mb: int) -> tuple[str, ...]:
    """Why Lambda cannot run ``task`` with ``memory_mb`` (empty when it can)."""
    reasons = []
    if task.duration_s > LAMBDA_MAX_DURATION_S:
        reasons.append(f"{task.duration_s:,.0f} s is over Lambda's {LAMBDA_MAX_DURATION_S:,} s limit")
    if memory_mb > LAMBDA_MAX_MEMORY_MB:
        reasons.append(f"needs {memory_mb:,} MB, over Lambda's {LAMBDA_MAX_MEMORY_MB:,} MB")
    if task.vcpu > LAMBDA_MAX_VCPU:
        reasons.append(f"needs {task.vcpu:g} vCPU, over Lambda's {LAMBDA_MAX_VCPU:g}")
    if task.gpu:
        reasons.append("needs a GPU: Lambda has none")
    return tuple(reasons)


def monthly_fargate(prices: Prices, task: WorkloadTask, *, spot: bool) -> Option:
    """A month of ``task`` on Fargate tasks of its size, each running ``task.concurrency`` jobs at once."""
    route = f"Fargate{' Spot' if spot else ''} {task.vcpu:g} vCPU / {task.memory_mb / MB_PER_GB:g} GB"
    reasons = fargate_limits(prices, task)
    if reasons:
        return Option(route, cannot_run=reasons)
    hours, basis = _worker_hours(
        prices, task, jobs_per_worker=task.concurrency, min_billed_s=prices.fargate.min_billed_s, unit="Fargate task")
    compute = hours * fargate_hourly(prices, vcpu=task.vcpu, memory_mb=task.memory_mb, spot=spot)
    return Option(route, _monthly_cost(prices, task, compute, basis, queued=True))


def fargate_limits(prices: Prices, task: WorkloadTask) -> tuple[str, ...]:
    """Why Fargate cannot run ``task`` (empty when it can)."""
    reasons = []
    if task.gpu:
        reasons.append("needs a GPU: Fargate offers none")
    if task.memory_mb > FARGATE_MAX_MEMORY_MB:
        reasons.append(f"needs {task.memory_mb / MB_PER_GB:g} GB, over Fargate's {FARGATE_MAX_MEMORY_MB / MB_PER_GB:g} GB")
    if task.vcpu > FARGATE_MAX_VCPU:
        reasons.append(f"needs {task.vcpu:g} vCPU, over Fargate's {FARGATE_MAX_VCPU:g}")
    return tuple(reasons)


def monthly_ec2(prices: Prices, task: WorkloadTask) -> Option:
    """A month of ``task`` on the cheapest on-demand instance type that fits it (GPU types for GPU tasks)."""
    fitting = [inst for inst in prices.ec2.instances.values() if _fits(task, inst)]
    if not fitting:
        gpu = f", {task.gpu_model or 'a'} GPU" if task.gpu else ""
        need = f"{task.vcpu:g} vCPU, {task.memory_mb:,} MB{gpu}"
        return Option("EC2", cannot_run=(f"no instance type in the price file fits {need}",))
    options = [_on_instance(prices, task, inst) for inst in fitting]
    return min(options, key=lambda option: option.priced.total)


def _fits(task: WorkloadTask, inst: Instance) -> bool:
    if task.gpu != (inst.gpus > 0):  # GPU jobs need one; CPU jobs should not pay for one
        return False
    if task.gpu_model and inst.gpu_model != task.gpu_model:
        return False
    return _slots(task, inst) >= 1


def _slots(task: WorkloadTask, inst: Instance) -> int:
    """Containers of the task's size one instance holds; a GPU container takes a whole GPU."""
    by_cpu = math.floor(inst.vcpu / task.vcpu + 1e-9)
    by_memory = math.floor(inst.memory_gib * MB_PER_GB / task.memory_mb + 1e-9)
    slots = min(by_cpu, by_memory)
    return min(slots, inst.gpus) if task.gpu else slots


def _on_instance(prices: Prices, task: WorkloadTask, inst: Instance) -> Option:
    per_instance = _slots(task, inst) * task.concurrency
    hours, basis = _worker_hours(prices, task, jobs_per_worker=per_instance, min_billed_s=prices.ec2.min_billed_s, unit=inst.name)
    route = f"EC2 {inst.name}" + (f" ({inst.gpu_model})" if inst.gpu_model else "")
    return Option(route, _monthly_cost(prices, task, ec2_hours(prices, inst.name, hours), basis, queued=True))


def _worker_hours(
    prices: Prices, task: WorkloadTask, *, jobs_per_worker: int, min_billed_s: float, unit: str,
) -> tuple[float, str]:
    """Worker-hours (Fargate tasks or instances) a month of ``task`` needs on a queued lane.

    Always-on: enough workers for the jobs in flight on average, all month. Otherwise the lane scales to
    demand: each start carries ``jobs_per_worker`` jobs and is billed at least ``min_billed_s``. The
    minutes a scaled-to-zero service idles before scaling in are not counted: a floor, not a quote.
    """
    each = f"{jobs_per_worker:,} job{'s' * (jobs_per_worker != 1)} at a time"
    if task.always_on:
        workers = max(1, _ceil(in_flight(prices, task) / jobs_per_worker))
        return workers * prices.hours_per_month, f"{workers:,} × {unit} always on, {each}"
    starts = _ceil(task.monthly_volume / jobs_per_worker)
    billed_s = max(task.duration_s, min_billed_s)
    runs = f"{starts:,} run{'s' * (starts != 1)} of a {unit}"
    return starts * billed_s / SECONDS_PER_HOUR, f"{runs}, {billed_s:,g} s billed each, {each}"


def _monthly_cost(prices: Prices, task: WorkloadTask, compute: float, basis: str, *, queued: bool) -> Cost:
    usage = Usage(input_tokens=task.input_tokens, output_tokens=task.output_tokens)
    return Cost(
        claude=task.monthly_volume * task_claude_cost(prices, task, usage), compute=compute,
        requests=task.monthly_volume * job_requests(prices, queued=queued), basis=basis,
    )
