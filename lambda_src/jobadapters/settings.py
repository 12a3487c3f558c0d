"""The environment, read once, into frozen settings objects.

The CDK constructs set exactly the variables named here (``RouterSettings.ENV`` and
``WorkerSettings.ENV``); a template test checks that the two sides agree, so a renamed variable
fails CI rather than a deployed function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """An environment variable is missing or malformed."""


def _required(env: Mapping[str, str], key: str) -> str:
    value = env.get(key, "")
    if not value:
        raise ConfigError(f"environment variable {key} is required")
    return value


def _number(env: Mapping[str, str], key: str, default: float, cast=float):
    raw = env.get(key, "")
    if raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ConfigError(f"environment variable {key}={raw!r} is not a number") from None


def _flag(env: Mapping[str, str], key: str, default: bool = False) -> bool:
    raw = env.get(key, "").strip().lower()
    return default if raw == "" else raw in {"1", "true", "yes"}


def _json_object(env: Mapping[str, str], key: str) -> dict:
    raw = env.get(key, "")
    if raw == "":
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"environment variable {key} is not valid JSON: {error.msg}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"environment variable {key} must be a JSON object")
    return value


@dataclass(frozen=True, kw_only=True)
class CostSettings:
    """The sizes the cost model prices each lane with, and the operator's price overrides.

    Read by the router (estimates, the frequency break-even) and the worker (actual costs) alike.
    """

    ENV = frozenset({"ROUTER_MEMORY_MB", "WORKER_VCPU", "WORKER_MEMORY_MB", "WORKER_CONCURRENCY", "GPU_INSTANCE_TYPE", "FARGATE_SPOT", "PRICE_OVERRIDES"})

    router_memory_mb: int = 1024
    worker_vcpu: float = 1.0
    worker_memory_mb: int = 4096
    worker_concurrency: int = 8
    gpu_instance: str = "g5.xlarge"
    spot: bool = True
    price_overrides: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CostSettings:
        return cls(
            router_memory_mb=_number(env, "ROUTER_MEMORY_MB", 1024, int),
            worker_vcpu=_number(env, "WORKER_VCPU", 1.0),
            worker_memory_mb=_number(env, "WORKER_MEMORY_MB", 4096, int),
            worker_concurrency=_number(env, "WORKER_CONCURRENCY", 8, int),
            gpu_instance=env.get("GPU_INSTANCE_TYPE") or "g5.xlarge",
            spot=_flag(env, "FARGATE_SPOT", default=True),
            price_overrides=_json_object(env, "PRICE_OVERRIDES"),
        )


@dataclass(frozen=True, kw_only=True)
class ClaudeSettings:
    """How to reach Claude: a local stand-in (base_url), a key in Secrets Manager, or the SDK default.

    With ``base_url`` set the SDK talks to that address (the offline stand-in); otherwise it calls the
    real API with the key from ``ANTHROPIC_API_KEY`` or, in AWS, from the secret ``secret_arn``.
    """

    model_id: str
    base_url: str | None = None
    secret_arn: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, key_in_secret: bool) -> ClaudeSettings:
        """``key_in_secret``: the Lambda fetches the key itself; ECS injects it as ANTHROPIC_API_KEY."""
        return cls(
            model_id=env.get("MODEL_ID") or "claude-sonnet-4-5",
            base_url=env.get("ANTHROPIC_BASE_URL") or None,
            secret_arn=(env.get("ANTHROPIC_SECRET_ARN") or None) if key_in_secret else None,
        )


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    """Signing secret for outbound webhooks: inline (local runtime) or from Secrets Manager (AWS)."""

    secret: str | None = None
    secret_arn: str | None = None
    allow_private_targets: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, key_in_secret: bool) -> WebhookSettings:
        return cls(
            secret=env.get("WEBHOOK_SECRET") or None,
            secret_arn=(env.get("WEBHOOK_SECRET_ARN") or None) if key_in_secret else None,
            allow_private_targets=_flag(env, "WEBHOOK_ALLOW_PRIVATE_TARGETS"),
        )


# API Gateway (REST) gives an integration 29 s; the inline budget must leave room for the rest of
# the request (DynamoDB and S3 writes, the response) so that a slow model never produces a 504.
MAX_INLINE_BUDGET_S = 25.0


@dataclass(frozen=True, kw_only=True)
class RouterSettings:
    """What the router Lambda needs: where jobs live, the lanes' queues and the routing limits."""

    ENV = frozenset({
        "STAGE", "JOBS_TABLE", "RESULTS_BUCKET", "CPU_QUEUE_URL", "GPU_QUEUE_URL",
        "INLINE_BUDGET_S", "GPU_MEMORY_MB", "TASK_RATES_PER_MIN",
        "JOB_TTL_DAYS", "MODEL_ID", "ANTHROPIC_SECRET_ARN", "WEBHOOK_SECRET_ARN",
    }) | CostSettings.ENV
    # Read by the local runtime only; never set by the CDK app.
    LOCAL_ENV = frozenset({"ANTHROPIC_BASE_URL", "WEBHOOK_SECRET", "WEBHOOK_ALLOW_PRIVATE_TARGETS"})

    stage: str
    jobs_table: str
    results_bucket: str
    cpu_queue_url: str
    gpu_queue_url: str | None
    inline_budget_s: float
    gpu_memory_mb: int
    job_ttl_days: int
    # How often each task arrives, as the operator expects it (requests a minute, by task name):
    # the frequency question of the decision framework. Undeclared tasks count as rare.
    task_rates_per_min: dict
    claude: ClaudeSettings
    webhooks: WebhookSettings
    cost: CostSettings

    def __post_init__(self) -> None:
        if not 0 < self.inline_budget_s <= MAX_INLINE_BUDGET_S:
            raise ConfigError(f"INLINE_BUDGET_S={self.inline_budget_s:g} must be above 0 and at most {MAX_INLINE_BUDGET_S:g} (API Gateway waits 29 s)")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RouterSettings:
        return cls(
            stage=env.get("STAGE") or "dev",
            jobs_table=_required(env, "JOBS_TABLE"),
            results_bucket=_required(env, "RESULTS_BUCKET"),
            cpu_queue_url=_required(env, "CPU_QUEUE_URL"),
            gpu_queue_url=env.get("GPU_QUEUE_URL") or None,
            inline_budget_s=_number(env, "INLINE_BUDGET_S", 20.0),
            gpu_memory_mb=_number(env, "GPU_MEMORY_MB", 15360, int),
            job_ttl_days=_number(env, "JOB_TTL_DAYS", 30, int),
            task_rates_per_min=_rates(env),
            claude=ClaudeSettings.from_env(env, key_in_secret=True),
            webhooks=WebhookSettings.from_env(env, key_in_secret=True),
            cost=CostSettings.from_env(env),
        )


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """What a worker task needs: its lane's queue, how many jobs at once, and where results go."""

    ENV = frozenset({
        "STAGE", "LANE", "QUEUE_URL", "JOBS_TABLE", "RESULTS_BUCKET",
        "MAX_RECEIVES", "VISIBILITY_TIMEOUT_S", "MODEL_ID",
    }) | CostSettings.ENV
    # Injected by ECS from Secrets Manager (never plain environment values in the task definition).
    SECRETS = frozenset({"ANTHROPIC_API_KEY", "WEBHOOK_SECRET"})
    # ECS_AGENT_URI is set by ECS itself; the others only by the local runtime.
    LOCAL_ENV = frozenset({"ANTHROPIC_BASE_URL", "WEBHOOK_ALLOW_PRIVATE_TARGETS", "ECS_AGENT_URI", "POLL_WAIT_S"})

    stage: str
    lane: str
    queue_url: str
    jobs_table: str
    results_bucket: str
    max_receives: int
    visibility_timeout_s: int
    claude: ClaudeSettings
    webhooks: WebhookSettings
    cost: CostSettings
    ecs_agent_uri: str | None = None
    poll_wait_s: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerSettings:
        lane = env.get("LANE") or "cpu"
        if lane not in {"cpu", "gpu"}:
            raise ConfigError(f"environment variable LANE={lane!r} must be cpu or gpu")
        return cls(
            stage=env.get("STAGE") or "dev",
            lane=lane,
            queue_url=_required(env, "QUEUE_URL"),
            jobs_table=_required(env, "JOBS_TABLE"),
            results_bucket=_required(env, "RESULTS_BUCKET"),
            max_receives=_number(env, "MAX_RECEIVES", 5, int),
            visibility_timeout_s=_number(env, "VISIBILITY_TIMEOUT_S", 300, int),
            claude=ClaudeSettings.from_env(env, key_in_secret=False),
            webhooks=WebhookSettings.from_env(env, key_in_secret=False),
            cost=CostSettings.from_env(env),
            ecs_agent_uri=env.get("ECS_AGENT_URI") or None,
            poll_wait_s=_number(env, "POLL_WAIT_S", 20, int),
        )

    @property
    def concurrency(self) -> int:
        return self.cost.worker_concurrency


def _rates(env: Mapping[str, str]) -> dict:
    rates = _json_object(env, "TASK_RATES_PER_MIN")
    for task, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
            raise ConfigError(f"TASK_RATES_PER_MIN[{task!r}] must be a non-negative number")
    return rates
