"""The cost model: what one job costs on the lane that ran it, and what a workload costs a month on
each strategy (all-Lambda, all-Fargate, all-EC2, and this pipeline's hybrid routing).

Pure arithmetic over :class:`jobcore.pricing.Prices`: no I/O and no price literal, so every figure
traces back to the dated price file. The billing facts it encodes, because they decide the answers:

- Lambda bills memory × wall-clock time per millisecond, including every second spent waiting on Claude.
- Fargate bills a task's vCPU and memory per second (60 s minimum), however many jobs it runs at once.
- EC2 bills the instance per second (60 s minimum); a GPU job takes a whole GPU.
- Claude bills tokens, the same whichever lane made the call.
- Every job of this pipeline also pays API Gateway, the router Lambda's request, DynamoDB and an S3 PUT;
  a queued one adds SQS. Those are counted on every strategy, so totals are what the pipeline would bill.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from jobcore.model import Route, Usage
from jobcore.pricing import Instance, Prices
from jobcore.routing import RoutingPolicy, TaskProfile, decide

SECONDS_PER_HOUR = 3600
MB_PER_GB = 1024  # AWS bills Lambda GB-s and Fargate GB-h in binary GB: 1,024 MB each

# Per job, by lane: DynamoDB writes (created, [claimed by a worker,] finished) and SQS requests (send,
# receive, delete; the message carries only the job id, so each is one 64 KB chunk). Every job also
# makes one DynamoDB read (the idempotency lookup or the worker's claim) and one S3 PUT (its result).
_DYNAMODB_WRITES = {Route.INLINE: 2, Route.CPU: 3, Route.GPU: 3}
_SQS_REQUESTS = {Route.INLINE: 0, Route.CPU: 3, Route.GPU: 3}

STRATEGIES = ("lambda", "fargate", "fargate-spot", "ec2", "hybrid")
ROUTES = STRATEGIES[:-1]  # the concrete places a job can run; hybrid picks one of them per task
_HYBRID_STRATEGY = {Route.CPU: "fargate-spot", Route.GPU: "ec2"}


# -- primitives ------------------------------------------------------------------------------------

def lambda_compute(prices: Prices, *, duration_s: float, memory_mb: int, arch: str = "arm64") -> float:
    """One invocation's compute: memory × wall-clock time, billed per started millisecond."""
    billed_s = math.ceil(round(duration_s * 1000, 6)) / 1000
    return billed_s * memory_mb / MB_PER_GB * prices.lambda_.gb_second[arch]


def lambda_requests(prices: Prices, count: float) -> float:
    return count * prices.lambda_.request_per_million / 1e6


def fargate_hourly(prices: Prices, *, vcpu: float, memory_mb: int, spot: bool, arch: str = "x86_64") -> float:
    """One task's price per hour. Spot is a discount off x86_64 on-demand: Fargate Spot has no arm64."""
    if spot and arch != "x86_64":
        raise ValueError("Fargate Spot runs x86_64 tasks only")
    rate = prices.fargate.rates[arch]
    hourly = vcpu * rate.vcpu_hour + memory_mb / MB_PER_GB * rate.gb_hour
    return hourly * (1 - prices.fargate.spot_discount) if spot else hourly


def fargate_task(prices: Prices, *, vcpu: float, memory_mb: int, seconds: float, spot: bool) -> float:
    """One task that runs ``seconds``: Fargate bills at least its minimum (60 s) per task."""
    billed_s = max(seconds, prices.fargate.min_billed_s)
    return billed_s / SECONDS_PER_HOUR * fargate_hourly(prices, vcpu=vcpu, memory_mb=memory_mb, spot=spot)


def ec2_hours(prices: Prices, instance: str, hours: float) -> float:
    """``hours`` of one on-demand instance (minimums are the caller's: see :func:`_worker_hours`)."""
    return hours * _instance(prices, instance).hour


def claude_cost(prices: Prices, model_id: str | None, usage: Usage) -> float:
    """Tokens × the model's prices; an unknown model is priced as the file's default model."""
    rates, _ = prices.claude.for_model(model_id)
    return (usage.input_tokens * rates.input_per_million + usage.output_tokens * rates.output_per_million) / 1e6


def request_charges(
    prices: Prices, *, api_gateway: float = 0, lambda_invocations: float = 0, sqs: float = 0,
    dynamodb_writes: float = 0, dynamodb_reads: float = 0, s3_puts: float = 0, s3_gets: float = 0,
) -> float:
    """What these requests cost (API Gateway REST, Lambda, SQS 64 KB chunks, DynamoDB units, S3)."""
    p = prices.requests
    per_million = (
        api_gateway * p.api_gateway_rest_per_million + sqs * p.sqs_per_million
        + dynamodb_writes * p.dynamodb_write_per_million + dynamodb_reads * p.dynamodb_read_per_million
    )
    per_thousand = s3_puts * p.s3_put_per_thousand + s3_gets * p.s3_get_per_thousand
    return per_million / 1e6 + per_thousand / 1e3 + lambda_requests(prices, lambda_invocations)


def lane_requests(prices: Prices, route: Route) -> float:
    """The request charges of one job on ``route``: everything but compute and tokens."""
    return request_charges(
        prices, api_gateway=1, lambda_invocations=1, sqs=_SQS_REQUESTS[route],
        dynamodb_writes=_DYNAMODB_WRITES[route], dynamodb_reads=1, s3_puts=1,
    )


def _instance(prices: Prices, name: str) -> Instance:
    try:
        return prices.ec2.instances[name]
    except KeyError:
        raise ValueError(f"unknown instance type {name!r}; the price file has {', '.join(prices.ec2.instances)}") from None


def _sig(value: float) -> float:
    """Eight significant digits: keeps a per-job micro-dollar, drops float noise from JSON."""
    return float(f"{value:.8g}")


def _ceil(value: float) -> int:
    """Ceiling that ignores float noise (200.00000000001 workers is 200)."""
    return math.ceil(value - 1e-9)


@dataclass(frozen=True, kw_only=True)
class Cost:
    claude: float
    compute: float
    requests: float
    basis: str

    @property
    def total(self) -> float:
        return self.claude + self.compute + self.requests

    def to_dict(self, currency: str) -> dict[str, Any]:
        breakdown = {"claude": self.claude, "compute": self.compute, "requests": self.requests}
        return {
            "currency": currency, "total": _sig(self.total),
            "breakdown": {k: _sig(v) for k, v in breakdown.items()}, "basis": self.basis,
        }


# -- per job ---------------------------------------------------------------------------------------

class CostModel:
    """Prices one job: an estimate when it is routed, the actual cost when it finishes.

    The lanes as deployed: inline runs in the arm64 router Lambda (``router_memory_mb``) for the job's
    wall-clock time; cpu takes 1/``worker_concurrency`` of a Fargate worker task (Spot unless ``spot``
    is False) for the duration, since the worker runs that many jobs at once; gpu takes a whole
    ``gpu_instance`` for the duration (one job per GPU). Idle workers are charged to no job.
    """

    def __init__(
        self, prices: Prices, *, router_memory_mb: int = 1024, worker_vcpu: float = 1.0,
        worker_memory_mb: int = 4096, worker_concurrency: int = 8, gpu_instance: str = "g5.xlarge",
        spot: bool = True,
    ) -> None:
        if worker_concurrency < 1:
            raise ValueError("worker_concurrency must be at least 1")
        self.prices = prices
        self.router_memory_mb = router_memory_mb
        self.worker_vcpu, self.worker_memory_mb = worker_vcpu, worker_memory_mb
        self.worker_concurrency = worker_concurrency
        self.gpu = _instance(prices, gpu_instance)
        self.spot = spot

    def __repr__(self) -> str:
        worker = f"{self.worker_vcpu:g} vCPU/{self.worker_memory_mb} MB x{self.worker_concurrency}"
        return (f"CostModel(router {self.router_memory_mb} MB, worker {worker}{' Spot' if self.spot else ''}, "
                f"gpu {self.gpu.name}, prices {self.prices.as_of})")

    def estimate(
        self, *, route: Route, model_id: str, expected_duration_s: float, input_tokens: int, output_tokens: int,
    ) -> dict[str, Any]:
        """The expected cost of a job about to run on ``route``, from its profile's figures."""
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        return self._priced(route, model_id, usage, expected_duration_s).to_dict(self.prices.currency)

    def actual(self, *, route: Route, model_id: str, usage: Usage, duration_s: float) -> dict[str, Any]:
        """What a finished job cost: the tokens it used and the time it ran, on the lane it ran on."""
        return self._priced(route, model_id, usage, duration_s).to_dict(self.prices.currency)

    def break_even_per_min(self, expected_duration_s: float) -> float | None:
        """The routing policy's frequency threshold for a job this long, with these lane sizes."""
        return break_even_rate_per_min(
            self.prices, expected_duration_s=expected_duration_s, router_memory_mb=self.router_memory_mb,
            worker_vcpu=self.worker_vcpu, worker_memory_mb=self.worker_memory_mb,
            worker_concurrency=self.worker_concurrency, spot=self.spot,
        )

    def _priced(self, route: Route, model_id: str, usage: Usage, duration_s: float) -> Cost:
        compute, lane = self._compute(route, max(0.0, duration_s))
        basis = f"{lane}; {_tokens_basis(self.prices, model_id, usage)}; {_requests_basis(route)}; prices {self.prices.as_of}"
        return Cost(
            claude=claude_cost(self.prices, model_id, usage), compute=compute,
            requests=lane_requests(self.prices, route), basis=basis,
        )

    def _compute(self, route: Route, duration_s: float) -> tuple[float, str]:
        if route is Route.INLINE:
            cost = lambda_compute(self.prices, duration_s=duration_s, memory_mb=self.router_memory_mb)
            return cost, f"inline: {duration_s:g} s in the {self.router_memory_mb} MB arm64 router Lambda"
        if route is Route.CPU:
            hourly = fargate_hourly(self.prices, vcpu=self.worker_vcpu, memory_mb=self.worker_memory_mb, spot=self.spot)
            worker = f"{self.worker_vcpu:g} vCPU / {self.worker_memory_mb} MB Fargate{' Spot' if self.spot else ''} worker"
            share = f"cpu: {duration_s:g} s of a {worker} shared by {self.worker_concurrency} jobs"
            return duration_s / SECONDS_PER_HOUR * hourly / self.worker_concurrency, share
        cost = ec2_hours(self.prices, self.gpu.name, duration_s / SECONDS_PER_HOUR)
        return cost, f"gpu: {duration_s:g} s of a {self.gpu.name} (one job per GPU)"


def _tokens_basis(prices: Prices, model_id: str | None, usage: Usage) -> str:
    _, known = prices.claude.for_model(model_id)
    priced_as = "" if known else f" (unknown model: priced as {prices.claude.default_model})"
    return f"{model_id}{priced_as}: {usage.input_tokens:,} in / {usage.output_tokens:,} out tokens"


def _requests_basis(route: Route) -> str:
    sqs = f", {_SQS_REQUESTS[route]} SQS" if _SQS_REQUESTS[route] else ""
    return f"requests: API Gateway, Lambda, {_DYNAMODB_WRITES[route]} DynamoDB writes + 1 read, S3 PUT{sqs}"


# -- when the always-on worker beats inline ---------------------------------------------------------

def break_even_rate_per_min(
    prices: Prices, *, expected_duration_s: float, router_memory_mb: int = 1024, worker_vcpu: float = 1.0,
    worker_memory_mb: int = 4096, worker_concurrency: int = 8, spot: bool = True,
) -> float | None:
    """Requests a minute of one task above which one always-on Fargate worker costs less than inline.

    Inline, each request pays the router Lambda for its whole duration (the wait on Claude included);
    queued, it pays SQS and one more DynamoDB write instead, and the worker's month is a fixed cost.
    Claude's tokens cost the same either way and are left out. The worker wins above
    ``worker month / (inline compute - extra queued requests)`` requests a month.

    Capacity: one worker runs ``worker_concurrency`` jobs at once, so it carries at most
    ``worker_concurrency / expected_duration_s`` requests a second. A break-even above that means even a
    fully busy worker costs more per request than inline, so adding workers never pays: None, which
    jobcore.routing.decide reads as "never prefer the worker for rate alone".
    Past one worker's capacity the service adds workers; just above each multiple of the capacity a
    new, mostly idle worker can briefly make inline cheaper again, a ripple one threshold ignores.
    """
    if expected_duration_s <= 0 or worker_concurrency < 1:
        raise ValueError("expected_duration_s must be positive and worker_concurrency at least 1")
    inline = lambda_compute(prices, duration_s=expected_duration_s, memory_mb=router_memory_mb)
    saving = inline + lane_requests(prices, Route.INLINE) - lane_requests(prices, Route.CPU)
    worker_month = prices.hours_per_month * fargate_hourly(
        prices, vcpu=worker_vcpu, memory_mb=worker_memory_mb, spot=spot)
    minutes_per_month = prices.hours_per_month * 60
    capacity_per_min = worker_concurrency / expected_duration_s * 60
    if saving <= 0 or worker_month / saving / minutes_per_month > capacity_per_min:
        return None
    return worker_month / saving / minutes_per_month


# -- workloads: a month of each task on each strategy -----------------------------------------------

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
    return task


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

    def to_dict(self, currency: str) -> dict[str, Any]:
        if self.cost is None:
            return {"route": self.route, "cannot_run": list(self.cannot_run)}
        return {"route": self.route, **self.cost.to_dict(currency)}


@dataclass(frozen=True)
class TaskComparison:
    task: WorkloadTask
    options: Mapping[str, Option]  # by strategy, in STRATEGIES order
    hybrid_reason: str

    @property
    def cheapest(self) -> str | None:
        """The strategy of the cheapest concrete route that can actually run the task (None: nothing can)."""
        feasible = [s for s in ROUTES if self.options[s].cost is not None]
        return min(feasible, key=lambda s: self.options[s].cost.total, default=None)


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
            cannot = tuple(row.task.name for row, cost in zip(self.tasks, costs) if cost is None)
            out[strategy] = (sum(cost.total for cost in costs if cost is not None), cannot)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency, "prices_as_of": self.prices_as_of,
            "tasks": [_row_dict(row, self.currency) for row in self.tasks],
            "totals": {s: {"total": _sig(total), "cannot_run": list(cannot)} for s, (total, cannot) in self.totals().items()},
        }


def _row_dict(row: TaskComparison, currency: str) -> dict[str, Any]:
    return {
        "task": row.task.name, "cheapest": row.cheapest, "hybrid_reason": row.hybrid_reason,
        "options": {strategy: option.to_dict(currency) for strategy, option in row.options.items()},
    }


def compare(
    workload: Iterable[WorkloadTask], prices: Prices, *, inline_budget_s: float = 20.0, router_memory_mb: int = 1024,
) -> Comparison:
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
    route, reason = hybrid_lane(prices, task, inline_budget_s=inline_budget_s, router_memory_mb=router_memory_mb)
    if route is Route.INLINE:
        chosen = monthly_lambda(prices, task, memory_mb=router_memory_mb, label="router Lambda")
    else:
        chosen = options[_HYBRID_STRATEGY[route]]
    options["hybrid"] = replace(chosen, route=f"{route.value}: {chosen.route}")
    return TaskComparison(task, options, reason)


def hybrid_lane(
    prices: Prices, task: WorkloadTask, *, inline_budget_s: float = 20.0, router_memory_mb: int = 1024,
) -> tuple[Route, str]:
    """Where this pipeline's router sends ``task``, and why: :func:`jobcore.routing.decide` itself.

    Workers are sized to the task, and the rate question uses :func:`break_even_rate_per_min` with a
    worker of the task's own size.
    """
    profile = TaskProfile(expected_duration_s=task.duration_s, memory_mb=task.memory_mb, gpu=task.gpu)
    policy = RoutingPolicy(
        inline_budget_s=inline_budget_s, router_memory_mb=router_memory_mb,
        worker_memory_mb=max(task.memory_mb, router_memory_mb), gpu_memory_mb=task.memory_mb, gpu_enabled=True,
    )
    threshold = break_even_rate_per_min(
        prices, expected_duration_s=task.duration_s, router_memory_mb=router_memory_mb,
        worker_vcpu=task.vcpu, worker_memory_mb=task.memory_mb, worker_concurrency=task.concurrency,
    )
    decision = decide(
        profile, expected_duration_s=task.duration_s, policy=policy,
        arrival_rate_per_min=rate_per_min(prices, task), worker_cheaper_above_per_min=threshold,
    )
    return decision.route, decision.reason


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
    return Option(route, _monthly_cost(prices, task, compute, Route.INLINE, basis))


def lambda_memory_mb(prices: Prices, task: WorkloadTask) -> int:
    """The memory to configure: the task's, or more when it needs more CPU (Lambda's CPU follows memory)."""
    limits = prices.lambda_
    for_cpu = min(math.ceil(task.vcpu * limits.mb_per_vcpu), limits.max_memory_mb)
    return max(task.memory_mb, for_cpu)


def lambda_limits(prices: Prices, task: WorkloadTask, memory_mb: int) -> tuple[str, ...]:
    """Why Lambda cannot run ``task`` with ``memory_mb`` (empty when it can)."""
    limits = prices.lambda_
    reasons = []
    if task.duration_s > limits.max_duration_s:
        reasons.append(f"{task.duration_s:,.0f} s is over Lambda's {limits.max_duration_s:,.0f} s limit")
    if memory_mb > limits.max_memory_mb:
        reasons.append(f"needs {memory_mb:,} MB, over Lambda's {limits.max_memory_mb:,} MB")
    if task.vcpu > limits.max_vcpu:
        reasons.append(f"needs {task.vcpu:g} vCPU, over Lambda's {limits.max_vcpu:g}")
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
    return Option(route, _monthly_cost(prices, task, compute, Route.CPU, basis))


def fargate_limits(prices: Prices, task: WorkloadTask) -> tuple[str, ...]:
    """Why Fargate cannot run ``task`` (empty when it can)."""
    limits = prices.fargate
    reasons = []
    if task.gpu:
        reasons.append("needs a GPU: Fargate offers none")
    if task.memory_mb / MB_PER_GB > limits.max_memory_gb:
        reasons.append(f"needs {task.memory_mb / MB_PER_GB:g} GB, over Fargate's {limits.max_memory_gb:g} GB")
    if task.vcpu > limits.max_vcpu:
        reasons.append(f"needs {task.vcpu:g} vCPU, over Fargate's {limits.max_vcpu:g}")
    return tuple(reasons)


def monthly_ec2(prices: Prices, task: WorkloadTask) -> Option:
    """A month of ``task`` on the cheapest on-demand instance type that fits it (GPU types for GPU tasks)."""
    fitting = [inst for inst in prices.ec2.instances.values() if _fits(task, inst)]
    if not fitting:
        gpu = f", {task.gpu_model or 'a'} GPU" if task.gpu else ""
        need = f"{task.vcpu:g} vCPU, {task.memory_mb:,} MB{gpu}"
        return Option("EC2", cannot_run=(f"no instance type in the price file fits {need}",))
    options = [_on_instance(prices, task, inst) for inst in fitting]
    return min(options, key=lambda option: option.cost.total)


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
    lane = Route.GPU if task.gpu else Route.CPU
    return Option(route, _monthly_cost(prices, task, ec2_hours(prices, inst.name, hours), lane, basis))


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


def _monthly_cost(prices: Prices, task: WorkloadTask, compute: float, route: Route, basis: str) -> Cost:
    usage = Usage(input_tokens=task.input_tokens, output_tokens=task.output_tokens)
    return Cost(
        claude=task.monthly_volume * claude_cost(prices, task.model, usage), compute=compute,
        requests=task.monthly_volume * lane_requests(prices, route), basis=basis,
    )
