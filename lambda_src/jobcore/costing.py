"""The cost model of one job: an estimate when it is routed, the actual cost when it finishes.

Pure arithmetic over :class:`jobcore.pricing.Prices` and the deployment's :class:`jobcore.lanes.Lanes`:
no I/O and no price literal, so every figure traces back to the dated price file. The billing facts
it encodes, because they decide the answers:

- Lambda bills memory × wall-clock time per millisecond, including every second spent waiting on Claude.
- Fargate bills a task's vCPU and memory per second (60 s minimum), however many jobs it runs at once.
- EC2 bills the instance per second (60 s minimum).
- Claude bills tokens, the same whichever lane made the call, except that the Message Batches API (the
  batch lane) bills them at half price.
- Every job of this pipeline also pays API Gateway, the router Lambda's request and DynamoDB; a queued
  one adds SQS. Its result lives in the job item (up to ``RESULT_IN_ITEM_BYTES``, typical results), so
  no S3 PUT is counted: a larger result adds one (``s3_put_per_thousand``, a fraction of a micro-dollar).

The month-long comparison of whole workloads across strategies lives with the command that prints it
(``tools/workloads.py``): it never runs in the router or a worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobcore.lanes import BatchCompute, Compute, Ec2Compute, FargateCompute, LambdaCompute, Lane, Lanes
from jobcore.model import Usage
from jobcore.pricing import Instance, Prices, TokenPrices
from jobcore.providers import DEFAULT_BEDROCK_SCOPE

SECONDS_PER_HOUR = 3600
MB_PER_GB = 1024  # AWS bills Lambda GB-s and Fargate GB-h in binary GB: 1,024 MB each

# Per job: DynamoDB writes (created, [claimed by a worker,] finished) and SQS requests (send, receive,
# delete; the message carries only the job id, so each is one 64 KB chunk), inline and queued: what
# bench/bench_calls.py counts on the real adapters. Every job is also read once (the client's GET of it).
_DYNAMODB_WRITES = {False: 2, True: 3}
_SQS_REQUESTS = {False: 0, True: 3}


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


def ec2_hours(prices: Prices, instance: str, hours: float) -> float:
    """``hours`` of one on-demand instance (minimums are the caller's)."""
    return hours * instance_prices(prices, instance).hour


def worker_hourly(prices: Prices, compute: Compute) -> float:
    """What one worker of a queued lane costs an hour, busy or idle."""
    if isinstance(compute, FargateCompute):
        return fargate_hourly(prices, vcpu=compute.vcpu, memory_mb=compute.memory_mb, spot=compute.spot, arch=compute.arch)
    if isinstance(compute, Ec2Compute):
        return instance_prices(prices, compute.instance).hour
    raise ValueError("a Lambda function has no hourly price: it bills per request")


def min_billed_s(prices: Prices, compute: Compute) -> float:
    """The shortest time a worker of ``compute`` is billed for once started (Fargate and EC2: a minute)."""
    if isinstance(compute, FargateCompute):
        return prices.fargate.min_billed_s
    if isinstance(compute, Ec2Compute):
        return prices.ec2.min_billed_s
    return 0.0


@dataclass(frozen=True)
class BatchRun:
    """One batch job run alone on a worker of a queued lane: how long it takes and what the worker costs."""

    seconds: float  # start-up (when the lane was idle) + items / throughput
    cost: float  # the worker's time, at least its minimum billing

    def per_thousand(self, items: int) -> float:
        return self.cost / items * 1000


def batch_run(prices: Prices, compute: Compute, *, items: int, items_per_s: float, start_s: float | None = None) -> BatchRun:
    """A job of ``items`` processed at ``items_per_s`` by one worker it has to itself (a GPU job saturates
    its device). Compute only, the part that differs between lanes: no tokens, no request charges.

    ``start_s=None``: the worker was already up (a warm lane), the job pays its own seconds. A number: the
    lane was idle and a worker starts for this job (instance launch, image pull), billed from its start,
    for at least the minimum billing.
    """
    if items <= 0 or items_per_s <= 0 or (start_s is not None and start_s < 0):
        raise ValueError("items and items_per_s must be positive and start_s not negative")
    seconds = (start_s or 0.0) + items / items_per_s
    billed = seconds if start_s is None else max(seconds, min_billed_s(prices, compute))
    return BatchRun(seconds, billed / SECONDS_PER_HOUR * worker_hourly(prices, compute))


def claude_cost(prices: Prices, model_id: str | None, usage: Usage, *, batch: bool = False,
                bedrock_scope: str = DEFAULT_BEDROCK_SCOPE) -> float:
    """Tokens × the model's prices; an unknown model is priced as the file's default model.

    Input at the input price; a cached prefix written at 1.25× it (2× for the 1-hour TTL) and read at 0.1×;
    output at the output price; everything at half price (``prices.claude.batch_discount`` off) when the
    request went through the Message Batches API (``batch``). The calls each provider answered
    (``usage.by_provider``) at that provider's price: Bedrock's is its ``bedrock_scope`` profile's.
    """
    if usage.by_provider:
        return sum(_tokens_cost(prices, prices.claude.rates(model_id, name, bedrock_scope), part, batch=batch)
                   for name, part in usage.by_provider.items())
    return _tokens_cost(prices, prices.claude.for_model(model_id)[0], usage, batch=batch)


def _tokens_cost(prices: Prices, rates: TokenPrices, usage: Usage, *, batch: bool) -> float:
    caching = prices.claude.caching
    writes_1h = min(usage.cache_creation_1h_input_tokens, usage.cache_creation_input_tokens)
    input_equivalent = (
        usage.input_tokens
        + (usage.cache_creation_input_tokens - writes_1h) * caching.write_5m_multiplier
        + writes_1h * caching.write_1h_multiplier
        + usage.cache_read_input_tokens * caching.read_multiplier
    )
    cost = (input_equivalent * rates.input_per_million + usage.output_tokens * rates.output_per_million) / 1e6
    return cost * (1 - prices.claude.batch_discount) if batch else cost


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


def job_requests(prices: Prices, *, queued: bool) -> float:
    """The request charges of one job, inline or queued: everything but compute and tokens."""
    return request_charges(
        prices, api_gateway=1, lambda_invocations=1, sqs=_SQS_REQUESTS[queued],
        dynamodb_writes=_DYNAMODB_WRITES[queued], dynamodb_reads=1,
    )


def instance_prices(prices: Prices, name: str) -> Instance:
    try:
        return prices.ec2.instances[name]
    except KeyError:
        raise ValueError(
            f"instance type {name!r} is not in the price file (it has {', '.join(prices.ec2.instances)}); "
            "add it under price_overrides.ec2.instances"
        ) from None


def sig(value: float) -> float:
    """Eight significant digits: keeps a per-job micro-dollar, drops float noise from JSON."""
    return float(f"{value:.8g}")


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
            "currency": currency, "total": sig(self.total),
            "breakdown": {k: sig(v) for k, v in breakdown.items()}, "basis": self.basis,
        }


def with_attempt(earlier: Mapping[str, Any] | None, attempt: Mapping[str, Any]) -> dict[str, Any]:
    """A job's actual cost once one more of its runs is priced (``attempt``: :meth:`CostModel.actual` of that run's
    tokens and time): totals and breakdown summed, ``runs`` counted (a run that only waited for capacity is one, though
    not an attempt); the basis is the last run's, with what the earlier ones cost. ``earlier``: the actual cost of
    the runs before (None: none)."""
    if not earlier:
        return {**attempt, "runs": 1}
    breakdown = {name: sig(float(earlier["breakdown"].get(name, 0.0)) + float(value))
                 for name, value in attempt["breakdown"].items()}
    count = int(earlier.get("runs") or 1) + 1
    return {**attempt, "total": sig(float(earlier["total"]) + float(attempt["total"])), "breakdown": breakdown,
            "runs": count, "basis": f"{count} runs, the earlier ones ${float(earlier['total']):.6f}; "
                                    f"the last: {attempt['basis']}"}


# -- per job ---------------------------------------------------------------------------------------

class CostModel:
    """Prices one job on the lane that runs it: an estimate when routed, the actual cost when finished.

    A lane's compute is shared by the jobs one worker runs at once (``Lane.concurrency``): a job on a
    queued lane pays ``duration × hourly / concurrency``; inline it pays the router Lambda for its
    wall-clock time. Idle workers are charged to no job. Every lane must be one the price file can
    price (an EC2 instance type it lists): checked here, so a bad configuration fails at start.
    """

    def __init__(self, prices: Prices, lanes: Lanes, *, bedrock_scope: str = DEFAULT_BEDROCK_SCOPE) -> None:
        self.prices = prices
        self.lanes = lanes
        self.bedrock_scope = bedrock_scope  # the inference profile a Bedrock provider calls (its price)
        for lane in lanes:
            if isinstance(lane.compute, Ec2Compute):
                try:
                    instance_prices(prices, lane.compute.instance)
                except ValueError as error:
                    raise ValueError(f"lanes.{lane.name}.compute.instance: {error}") from None

    def __repr__(self) -> str:
        return f"CostModel({', '.join(_describe(lane) for lane in self.lanes)}; prices {self.prices.as_of})"

    def estimate(self, *, lane: str, model_id: str, expected_duration_s: float, input_tokens: int, output_tokens: int) -> dict[str, Any]:
        """The expected cost of a job about to run on ``lane``, from its profile's figures."""
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        return self._priced(self.lanes.get(lane), model_id, usage, expected_duration_s).to_dict(self.prices.currency)

    def actual(self, *, lane: str, model_id: str, usage: Usage, duration_s: float) -> dict[str, Any]:
        """What a finished job cost: the tokens it used and the time it ran, on the lane it ran on."""
        return self._priced(self.lanes.get(lane), model_id, usage, duration_s).to_dict(self.prices.currency)

    def batch_estimate(self, *, model_id: str, input_tokens: int, output_tokens: int) -> dict[str, Any]:
        """The same tokens sent through the Message Batches API: at the batch price, with no compute of ours
        (Anthropic's batch does the waiting, not a worker) and a queued job's request charges."""
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        basis = (f"batch: Message Batches API, no compute of ours; {_tokens_basis(self.prices, model_id, usage, batch=True)}; "
                 f"{_requests_basis(True)}; prices {self.prices.as_of}")
        cost = Cost(claude=claude_cost(self.prices, model_id, usage, batch=True), compute=0.0,
                    requests=job_requests(self.prices, queued=True), basis=basis)
        return cost.to_dict(self.prices.currency)

    def break_even_per_min(self, expected_duration_s: float) -> float | None:
        """The routing policy's frequency threshold for a job this long, inline against the fallback lane."""
        return break_even_rate_per_min(
            self.prices, expected_duration_s=expected_duration_s, inline=self.lanes.inline, worker=self.lanes.fallback)

    def _priced(self, lane: Lane, model_id: str, usage: Usage, duration_s: float) -> Cost:
        duration_s = max(0.0, duration_s)
        batch = isinstance(lane.compute, BatchCompute)  # its calls went through the Message Batches API: tokens at half price
        basis = (f"{lane.name}: {duration_s:g} s {_share(lane)}; {_tokens_basis(self.prices, model_id, usage, batch=batch)}; "
                 f"{_requests_basis(lane.queued)}; prices {self.prices.as_of}")
        return Cost(
            claude=claude_cost(self.prices, model_id, usage, batch=batch, bedrock_scope=self.bedrock_scope),
            compute=self._compute(lane, duration_s),
            requests=job_requests(self.prices, queued=lane.queued), basis=basis,
        )

    def _compute(self, lane: Lane, duration_s: float) -> float:
        if isinstance(lane.compute, BatchCompute):
            return 0.0  # the collector is one scheduled Lambda for every batch, charged to no job
        if isinstance(lane.compute, LambdaCompute):
            return lambda_compute(self.prices, duration_s=duration_s, memory_mb=lane.compute.memory_mb, arch=lane.compute.arch)
        return duration_s / SECONDS_PER_HOUR * worker_hourly(self.prices, lane.compute) / lane.concurrency


def _describe(lane: Lane) -> str:
    c = lane.compute
    if isinstance(c, LambdaCompute):
        return f"{lane.name} {c.memory_mb} MB {c.arch} router Lambda"
    if isinstance(c, FargateCompute):
        return f"{lane.name} {c.vcpu:g} vCPU/{c.memory_mb} MB Fargate{' Spot' if c.spot else ''} x{lane.concurrency}"
    if isinstance(c, BatchCompute):
        return f"{lane.name} Message Batches API"
    return f"{lane.name} {c.instance} x{lane.concurrency}"


def _share(lane: Lane) -> str:
    if isinstance(lane.compute, BatchCompute):
        return "in a Message Batch (no compute of ours; tokens at batch prices)"
    if not lane.queued:
        return f"in the {_describe(lane).removeprefix(lane.name + ' ')}"
    return f"of a {_describe(lane).removeprefix(lane.name + ' ').rsplit(' x', 1)[0]} worker shared by {lane.concurrency} jobs"


def _tokens_basis(prices: Prices, model_id: str | None, usage: Usage, *, batch: bool = False) -> str:
    """``claude-sonnet-4-5: 300 in / 400 out tokens, 1,200 cache-read tokens; batch: 50 % off``."""
    if not (usage.input_tokens or usage.output_tokens or usage.cache_creation_input_tokens or usage.cache_read_input_tokens):
        return "no Claude tokens"
    _, known = prices.claude.for_model(model_id)
    priced_as = "" if known else f" (unknown model: priced as {prices.claude.default_model})"
    text = f"{model_id}{priced_as}: {usage.input_tokens:,} in / {usage.output_tokens:,} out tokens"
    if usage.cache_creation_input_tokens:
        ttl = (f" ({usage.cache_creation_1h_input_tokens:,} with the 1-hour TTL)"
               if usage.cache_creation_1h_input_tokens else "")
        text += f", {usage.cache_creation_input_tokens:,} cache-write tokens{ttl}"
    if usage.cache_read_input_tokens:
        text += f", {usage.cache_read_input_tokens:,} cache-read tokens"
    if batch:
        text += f"; batch: {prices.claude.batch_discount * 100:g} % off"
    return text


def _requests_basis(queued: bool) -> str:
    sqs = f", {_SQS_REQUESTS[queued]} SQS" if queued else ""
    return f"requests: API Gateway, Lambda, {_DYNAMODB_WRITES[queued]} DynamoDB writes + 1 read{sqs}"


# -- when the always-on worker beats inline ---------------------------------------------------------

def break_even_rate_per_min(prices: Prices, *, expected_duration_s: float, inline: Lane, worker: Lane) -> float | None:
    """Requests a minute of one task above which one always-on ``worker`` costs less than ``inline`` runs.

    Inline, each request pays the router Lambda for its whole duration (the wait on Claude included);
    queued, it pays SQS and one more DynamoDB write instead, and the worker's month is a fixed cost.
    Claude's tokens cost the same either way and are left out. The worker wins above
    ``worker month / (inline compute - extra queued requests)`` requests a month.

    Capacity: one worker runs ``worker.concurrency`` jobs at once, so it carries at most
    ``concurrency / expected_duration_s`` requests a second. A break-even above that means even a
    fully busy worker costs more per request than inline, so adding workers never pays: None, which
    jobcore.routing.decide reads as "never prefer the worker for rate alone".
    """
    if expected_duration_s <= 0:
        raise ValueError("expected_duration_s must be positive")
    if not isinstance(inline.compute, LambdaCompute):
        raise ValueError(f"lanes.{inline.name}: the inline lane is priced as a Lambda function")
    inline_compute = lambda_compute(prices, duration_s=expected_duration_s, memory_mb=inline.compute.memory_mb,
                                    arch=inline.compute.arch)
    saving = inline_compute + job_requests(prices, queued=False) - job_requests(prices, queued=True)
    worker_month = prices.hours_per_month * worker_hourly(prices, worker.compute)
    minutes_per_month = prices.hours_per_month * 60
    capacity_per_min = worker.concurrency / expected_duration_s * 60
    if saving <= 0 or worker_month / saving / minutes_per_month > capacity_per_min:
        return None
    return worker_month / saving / minutes_per_month
