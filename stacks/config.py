"""The deployment's configuration: one typed, validated object read once from the CDK context.

Every key lives flat in ``cdk.json`` → ``context`` (so ``cdk deploy -c key=value`` can override it; values
given with ``-c`` arrive as strings and are parsed here). A bad value fails synth with a message naming the key.
Constructs never read the context themselves: ``app.py`` builds one :class:`PipelineConfig` and hands its
fields to the stacks as keyword arguments.

The worker lanes are :meth:`PipelineConfig.worker_lanes`: the built-in ``cpu`` and ``gpu`` lanes (sized by the
flat ``worker_*`` and ``gpu_*`` keys, so ``-c gpu_enabled=true`` keeps working) and one more per entry of the
``lanes`` list (:meth:`WorkerLane.from_entry`). The stacks and their tests iterate over them; none names a lane.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobadapters.schema import MAX_INDEX_SHARDS, IndexShards
from jobadapters.tracing import check_traces_endpoint
from jobcore.capacity import (
    CapacityConfig,
    CapacityConfigError,
    parse_bedrock_limits,
    parse_rate_limits,
    parse_reserved_share,
    parse_tenant_shares,
)
from jobcore.concurrency import inline_slots
from jobcore.costing import CostModel
from jobcore.deliveries import DEFAULT_GAPS_S, RetrySchedule
from jobcore.lanes import (
    BATCH_WINDOW_MAX_S,
    INLINE,
    BatchCompute,
    Ec2Compute,
    FargateCompute,
    LambdaCompute,
    Lane,
    LaneConfigError,
    Lanes,
)
from jobcore.limits import (
    API_GATEWAY_TIMEOUT_S,
    CPU_UNITS_PER_VCPU,
    ECS_INSTANCE_MEMORY_HEADROOM,
    FARGATE_SIZES,
    INLINE_FALLBACK_MARGIN_S,
    LAMBDA_MAX_MEMORY_MB,
    LAMBDA_MIN_MEMORY_MB,
    MAX_INLINE_BUDGET_S,
    MAX_SCALING_STEPS,
    SQS_EVENT_SOURCE_MAX_CONCURRENCY,
    SQS_EVENT_SOURCE_MIN_CONCURRENCY,
    SQS_MAX_VISIBILITY_S,
)
from jobcore.pricing import BedrockProfile, Prices, default_prices
from jobcore.providers import (
    BEDROCK,
    DEFAULT_BEDROCK_SCOPE,
    DEFAULT_PROVIDERS,
    batch_allowed,
    bedrock_profiles,
    parse_providers,
    parse_scope,
)
from jobcore.tasks import arrival_rates
from jobcore.usage import tenant_budgets
from stacks.names import clashing_ids

if TYPE_CHECKING:
    from constructs import Construct

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = frozenset({
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
})


_STAGE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9.:@_-]{2,99}$")
_S3_MODEL_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!_.*'()/-]*)?$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_HF_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,99}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INTAKE_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# GPU families that ECS can expose to a task as a GPU resource (x86: the worker image is linux/amd64).
GPU_INSTANCE_TYPE = re.compile(r"^(g4dn|g5|g6|g6e|gr6|p3|p3dn|p4d|p4de|p5|p5e|p5en)\.[0-9]*x?large$")
# A release of the ECS-optimized AL2023 GPU AMI, e.g. al2023-ami-ecs-gpu-hvm-2023.0.20260901-kernel-6.1-x86_64-ebs.
_GPU_AMI_RELEASE = re.compile(r"^al2023-ami-ecs-gpu-hvm-2023\.\d+\.\d{8}-kernel-\d+\.\d+-x86_64-ebs$")


BATCH_COLLECTOR_MEMORY_MB = 1024  # the collector Lambda's memory (a pass holds an ended batch's results)

# Context keys that belong to the CDK, not to this configuration: feature flags (``@aws-cdk/...``, any package's
# ``@scope/...``), the CLI's switches (``aws:cdk:...``), the context providers' cached lookups in cdk.context.json
# (``availability-zones:account=...``: every one has a colon), and what ``cdk acknowledge`` and ``cdk
# cli-telemetry`` write there. Every other key must be a field of :class:`PipelineConfig`.
_CDK_KEY_PREFIXES = ("@", "aws:cdk:", "aws-cdk:")
_CDK_KEYS = frozenset({"acknowledged-issue-numbers", "cli-telemetry"})


def is_cdk_context_key(key: str) -> bool:
    return key.startswith(_CDK_KEY_PREFIXES) or ":" in key or key in _CDK_KEYS


class ConfigError(ValueError):
    """A context value is missing, of the wrong type or out of range; the message names the key."""


IMAGE_KINDS = ("cpu", "gpu")  # the worker images (stacks/service_stack.py: WORKER_IMAGES), one per kind
# A ``lanes`` entry: the core's lane fields (``Lane.from_dict``: memory_mb, time_limit_s, gpu, concurrency,
# enabled, compute; ``queued`` is implied) besides these, which only the deployment reads.
_ENTRY_KEYS = frozenset({"name", "image", "scaling", "task_cpu"})
_SCALING_KEYS = frozenset({"min_tasks", "max_tasks", "spot_fallback_after_s"})


@dataclass(frozen=True, kw_only=True)
class WorkerLane:
    """A worker lane as the stacks deploy it: the core's :class:`Lane` and what only the deployment reads.

    ``image``: which worker image its tasks run (one of :data:`IMAGE_KINDS`); ``min_tasks``/``max_tasks``: its
    service's scaling; Fargate: ``on_demand_base``/``on_demand_weight`` (tasks on regular Fargate beside Spot) and
    ``spot_fallback_after_s`` (the on-demand fallback service; 0: none); EC2: ``task_cpu`` (CPU units of a task)."""

    lane: Lane
    image: str
    min_tasks: int = 0
    max_tasks: int = 1
    on_demand_base: int = 0
    on_demand_weight: int = 0
    spot_fallback_after_s: int = 0
    task_cpu: int = 0

    @property
    def name(self) -> str:
        return self.lane.name

    @property
    def on_demand_only(self) -> bool:
        """A Fargate lane whose every task runs on regular Fargate: not Spot, and no Spot share to keep."""
        compute = self.lane.compute
        return isinstance(compute, FargateCompute) and not compute.spot and not (self.on_demand_base or self.on_demand_weight)

    @property
    def has_on_demand_fallback(self) -> bool:
        """Its service has an on-demand fallback service beside it (``FargateSpot.fallback_service``)."""
        return isinstance(self.lane.compute, FargateCompute) and bool(self.spot_fallback_after_s) and not self.on_demand_only

    @classmethod
    def from_entry(cls, entry: Any, index: int) -> WorkerLane:
        """One entry of the ``lanes`` context key, e.g. ``{"name": "cpu-large", "memory_mb": 8192, "time_limit_s": 900,
        "concurrency": 8, "compute": {"kind": "fargate", "vcpu": 4, "memory_mb": 8192, "spot": true},
        "scaling": {"min_tasks": 0, "max_tasks": 2}, "image": "cpu"}``. The lane's own fields are read by
        ``Lane.from_dict`` (the runtime's parser); the rest here. A Fargate lane is all Spot (``spot`` true,
        ``scaling.spot_fallback_after_s`` for an on-demand fallback) or all regular Fargate (``spot`` false)."""
        where = f"context key 'lanes'[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: expected an object with a \"name\" (see docs/deploy.md, \"Lanes\")")
        name = entry["name"]
        where = f"context key 'lanes' ({name!r})"
        fields = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
        if fields.get("queued", True) is not True:
            raise ConfigError(f"{where}: a listed lane is a queued worker lane (\"queued\": true or left out)")
        try:
            lane = Lane.from_dict(name, {**fields, "queued": True})
        except LaneConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        if lane.batch:
            raise ConfigError(f"{where}: the batch lane is batch_enabled's, not a listed lane")
        image = entry.get("image", "gpu" if lane.gpu else "cpu")
        if image not in IMAGE_KINDS:
            raise ConfigError(f"{where}.image: one of {', '.join(IMAGE_KINDS)}, not {image!r}")
        scaling = entry.get("scaling", {})
        if not isinstance(scaling, Mapping) or set(scaling) - _SCALING_KEYS:
            raise ConfigError(f"{where}.scaling: an object of {', '.join(sorted(_SCALING_KEYS))}")
        min_tasks, max_tasks = scaling.get("min_tasks", 0), scaling.get("max_tasks", 1)
        fallback_s = scaling.get("spot_fallback_after_s", 0)
        task_cpu = entry.get("task_cpu", 0)
        for key, value, (check, expected) in (
            ("scaling.min_tasks", min_tasks, _RULES["worker_min_tasks"]),
            ("scaling.max_tasks", max_tasks, _RULES["worker_max_tasks"]),
            ("scaling.spot_fallback_after_s", fallback_s, _RULES["worker_spot_fallback_after_s"]),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not check(value):
                raise ConfigError(f"{where}.{key} = {value!r}: expected {expected}")
        if min_tasks > max_tasks:
            raise ConfigError(f"{where}.scaling: min_tasks {min_tasks} above max_tasks {max_tasks}")
        compute = lane.compute
        if isinstance(compute, FargateCompute):
            cpu = compute.vcpu * CPU_UNITS_PER_VCPU
            if cpu not in FARGATE_SIZES or compute.memory_mb not in FARGATE_SIZES[int(cpu)]:
                raise ConfigError(f"{where}.compute: {compute.vcpu:g} vCPU with {compute.memory_mb} MB is not a Fargate "
                                  f"task size (vCPU one of {', '.join(f'{c / CPU_UNITS_PER_VCPU:g}' for c in sorted(FARGATE_SIZES))}, "
                                  "with a memory that size allows)")
            if fallback_s and not compute.spot:
                raise ConfigError(f"{where}.scaling.spot_fallback_after_s: an on-demand fallback is for a Spot lane")
            if "task_cpu" in entry:
                raise ConfigError(f"{where}.task_cpu: a Fargate task's CPU is compute.vcpu")
        elif isinstance(compute, Ec2Compute):  # Lane.from_dict admits no other for a queued lane but batch
            if not lane.gpu:
                raise ConfigError(f"{where}.gpu: an ec2 lane runs on GPU instances (\"gpu\": true)")
            if fallback_s:
                raise ConfigError(f"{where}.scaling.spot_fallback_after_s: Fargate Spot lanes only")
            check, expected = _RULES["gpu_cpu"]
            if isinstance(task_cpu, bool) or not isinstance(task_cpu, int) or not check(task_cpu):
                raise ConfigError(f"{where}.task_cpu = {task_cpu!r}: expected {expected} (the task's CPU units)")
            if not GPU_INSTANCE_TYPE.fullmatch(compute.instance):
                raise ConfigError(f"{where}.compute.instance = {compute.instance!r}: expected "
                                  f"{_RULES['gpu_instance_type'][1]}")
        return cls(lane=lane, image=image, min_tasks=min_tasks, max_tasks=max_tasks, task_cpu=task_cpu,
                   spot_fallback_after_s=fallback_s)


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """Everything a deployment may vary. Defaults equal the values in ``cdk.json`` (a test keeps them in sync)."""

    stage: str = "dev"
    # The router's inline calls / queued jobs (every lane); by default the price file's default model.
    model_id: str = field(default_factory=lambda: default_prices().claude.default_model)
    worker_model_id: str = field(default_factory=lambda: default_prices().claude.default_model)
    inline_budget_s: int = 20
    router_memory_mb: int = 1024
    router_timeout_s: int = 28
    router_reserved_concurrency: int | None = None  # None: draw from the account's unreserved pool
    # Cold starts of the router (docs/deploy.md, "The router's cold start"): either switch publishes a version
    # behind the alias ``live``, which API Gateway then invokes. router_snapstart: Lambda SnapStart (restores an
    # initialized, primed snapshot instead of importing and building); router_provisioned_concurrency: that many
    # environments kept initialized (0: none). Lambda refuses both on one function.
    router_snapstart: bool = False
    router_provisioned_concurrency: int = 0
    # The batch collector's reserved concurrency (None: none, the default). 1 would keep its passes from
    # overlapping (an overlap only wastes calls: batch records are written on their version), but any reservation
    # fails the deploy in an account whose concurrency quota is below 100 + it (new accounts: 10; docs/deploy.md).
    collector_reserved_concurrency: int | None = None
    # The most concurrent invocations the SQS event sources may use: the webhook dispatcher's and the S3 intake's
    # (2 to 1000, AWS's bounds). Without a cap, a burst of webhooks or of dropped objects could take the account's
    # unreserved concurrency from the router; with these, 7 of it at most.
    webhook_max_concurrency: int = 5
    intake_max_concurrency: int = 2
    worker_cpu: int = 1024
    worker_memory_mb: int = 2048
    # Jobs one CPU worker runs at once: 32, from bench/bench_worker.py (bench/README.md). A Claude call waits on
    # the network, so a worker's slots are threads: it keeps up with a minimal reference consumer at 8, 32 and 64
    # slots, using about 13 ms of its CPU per job (the AWS calls), so 32 slots of 8 s calls take ~5 % of its vCPU;
    # its memory grew 114 -> 124 MiB from 8 to 64 slots of small jobs, so 2 GiB leaves ~55 MiB a slot for inputs
    # and outputs (not for 32 large uploads at once: lower it for those). The anthropic client's pool (1,000
    # connections, 100 kept alive) and the AWS clients' (slots + 4) hold 32 calls at once. The model's rate limit
    # must allow worker_max_tasks x 32 slots / call seconds (4 x 32 / 8 s = 16 requests/s): lower it for a smaller one.
    worker_concurrency: int = 32
    worker_min_tasks: int = 0
    worker_max_tasks: int = 4
    worker_on_demand_base: int = 0  # tasks kept on regular Fargate before Spot takes the rest
    # Beyond the base, regular Fargate tasks per Spot task (0: all Spot; 1: half and half).
    worker_on_demand_weight: int = 0
    # The CPU lane's on-demand fallback service (regular Fargate, 0 tasks normally) scales out when a job
    # has waited this long (the queue's oldest message, while messages wait) and back to 0 once none has for
    # 5 minutes: ECS never moves a service off Fargate Spot by itself when Spot has no capacity. 0: none.
    worker_spot_fallback_after_s: int = 300
    cpu_job_timeout_s: int = 900
    max_receives: int = 5
    gpu_enabled: bool = False
    gpu_instance_type: str = "g5.xlarge"
    gpu_ami_release: str = "al2023-ami-ecs-gpu-hvm-2023.0.20260901-kernel-6.1-x86_64-ebs"
    gpu_cpu: int = 2048
    gpu_memory_mb: int = 14336
    gpu_concurrency: int = 2
    gpu_max_tasks: int = 1
    gpu_job_timeout_s: int = 1800
    # The embedding model of the GPU lane (embeddings.encode): a model directory in S3 (model.onnx +
    # tokenizer.json), downloaded once per task start; or, when that is empty, a public model baked into the
    # GPU image at build time (a Hugging Face repo holding an ONNX export, at a pinned revision).
    embedding_model_s3_uri: str = ""
    embedding_model_repo: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_model_revision: str = "main"
    # The batch lane: jobs whose client can wait (mode "batch") go through the Message Batches API at half the
    # token price, collected by a scheduled Lambda. batch_window_s: how long a queued job may wait for a fuller
    # batch (0: each pass sends what is there); batch_max_attempts: batches a job may be sent in before a
    # retryable failure fails it; batch_open_alarm_hours: alarm when a batch stays open longer.
    batch_enabled: bool = True
    batch_window_s: int = 0
    # Who answers the Claude calls, in order (docs/providers.md): ["anthropic"], ["bedrock"] or both, the second
    # taking the calls the first refuses while its circuit breaker is open. bedrock_profile: the inference profile
    # scope ("global", "us", "eu") whose id the Bedrock client calls, checked against the deploy Region.
    model_providers: list[str] = field(default_factory=lambda: list(DEFAULT_PROVIDERS))
    bedrock_profile: str = DEFAULT_BEDROCK_SCOPE
    batch_max_attempts: int = 3
    batch_open_alarm_hours: int = 24
    alarm_email: str = ""
    log_retention_days: int = 30
    job_ttl_days: int = 30
    result_retention_days: int = 30
    api_rate_limit: int = 50
    api_burst_limit: int = 100
    # Seconds between a webhook's attempts (comma-separated): one more attempt than gaps, then the delivery
    # fails (alarmed) until a client asks for it again. Default: Standard Webhooks', 8 attempts over ~27 h.
    webhook_retry_schedule_s: str = ",".join(str(gap) for gap in DEFAULT_GAPS_S)
    # The S3 intake (objects created under intake/<task>/ of the job bucket become jobs): the tenant its jobs
    # belong to (an API key's id, as API Gateway gives it: GET /v1/jobs with that key lists them) and an
    # https webhook for their terminal states ('' for none).
    intake_tenant: str = "intake"
    intake_webhook_url: str = ""
    # The cost model's inputs (docs: routing and cost): expected requests a minute per task name, and
    # price overrides (same shape as lambda_src/jobcore/prices.json). JSON objects; `-c` takes them as JSON.
    task_rates_per_min: dict[str, float] = field(default_factory=dict)
    price_overrides: dict[str, Any] = field(default_factory=dict)
    # The model's budget (docs/capacity.md): every Claude call of the router, the workers and the collector waits
    # for a grant from a budget shared through the jobs table. model_rate_limits: per model family ("sonnet-4",
    # "haiku-3.5", or "*" for any), {"rpm", "itpm", "otpm"}: your organisation's tier (the API's headers correct
    # them at run time); {}: nothing is paced. model_admission false: calls go unpaced (and the SDK retries 429s)
    # whatever the limits. tenant_shares: {"<tenant>": {"weight", "max_in_flight", "max_share"}} ("*": any other).
    # inline_reserved_share: the part of each limit queued work may not take, kept for inline requests.
    # bedrock_rate_limits: Bedrock's own budget, per model family, {"tpm", "rpm", "output_burndown"}: the account's
    # quotas for the model's inference profile in the deploy Region (tokens per minute count input and output
    # together, output `output_burndown` times, 5 by default for Claude 3.7 and later); {}: Bedrock calls unpaced.
    model_admission: bool = True
    model_rate_limits: dict[str, Any] = field(default_factory=dict)
    bedrock_rate_limits: dict[str, Any] = field(default_factory=dict)
    tenant_shares: dict[str, Any] = field(default_factory=dict)
    inline_reserved_share: float = 0.1
    # Monthly budgets in USD by tenant (an API key's id): a submission whose estimate would pass what is left of its
    # tenant's budget this month is refused (402 budget_exceeded). A tenant not named has none.
    tenant_budgets_usd: dict[str, float] = field(default_factory=dict)
    # Where the router, the workers and the webhook dispatcher send their traces: an OTLP/HTTP traces endpoint,
    # e.g. an ADOT collector's (docs/deploy.md, "Traces"); '' for none (nothing of the OpenTelemetry SDK is loaded).
    traces_endpoint: str = ""
    # More worker lanes, after cpu and gpu, each one entry (WorkerLane.from_entry; docs/deploy.md, "Lanes"):
    # routing takes the first CPU lane a job fits, so list smaller lanes first.
    # The context key is "lanes" (keys()); the field has another name, for lanes() is the deployment's Lanes.
    lane_entries: list[dict[str, Any]] = field(default_factory=list, metadata={"key": "lanes"})

    # Scale (docs/scale.md; ``python -m tools.scale`` sizes them for a workload). The partitions each index spreads
    # its items over: a tenant's jobs in the tenant index (a partition takes ~1,000 write units a second), the
    # running and deadline-bound jobs in the watch index, the pending webhooks in the delivery index. Raise them
    # freely; never lower them on a live table.
    tenant_index_shards: int = 4
    watch_index_shards: int = 8
    delivery_index_shards: int = 4
    # The first deploy of a table made before by_tenant_list keeps the old tenant index (CloudFormation adds or
    # drops one index per update): true for that one deploy, then false (docs/deploy.md).
    legacy_tenant_index: bool = False
    # The account's Lambda concurrency quota in the region (1,000 by default, raised on request; new accounts
    # start lower): the router's budget, when it reserves none, is this less the other functions' caps, and its
    # inline runs may hold INLINE_SHARE of that budget at once; past it, new jobs are queued instead.
    lambda_concurrency_quota: int = 1000

    def __post_init__(self) -> None:
        for key, (check, expected) in _RULES.items():
            value = getattr(self, key)
            if not check(value):
                raise ConfigError(f"context key {key!r} = {value!r}: expected {expected}")
        for keys, check, expected in _CROSS_RULES:
            if not check(self):
                shown = ", ".join(f"{key}={getattr(self, key)!r}" for key in keys)
                raise ConfigError(f"context keys {' and '.join(repr(k) for k in keys)} ({shown}): expected {expected}")
        self._check_with_runtime_rules()

    def _check_with_runtime_rules(self) -> None:
        """What the router and the workers will parse, parsed now by their own code: a config that
        synthesizes is one the runtime accepts."""
        try:
            arrival_rates(self.task_rates_per_min)
        except ValueError as error:
            raise ConfigError(f"context key 'task_rates_per_min': {error}") from None
        try:
            tenant_budgets(self.tenant_budgets_usd)
        except ValueError as error:
            raise ConfigError(f"context key 'tenant_budgets_usd': {error}") from None
        try:
            schedule = RetrySchedule.parse(self.webhook_retry_schedule_s)
        except ValueError as error:
            raise ConfigError(f"context key 'webhook_retry_schedule_s' = {self.webhook_retry_schedule_s!r}: {error}") from None
        longest_s = sum(schedule.gaps_s) * (1 + schedule.jitter)
        if longest_s >= self.job_ttl_days * 86_400:
            # The delivery lives on the job item: TTL must not delete it while attempts are still due.
            raise ConfigError(f"context keys 'job_ttl_days' and 'webhook_retry_schedule_s' ({self.job_ttl_days} days, "
                              f"retries over up to {longest_s / 3600:.1f} h): expected the jobs kept longer than the "
                              "webhook schedule runs")
        if self.bedrock_rate_limits and BEDROCK not in self.model_providers:
            raise ConfigError("context key 'bedrock_rate_limits': set, but 'model_providers' "
                              f"({', '.join(self.model_providers)}) does not name bedrock: it would pace nothing")
        for key, parse in (("model_rate_limits", lambda: parse_rate_limits(self.model_rate_limits)),
                           ("bedrock_rate_limits", lambda: parse_bedrock_limits(self.bedrock_rate_limits)),
                           ("tenant_shares", lambda: parse_tenant_shares(self.tenant_shares)),
                           ("inline_reserved_share", lambda: parse_reserved_share(self.inline_reserved_share, "value"))):
            try:
                parse()
            except CapacityConfigError as error:
                raise ConfigError(f"context key {key!r}: {error}") from None
        try:
            prices = self.prices()
        except ValueError as error:
            raise ConfigError(f"context key 'price_overrides': {error}") from None
        for key in ("model_id", "worker_model_id"):
            retired = prices.claude.retired(getattr(self, key), datetime.now(UTC).date())
            if retired:
                raise ConfigError(f"context key {key!r}: {retired}")
        self.bedrock_profiles(None)
        if not isinstance(self.lane_entries, list):
            raise ConfigError(f"context key 'lanes' = {self.lane_entries!r}: expected a list of lanes (docs/deploy.md, \"Lanes\")")
        try:
            lanes = self.lanes()
        except LaneConfigError as error:
            raise ConfigError(f"context keys for the lanes: {error}") from None
        for first, second in clashing_ids(lane.name for lane in lanes):
            raise ConfigError(f"context key 'lanes': {first!r} and {second!r} would name the same resources "
                              "(CDK keeps only the letters and digits of a name): rename one")
        try:
            CostModel(prices, lanes)
        except ValueError as error:  # a lane the price file cannot price, e.g. an unlisted instance type
            unpriced = next((lane for lane in lanes if isinstance(lane.compute, Ec2Compute)
                             and lane.compute.instance not in prices.ec2.instances), lanes.get("gpu"))
            where = ("context key 'gpu_instance_type'" if unpriced.name == "gpu"
                     else f"context key 'lanes' ({unpriced.name!r}): compute.instance")
            raise ConfigError(f"{where} = {getattr(unpriced.compute, 'instance', '')!r}: {error}") from None
        self._check_gpu_task_fits(prices)
        for worker in self.worker_lanes(enabled=False)[2:]:
            if isinstance(worker.lane.compute, Ec2Compute):
                _check_task_fits(prices, worker.lane.compute.instance, worker.task_cpu, worker.lane.memory_mb,
                                 lambda *keys, name=worker.name: f"context key 'lanes' ({name!r}): "
                                 + " and ".join({"instance_type": "compute.instance", "cpu": "task_cpu"}.get(k, k)
                                                for k in keys))
        try:
            self.index_shards()
        except ValueError as error:
            raise ConfigError(f"context keys 'tenant_index_shards', 'watch_index_shards', 'delivery_index_shards': {error}") from None

    def _check_gpu_task_fits(self, prices: Prices) -> None:
        """The built-in GPU lane's task on its instance type (:func:`_check_task_fits`)."""
        _check_task_fits(prices, self.gpu_instance_type, self.gpu_cpu, self.gpu_memory_mb,
                         lambda *keys: f"context key{'s' if len(keys) > 1 else ''} "
                                       f"{' and '.join(repr(f'gpu_{key}') for key in keys)}")

    def capacity(self) -> CapacityConfig:
        """The model's budget, parsed by the core's own parsers (the runtime parses the same values again)."""
        return CapacityConfig(
            admission=self.model_admission, limits=parse_rate_limits(self.model_rate_limits),
            bedrock=parse_bedrock_limits(self.bedrock_rate_limits),
            tenants=parse_tenant_shares(self.tenant_shares),
            inline_reserved_share=parse_reserved_share(self.inline_reserved_share, "inline_reserved_share"),
        )

    def index_shards(self) -> IndexShards:
        return IndexShards(tenant=self.tenant_index_shards, watch=self.watch_index_shards,
                           delivery=self.delivery_index_shards)

    def router_concurrency(self) -> int:
        """The router's concurrency budget: its reservation, or the account's quota less what the other functions
        may hold (the dispatcher's and the intake's caps, the collector's reservation or one pass, the sweeper's one)."""
        if self.router_reserved_concurrency is not None:
            return self.router_reserved_concurrency
        others = self.webhook_max_concurrency + self.intake_max_concurrency + (self.collector_reserved_concurrency or 1) + 1
        return max(1, self.lambda_concurrency_quota - others)

    def inline_concurrency(self) -> int:
        """How many inline runs may hold a router execution at once (``INLINE_CONCURRENCY``)."""
        return inline_slots(self.router_concurrency())

    def bedrock_profiles(self, region: str | None) -> list[BedrockProfile]:
        """The inference profiles the Bedrock provider calls (none without it), checked to exist for the models
        and, with a ``region`` (the deploy Region), to be callable from it."""
        if "bedrock" not in self.model_providers:
            return []
        try:
            return bedrock_profiles(self.prices().claude, (self.model_id, self.worker_model_id), self.bedrock_profile, region)
        except ValueError as error:
            raise ConfigError(f"context keys 'model_providers', 'bedrock_profile' and the model ids: {error}") from None

    def prices(self) -> Prices:
        """The price file with ``price_overrides`` merged in, exactly as the runtime builds it."""
        return default_prices().with_overrides(self.price_overrides)

    def worker_lanes(self, *, enabled: bool = True) -> tuple[WorkerLane, ...]:
        """The worker lanes, in routing order: ``cpu`` (the flat ``worker_*`` keys), ``gpu`` (``gpu_*``; disabled
        unless ``gpu_enabled``), then each entry of ``lanes``; only the enabled ones unless ``enabled`` is False."""
        built_in = (
            WorkerLane(
                lane=Lane(name="cpu", queued=True, memory_mb=self.worker_memory_mb, time_limit_s=self.cpu_job_timeout_s,
                          concurrency=self.worker_concurrency,
                          compute=FargateCompute(vcpu=self.worker_cpu / CPU_UNITS_PER_VCPU, memory_mb=self.worker_memory_mb,
                                                 spot=self.worker_on_demand_base == 0 and self.worker_on_demand_weight == 0)),
                image="cpu", min_tasks=self.worker_min_tasks, max_tasks=self.worker_max_tasks,
                on_demand_base=self.worker_on_demand_base, on_demand_weight=self.worker_on_demand_weight,
                spot_fallback_after_s=self.worker_spot_fallback_after_s),
            WorkerLane(
                lane=Lane(name="gpu", queued=True, gpu=True, enabled=self.gpu_enabled, memory_mb=self.gpu_memory_mb,
                          time_limit_s=self.gpu_job_timeout_s, concurrency=self.gpu_concurrency,
                          compute=Ec2Compute(instance=self.gpu_instance_type)),
                image="gpu", max_tasks=self.gpu_max_tasks, task_cpu=self.gpu_cpu),
        )
        listed = tuple(WorkerLane.from_entry(entry, index) for index, entry in enumerate(self.lane_entries))
        return tuple(worker for worker in (*built_in, *listed) if worker.lane.enabled or not enabled)

    def worker_lane(self, name: str) -> WorkerLane:
        """The enabled worker lane ``name``; KeyError if there is none."""
        return {worker.name: worker for worker in self.worker_lanes()}[name]

    def lanes(self) -> Lanes:
        """The deployment's lanes: the router (inline), the worker lanes (:meth:`worker_lanes`, disabled ones
        included) and the batch lane (``batch_enabled``), read back with ``Lanes.from_dict``: the runtime's own
        parser. The one place configuration turns into lane sizes."""
        return Lanes.from_dict(Lanes((
            Lane(name=INLINE, queued=False, memory_mb=self.router_memory_mb, time_limit_s=self.inline_budget_s,
                 compute=LambdaCompute(memory_mb=self.router_memory_mb, arch="arm64")),
            *(worker.lane for worker in self.worker_lanes(enabled=False)),
            # No compute of its own: its memory is the collector's, its time limit the API's 24 h.
            # The batch lane is Anthropic's Message Batches API: off without Anthropic (mode batch: a 422).
            Lane(name="batch", queued=True, enabled=self.batch_enabled and batch_allowed(self.model_providers),
                 memory_mb=BATCH_COLLECTOR_MEMORY_MB,
                 time_limit_s=BATCH_WINDOW_MAX_S, compute=BatchCompute()),
        )).to_dict())

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The context keys: the fields' names, or a field's ``key`` where the two differ (``lanes``)."""
        return tuple(_context_key(f) for f in dataclasses.fields(cls))

    def to_context(self) -> dict[str, Any]:
        """The values as cdk.json holds them."""
        values = dataclasses.asdict(self)
        return {_context_key(f): values[f.name] for f in dataclasses.fields(self)}

    @classmethod
    def from_app(cls, app: Construct) -> PipelineConfig:
        """The configuration of an app: its whole context (cdk.json, cdk.context.json, ``-c``), as :meth:`from_mapping`."""
        return cls.from_mapping(app.node.get_all_context())

    @classmethod
    def from_mapping(cls, context: Mapping[str, Any]) -> PipelineConfig:
        """Reads each key of ``context``; a missing key keeps its default. A key that is neither the CDK's nor one
        of :meth:`keys` is refused, with the nearest known key, before any value is read."""
        check_known_keys(context)
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = context.get(_context_key(f))
            if raw is not None:
                values[f.name] = _coerce(_context_key(f), raw, hints[f.name])
        return cls(**values)


def _context_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _check_task_fits(prices: Prices, instance_type: str, cpu: int, memory_mb: int, keys: Callable[..., str]) -> None:
    """A GPU task larger than its instance type synthesizes and deploys, and then no task is ever placed. The
    instance's size is the price file's (with ``price_overrides``, where a new type is added). ``keys`` names the
    settings for the message: called with some of ``cpu``, ``memory_mb`` and ``instance_type``."""
    instance = prices.ec2.instances[instance_type]
    max_cpu = int(instance.vcpu * CPU_UNITS_PER_VCPU)
    max_memory_mb = gpu_task_memory_limit_mb(instance.memory_gib)
    size = f"{instance_type} has {instance.vcpu:g} vCPU and {instance.memory_gib:g} GiB"
    if cpu > max_cpu:
        raise ConfigError(f"{keys('cpu', 'instance_type')} ({cpu} CPU units on {instance_type}): {size}, so a task "
                          f"may ask for at most {max_cpu} CPU units")
    if memory_mb > max_memory_mb:
        raise ConfigError(
            f"{keys('memory_mb', 'instance_type')} ({memory_mb} MiB on {instance_type}): {size}, so a task may ask for "
            f"at most {max_memory_mb} MiB (the installed memory less {ECS_INSTANCE_MEMORY_HEADROOM:.0%} kept for the "
            "ECS agent and the system)")
    if instance.gpus < 1:
        raise ConfigError(f"{keys('instance_type')} = {instance_type!r}: the price file gives it no GPU")


def gpu_task_memory_limit_mb(memory_gib: float) -> int:
    """The most memory (MiB) a task may ask for on an instance with ``memory_gib`` installed."""
    return int(memory_gib * 1024 * (1 - ECS_INSTANCE_MEMORY_HEADROOM))


def check_known_keys(context: Mapping[str, Any]) -> None:
    """Raises :class:`ConfigError` for the first context key (in sorted order) this configuration does not define,
    naming the closest key it does: a misspelt key would otherwise be ignored, and its default deployed."""
    known = PipelineConfig.keys()
    for key in sorted(k for k in context if k not in known and not is_cdk_context_key(k)):
        near = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {near[0]!r}?" if near else "see the keys in cdk.json or docs/deploy.md"
        raise ConfigError(f"context key {key!r} is not a setting of this pipeline: {hint}")


def _is_str_list(hint: Any) -> bool:
    return typing.get_args(hint) == (str,)


def _coerce(key: str, raw: Any, hint: Any) -> Any:
    """Turns a JSON value or a ``-c key=value`` string into the field's type, or raises naming the key."""
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(t for t in typing.get_args(hint) if t is not type(None)) if optional else hint
    if optional and (raw is None or (isinstance(raw, str) and raw.strip().lower() in {"", "none", "null"})):
        return None
    if base is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in {"true", "false"}:
            return raw.strip().lower() == "true"
        raise ConfigError(f"context key {key!r} = {raw!r}: expected true or false")
    if base is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
            return int(raw)
        raise ConfigError(f"context key {key!r} = {raw!r}: expected a whole number")
    if base is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", raw):
            return float(raw)
        raise ConfigError(f"context key {key!r} = {raw!r}: expected a number")
    if base is str:
        if isinstance(raw, str):
            return raw.strip()
        raise ConfigError(f"context key {key!r} = {raw!r}: expected a string")
    if typing.get_origin(base) is list:
        if isinstance(raw, str):
            # A list of strings also takes the comma form (-c model_providers=anthropic,bedrock); a list of objects
            # (-c lanes=[{...}]) and anything that starts with "[" is JSON.
            if raw.strip().startswith("[") or not _is_str_list(base):
                try:
                    raw = json.loads(raw)
                except json.JSONDecodeError:
                    raise ConfigError(f"context key {key!r} = {raw!r}: expected a JSON list") from None
            else:
                raw = [part.strip() for part in raw.split(",") if part.strip()]
        if isinstance(raw, list):
            return raw
        raise ConfigError(f"context key {key!r} = {raw!r}: expected a {'' if _is_str_list(base) else 'JSON '}list")
    if typing.get_origin(base) is dict:
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigError(f"context key {key!r} = {raw!r}: expected a JSON object") from None
        if isinstance(raw, dict):
            return raw
        raise ConfigError(f"context key {key!r} = {raw!r}: expected a JSON object")
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a programming error, not a user's


def _between(low: int, high: int) -> tuple[Callable[[int], bool], str]:
    return (lambda v: low <= v <= high), f"a whole number from {low} to {high}"


def _matches(pattern: re.Pattern[str], expected: str) -> tuple[Callable[[str], bool], str]:
    return (lambda v: bool(pattern.fullmatch(v))), expected


def _parses(parse: Callable[[Any], Any]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        try:
            parse(value)
        except ValueError:
            return False
        return True
    return check


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model_providers": (_parses(parse_providers), 'a non-empty list of distinct providers: "anthropic", "bedrock"'),
    "bedrock_profile": (_parses(parse_scope), 'an inference profile scope: "global", "us" or "eu"'),
    "stage": _matches(_STAGE, "lower-case letters, digits and '-', starting with a letter, at most 16 characters"),
    "model_id": _matches(_MODEL_ID, "a Claude model id such as 'claude-sonnet-4-6'"),
    "worker_model_id": _matches(_MODEL_ID, "a Claude model id such as 'claude-sonnet-4-6'"),
    "inline_budget_s": _between(1, MAX_INLINE_BUDGET_S),
    "router_memory_mb": _between(LAMBDA_MIN_MEMORY_MB, LAMBDA_MAX_MEMORY_MB),
    "router_timeout_s": _between(4, API_GATEWAY_TIMEOUT_S),
    "router_reserved_concurrency": ((lambda v: v is None or 1 <= v <= 10000), "null (unreserved) or 1 to 10000"),
    "router_snapstart": ((lambda v: isinstance(v, bool)), "true or false"),
    "router_provisioned_concurrency": _between(0, 10000),
    "collector_reserved_concurrency": ((lambda v: v is None or 1 <= v <= 10000), "null (unreserved) or 1 to 10000"),
    "webhook_max_concurrency": _between(SQS_EVENT_SOURCE_MIN_CONCURRENCY, SQS_EVENT_SOURCE_MAX_CONCURRENCY),
    "intake_max_concurrency": _between(SQS_EVENT_SOURCE_MIN_CONCURRENCY, SQS_EVENT_SOURCE_MAX_CONCURRENCY),
    "worker_cpu": ((lambda v: v in FARGATE_SIZES), f"a Fargate CPU size, one of {sorted(FARGATE_SIZES)}"),
    "worker_memory_mb": _between(512, 122880),
    "worker_concurrency": _between(1, 100),
    "worker_min_tasks": _between(0, 100),
    "worker_max_tasks": _between(1, MAX_SCALING_STEPS),
    "worker_on_demand_base": _between(0, 100),
    "worker_on_demand_weight": _between(0, 100),
    "worker_spot_fallback_after_s": ((lambda v: v == 0 or 60 <= v <= 86_400),
                                     "0 (no on-demand fallback) or seconds from 60 to 86400"),
    "cpu_job_timeout_s": _between(60, SQS_MAX_VISIBILITY_S),
    "max_receives": _between(1, 1000),
    "gpu_enabled": ((lambda v: isinstance(v, bool)), "true or false"),
    "gpu_instance_type": _matches(GPU_INSTANCE_TYPE, "a GPU instance type such as 'g5.xlarge' (g4dn, g5, g6, g6e, p3-p5)"),
    "gpu_ami_release": _matches(
        _GPU_AMI_RELEASE, "an ECS-optimized AL2023 GPU AMI release such as "
        "'al2023-ami-ecs-gpu-hvm-2023.0.20260901-kernel-6.1-x86_64-ebs'"),
    "gpu_cpu": _between(128, 192 * 1024),
    "gpu_memory_mb": _between(512, 2048 * 1024),
    "gpu_concurrency": _between(1, 100),
    "gpu_max_tasks": _between(1, MAX_SCALING_STEPS),
    "gpu_job_timeout_s": _between(60, SQS_MAX_VISIBILITY_S),
    "embedding_model_s3_uri": ((lambda v: v == "" or bool(_S3_MODEL_URI.fullmatch(v))),
                               "'' or an S3 model directory such as 's3://my-models/minilm/' (model.onnx + tokenizer.json)"),
    "embedding_model_repo": ((lambda v: v == "" or bool(_HF_REPO.fullmatch(v))),
                             "'' or a Hugging Face repo id such as 'sentence-transformers/all-MiniLM-L6-v2'"),
    "embedding_model_revision": _matches(_HF_REVISION, "a branch, tag or commit of the model repo, e.g. 'main'"),
    "batch_enabled": ((lambda v: isinstance(v, bool)), "true or false"),
    "batch_window_s": _between(0, 3600),
    "batch_max_attempts": _between(1, 10),
    "batch_open_alarm_hours": _between(1, 48),
    "alarm_email": ((lambda v: v == "" or bool(_EMAIL.fullmatch(v))), "an e-mail address, or '' for none"),
    "traces_endpoint": (_parses(check_traces_endpoint),
                        "'', 'xray' (the Region's X-Ray OTLP endpoint, SigV4-signed; needs Transaction Search) or an "
                        "OTLP/HTTP traces URL such as 'http://localhost:4318/v1/traces'"),
    "log_retention_days": ((lambda v: v in LOG_RETENTION_DAYS), f"one of {sorted(LOG_RETENTION_DAYS)}"),
    "job_ttl_days": _between(1, 3650),
    "result_retention_days": _between(1, 3650),
    "tenant_index_shards": _between(1, MAX_INDEX_SHARDS),
    "watch_index_shards": _between(1, MAX_INDEX_SHARDS),
    "delivery_index_shards": _between(1, MAX_INDEX_SHARDS),
    "legacy_tenant_index": ((lambda v: isinstance(v, bool)), "true or false"),
    "lambda_concurrency_quota": _between(10, 1_000_000),
    "api_rate_limit": _between(1, 10000),
    "api_burst_limit": _between(1, 5000),
    # Empty would not mean "no retries" to the dispatcher but its default schedule: say what is meant.
    "webhook_retry_schedule_s": ((lambda v: bool(v.strip(", "))),
                                 "comma-separated seconds between webhook attempts, e.g. '5,300,1800'"),
    "intake_tenant": ((lambda v: bool(_INTAKE_TENANT.fullmatch(v))), "an API key's id: 1 to 128 letters, digits, '-' or '_'"),
    "intake_webhook_url": ((lambda v: v == "" or (v.startswith("https://") and len(v) <= 2048 and " " not in v)),
                           "'' or an https:// URL"),
}

_CROSS_RULES: list[tuple[tuple[str, ...], Callable[[PipelineConfig], bool], str]] = [
    (("worker_cpu", "worker_memory_mb"),
     lambda c: c.worker_memory_mb in FARGATE_SIZES[c.worker_cpu],
     "a memory size Fargate allows for that CPU size"),
    (("inline_budget_s", "router_timeout_s"),
     lambda c: c.inline_budget_s + INLINE_FALLBACK_MARGIN_S <= c.router_timeout_s,
     f"the router timeout at least {INLINE_FALLBACK_MARGIN_S} s above the inline budget, so a slow inline "
     "call can still fall back to the queue and answer 202"),
    (("router_snapstart", "router_provisioned_concurrency"),
     lambda c: not (c.router_snapstart and c.router_provisioned_concurrency),
     "one of them: Lambda SnapStart does not support provisioned concurrency"),
    (("router_provisioned_concurrency", "router_reserved_concurrency"),
     lambda c: c.router_reserved_concurrency is None or c.router_provisioned_concurrency <= c.router_reserved_concurrency,
     "provisioned concurrency not above the reserved concurrency"),
    (("worker_min_tasks", "worker_max_tasks"),
     lambda c: c.worker_min_tasks <= c.worker_max_tasks,
     "min tasks not above max tasks"),
    (("worker_on_demand_base", "worker_max_tasks"),
     lambda c: c.worker_on_demand_base <= c.worker_max_tasks,
     "the on-demand base not above max tasks"),
    (("gpu_enabled", "embedding_model_s3_uri", "embedding_model_repo"),
     lambda c: not c.gpu_enabled or bool(c.embedding_model_s3_uri or c.embedding_model_repo),
     "an embedding model for the gpu lane: an S3 model directory, or a repo to bake into the GPU image"),
    (("result_retention_days", "job_ttl_days"),
     lambda c: c.result_retention_days >= c.job_ttl_days,
     "results kept at least as long as the jobs that point at them"),
]
