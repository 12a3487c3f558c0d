"""The environment, read once, into frozen settings objects.

The CDK constructs set exactly the variables named here (``RouterSettings.ENV``, ``WorkerSettings.ENV``
and ``DispatcherSettings.ENV``), and parse them with these classes at synth; template tests check that
the two sides agree, so a renamed variable fails CI rather than a deployed function.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from jobadapters.ecs import LaneService
from jobadapters.schema import INDEX_SHARDS_ENV, IndexShards
from jobadapters.tracing import XRAY, check_traces_endpoint
from jobcore.capacity import (
    CapacityConfig,
    CapacityConfigError,
    parse_bedrock_limits,
    parse_rate_limits,
    parse_reserved_share,
    parse_tenant_shares,
)
from jobcore.costing import CostModel
from jobcore.deliveries import RetrySchedule
from jobcore.lanes import LaneConfigError, Lanes
from jobcore.limits import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    LEASE_S,
    MALFORMED_RETRY_S,
    MODEL_WAIT_LIMIT_S,
    SQS_MAX_VISIBILITY_S,
    SQS_MAX_WAIT_S,
)
from jobcore.pricing import Prices, default_prices
from jobcore.providers import ANTHROPIC, BEDROCK, DEFAULT_BEDROCK_SCOPE, DEFAULT_PROVIDERS, parse_providers, parse_scope
from jobcore.tasks import arrival_rates
from jobcore.usage import tenant_budgets

_N = TypeVar("_N", int, float)
_S3_MODEL_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


class ConfigError(ValueError):
    """An environment variable is missing or malformed."""


def _required(env: Mapping[str, str], key: str) -> str:
    value = env.get(key, "")
    if not value:
        raise ConfigError(f"environment variable {key} is required")
    return value


def _number(env: Mapping[str, str], key: str, default: _N, cast: Callable[[str], _N]) -> _N:
    raw = env.get(key, "")
    if raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ConfigError(f"environment variable {key}={raw!r} is not a number") from None


def _backoff_base_s(env: Mapping[str, str]) -> float:
    """BACKOFF_BASE_S: within what jobcore.runner.Backoff accepts (its cap at most)."""
    return _in_range(env, "BACKOFF_BASE_S", _number(env, "BACKOFF_BASE_S", float(BACKOFF_BASE_S), float), 1.0, float(BACKOFF_CAP_S))


def _in_range(env: Mapping[str, str], key: str, value: _N, low: _N, high: _N) -> _N:
    if not low <= value <= high:
        raise ConfigError(f"environment variable {key}={env.get(key)!r} must be from {low} to {high}")
    return value


def _index_shards(env: Mapping[str, str]) -> IndexShards:
    raw = env.get(INDEX_SHARDS_ENV, "")
    if raw == "":
        return IndexShards()
    try:
        return IndexShards.parse(raw)
    except ValueError as error:
        raise ConfigError(f"environment variable {INDEX_SHARDS_ENV}: {error}") from None


def _base_path(env: Mapping[str, str]) -> str:
    raw = env.get("API_BASE_PATH", "").rstrip("/")
    if raw and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", raw):
        raise ConfigError(f"environment variable API_BASE_PATH={raw!r} must be a path such as '/dev'")
    return raw


def _flag(env: Mapping[str, str], key: str, default: bool = False) -> bool:
    raw = env.get(key, "").strip().lower()
    return default if raw == "" else raw in {"1", "true", "yes"}


def _json_object(env: Mapping[str, str], key: str, *, required: bool = False) -> dict:
    raw = env.get(key, "")
    if raw == "":
        if required:
            raise ConfigError(f"environment variable {key} is required")
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"environment variable {key} is not valid JSON: {error.msg}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"environment variable {key} must be a JSON object")
    return value


# The directory holding the code's packages: the Lambda asset's root (/var/task) in AWS, lambda_src here.
CODE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, kw_only=True)
class LaneSettings:
    """The deployment's lanes and the prices they are costed with, parsed by the core's own rules.

    Read by the router (routing, estimates, the frequency break-even) and the workers (time limits,
    actual costs) alike; the CDK app builds the lane document from its configuration with the same classes.

    The Lambdas read the document from a file of their code asset (``LANES_FILE``, relative to the code's root;
    the CDK app writes it there at synth), so their environment, which Lambda bounds at 4 KB, does not grow with
    the lanes; the worker tasks, whose image is the same whatever the lanes, get it inline (``LANES``).
    Exactly one of the two is set.
    """

    ENV = frozenset({"LANES", "PRICE_OVERRIDES", "BEDROCK_PROFILE"})  # a worker task's
    CODE_ENV = frozenset({"LANES_FILE", "PRICE_OVERRIDES", "BEDROCK_PROFILE"})  # a Lambda's

    lanes: Lanes
    prices: Prices
    bedrock_scope: str = DEFAULT_BEDROCK_SCOPE  # the price of the calls Bedrock answers

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, in_code: bool = False) -> LaneSettings:
        """``in_code``: a Lambda's (``CODE_ENV``: the document in ``LANES_FILE``; ``LANES`` only locally)."""
        try:
            lanes = Lanes.from_dict(_lane_document(env) if in_code else _json_object(env, "LANES", required=True))
        except LaneConfigError as error:
            raise ConfigError(f"environment variable {'LANES_FILE' if env.get('LANES_FILE') else 'LANES'}: {error}") from None
        try:
            prices = default_prices().with_overrides(_json_object(env, "PRICE_OVERRIDES"))
        except ValueError as error:
            raise ConfigError(f"environment variable PRICE_OVERRIDES: {error}") from None
        settings = cls(lanes=lanes, prices=prices, bedrock_scope=_bedrock_scope(env))
        try:
            settings.cost_model()
        except ValueError as error:
            raise ConfigError(f"environment variables LANES and PRICE_OVERRIDES: {error}") from None
        return settings

    def cost_model(self) -> CostModel:
        return CostModel(self.prices, self.lanes, bedrock_scope=self.bedrock_scope)


def capacity_from_env(env: Mapping[str, str]) -> CapacityConfig:
    """The model's budget (jobcore.capacity): MODEL_ADMISSION ("on"/"off", default on), MODEL_RATE_LIMITS,
    BEDROCK_RATE_LIMITS and TENANT_SHARES (JSON objects, as cdk.json's ``model_rate_limits``, ``bedrock_rate_limits``
    and ``tenant_shares``), INLINE_RESERVED_SHARE
    (a fraction); parsed by the core's own parsers, as the CDK app validates them at synth."""
    raw = env.get("MODEL_ADMISSION", "on").strip().lower()
    if raw not in {"on", "off", ""}:
        raise ConfigError(f"environment variable MODEL_ADMISSION={raw!r} must be 'on' or 'off'")
    try:
        return CapacityConfig(
            admission=raw != "off",
            limits=parse_rate_limits(_json_object(env, "MODEL_RATE_LIMITS"), "MODEL_RATE_LIMITS"),
            bedrock=parse_bedrock_limits(_json_object(env, "BEDROCK_RATE_LIMITS"), "BEDROCK_RATE_LIMITS"),
            tenants=parse_tenant_shares(_json_object(env, "TENANT_SHARES"), "TENANT_SHARES"),
            inline_reserved_share=parse_reserved_share(
                _number(env, "INLINE_RESERVED_SHARE", CapacityConfig.inline_reserved_share, float), "INLINE_RESERVED_SHARE"),
        )
    except CapacityConfigError as error:
        raise ConfigError(f"environment variable {error}") from None


@dataclass(frozen=True, kw_only=True)
class ObservabilitySettings:
    """Where traces and metrics go. ``TRACES_ENDPOINT``: an OTLP/HTTP traces endpoint (an ADOT collector's), or
    ``xray`` for the X-Ray OTLP endpoint of this process's Region (``AWS_REGION``, set by Lambda and ECS), set by the
    CDK app ("" when the deployment names none: no tracing). Locally, ``TRACES_FILE`` (spans as JSON lines) and
    ``METRICS_FILE`` (the EMF lines, instead of stdout)."""

    ENV = frozenset({"TRACES_ENDPOINT"})
    LOCAL_ENV = frozenset({"TRACES_FILE", "METRICS_FILE"})

    traces_endpoint: str = ""
    traces_file: str = ""
    metrics_file: str = ""
    region: str = ""  # where traces_endpoint "xray" sends

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ObservabilitySettings:
        endpoint = env.get("TRACES_ENDPOINT", "")
        try:
            check_traces_endpoint(endpoint)
        except ValueError as error:
            raise ConfigError(f"environment variable TRACES_ENDPOINT={error}") from None
        region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "") if endpoint == XRAY else ""
        if endpoint == XRAY and not region:
            raise ConfigError("TRACES_ENDPOINT=xray sends to the X-Ray endpoint of this process's Region: AWS_REGION is not set")
        return cls(traces_endpoint=endpoint, traces_file=env.get("TRACES_FILE", ""), metrics_file=env.get("METRICS_FILE", ""),
                   region=region)

    @property
    def tracing(self) -> bool:
        return bool(self.traces_endpoint or self.traces_file)


@dataclass(frozen=True, kw_only=True)
class ClaudeSettings:
    """How to reach Claude: a local stand-in (base_url), a key in Secrets Manager, or the SDK default.

    With ``base_url`` set the SDK talks to that address (the offline stand-in); otherwise it calls the
    real API with the key from ``ANTHROPIC_API_KEY`` or, in AWS, from the secret ``secret_arn``.
    """

    # The model's budget, read by every process that calls the model: the CDK app sets them on the router and the
    # workers (stacks/constructs/runtime_env.capacity_environment); the collector's batches are not paced.
    CAPACITY_ENV = frozenset({"MODEL_ADMISSION", "MODEL_RATE_LIMITS", "BEDROCK_RATE_LIMITS", "TENANT_SHARES",
                              "INLINE_RESERVED_SHARE"})

    model_id: str
    base_url: str | None = None
    secret_arn: str | None = None
    capacity: CapacityConfig = CapacityConfig()
    # Who answers, in order (jobcore.providers, MODEL_PROVIDERS); Bedrock through the BEDROCK_PROFILE profile of
    # the model, called in this process's Region (AWS_REGION, set by Lambda and ECS); BEDROCK_BASE_URL: the
    # stand-in's Bedrock path, locally. BREAKER_COOL_DOWN_S: how long an open breaker refuses (benches, tests).
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    bedrock_scope: str = DEFAULT_BEDROCK_SCOPE
    region: str | None = None
    bedrock_base_url: str | None = None
    breaker_cool_down_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, key_in_secret: bool) -> ClaudeSettings:
        """``key_in_secret``: the Lambda fetches the key itself; ECS injects it as ANTHROPIC_API_KEY."""
        try:
            providers = parse_providers(env.get("MODEL_PROVIDERS") or ",".join(DEFAULT_PROVIDERS))
        except ValueError as error:
            raise ConfigError(f"environment variable MODEL_PROVIDERS: {error}") from None
        return cls(
            model_id=env.get("MODEL_ID") or default_prices().claude.default_model,
            base_url=env.get("ANTHROPIC_BASE_URL") or None,
            secret_arn=(env.get("ANTHROPIC_SECRET_ARN") or None) if key_in_secret and ANTHROPIC in providers else None,
            capacity=capacity_from_env(env),
            providers=providers,
            bedrock_scope=_bedrock_scope(env),
            # Set by Lambda and ECS themselves (never by the CDK app): read only where Bedrock is called.
            region=(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None) if BEDROCK in providers else None,
            bedrock_base_url=env.get("BEDROCK_BASE_URL") or None,
            breaker_cool_down_s=_in_range(env, "BREAKER_COOL_DOWN_S", _number(env, "BREAKER_COOL_DOWN_S", 30.0, float), 0.1, 3600.0),
        )


def _bedrock_scope(env: Mapping[str, str]) -> str:
    try:
        return parse_scope(env.get("BEDROCK_PROFILE") or DEFAULT_BEDROCK_SCOPE)
    except ValueError as error:
        raise ConfigError(f"environment variable BEDROCK_PROFILE: {error}") from None


@dataclass(frozen=True, kw_only=True)
class DispatcherSettings:
    """What the webhook dispatcher needs: the jobs, the webhook queue, the signing secret, the schedule.

    The secret is inline in the local runtime (WEBHOOK_SECRET) and in Secrets Manager in AWS
    (WEBHOOK_SECRET_ARN, read through Powertools' cache). Only the local runtime sets
    WEBHOOK_ALLOW_LOOPBACK, so its receivers on 127.0.0.1 can be reached; no other private address can.
    """

    ENV = frozenset({
        "STAGE", "JOBS_TABLE", "INDEX_SHARDS", "RESULTS_BUCKET", "WEBHOOK_QUEUE_URL", "WEBHOOK_SECRET_ARN", "WEBHOOK_RETRY_SCHEDULE_S",
        "WEBHOOK_SWEEP_EVERY_S", "API_BASE_PATH",
    }) | ObservabilitySettings.ENV
    LOCAL_ENV = frozenset({"WEBHOOK_SECRET", "WEBHOOK_ALLOW_LOOPBACK"}) | ObservabilitySettings.LOCAL_ENV

    stage: str
    jobs_table: str
    index_shards: IndexShards = dataclasses.field(default_factory=IndexShards)  # INDEX_SHARDS
    results_bucket: str
    queue_url: str
    secret: str | None
    secret_arn: str | None
    schedule: RetrySchedule
    sweep_every_s: float
    allow_loopback: bool
    api_base_path: str = ""  # where the API is mounted (its stage), for the links in a webhook's job
    observability: ObservabilitySettings = ObservabilitySettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DispatcherSettings:
        raw = env.get("WEBHOOK_RETRY_SCHEDULE_S", "")
        try:
            schedule = RetrySchedule.parse(raw) if raw else RetrySchedule()
        except ValueError as error:
            raise ConfigError(f"environment variable WEBHOOK_RETRY_SCHEDULE_S: {error}") from None
        secret, secret_arn = env.get("WEBHOOK_SECRET") or None, env.get("WEBHOOK_SECRET_ARN") or None
        if not (secret or secret_arn):
            raise ConfigError("environment variable WEBHOOK_SECRET_ARN (or WEBHOOK_SECRET) is required: webhooks are signed")
        return cls(
            stage=env.get("STAGE") or "dev",
            jobs_table=_required(env, "JOBS_TABLE"), index_shards=_index_shards(env),
            results_bucket=_required(env, "RESULTS_BUCKET"),
            queue_url=_required(env, "WEBHOOK_QUEUE_URL"),
            secret=secret,
            secret_arn=secret_arn,
            schedule=schedule,
            sweep_every_s=_in_range(env, "WEBHOOK_SWEEP_EVERY_S", _number(env, "WEBHOOK_SWEEP_EVERY_S", 60.0, float), 0.1, 900.0),
            allow_loopback=_flag(env, "WEBHOOK_ALLOW_LOOPBACK"),
            api_base_path=_base_path(env),
            observability=ObservabilitySettings.from_env(env),
        )


@dataclass(frozen=True, kw_only=True)
class RouterSettings:
    """What the router Lambda needs: where jobs live, each queued lane's queue, the lanes themselves."""

    ENV = frozenset({
        "STAGE", "JOBS_TABLE", "INDEX_SHARDS", "RESULTS_BUCKET", "LANE_QUEUE_URLS", "WEBHOOK_QUEUE_URL", "TASK_RATES_PER_MIN",
        "JOB_TTL_DAYS", "RESULT_RETENTION_DAYS", "MODEL_ID", "ANTHROPIC_SECRET_ARN", "LANE_SERVICES", "MODEL_PROVIDERS",
        "INLINE_CONCURRENCY", "TENANT_BUDGETS_USD",
    }) | LaneSettings.CODE_ENV | ClaudeSettings.CAPACITY_ENV | ObservabilitySettings.ENV
    # Read by the local runtime only; never set by the CDK app. WEBHOOK_ALLOW_LOOPBACK: accept http://
    # and loopback webhook URLs at submission, for the local receivers. LANES: the local runtime's functions share
    # its workers' environment, so they get the lanes inline, not from a file of a code asset.
    # BACKOFF_BASE_S: jobcore.limits' in AWS; the fault tests shorten it.
    LOCAL_ENV = (frozenset({"ANTHROPIC_BASE_URL", "WEBHOOK_ALLOW_LOOPBACK", "BEDROCK_BASE_URL", "BREAKER_COOL_DOWN_S", "LANES",
                            "BACKOFF_BASE_S"})
                 | ObservabilitySettings.LOCAL_ENV)

    stage: str
    jobs_table: str
    index_shards: IndexShards = dataclasses.field(default_factory=IndexShards)  # INDEX_SHARDS
    results_bucket: str
    queue_urls: dict[str, str]  # enabled queued lane -> its SQS queue
    webhook_queue_url: str  # the dispatcher's queue: terminal jobs with a webhook are handed over there
    job_ttl_days: int
    result_retention_days: int | None
    # How often each task arrives, as the operator expects it (requests a minute, by task name):
    # the frequency question of the decision framework. Undeclared tasks count as rare.
    task_rates_per_min: dict[str, float]
    claude: ClaudeSettings
    lanes: LaneSettings
    allow_loopback_webhooks: bool = False
    # Worker lane -> its ECS service, to wake when a job is queued on it while it has no task (jobcore.wake).
    # LANE_SERVICES unset or {}: no waking, the backlog alarm alone starts tasks.
    lane_services: dict[str, LaneService] = dataclasses.field(default_factory=dict)
    # Inline runs the router admits at once across its executions (jobcore.concurrency); None (unset): uncounted.
    inline_concurrency: int | None = None
    # Monthly budgets in USD by tenant (TENANT_BUDGETS_USD, the configuration's tenant_budgets_usd).
    budgets_usd: dict[str, float] = dataclasses.field(default_factory=dict)
    backoff_base_s: float = BACKOFF_BASE_S  # an inline job falling back when the model is down waits this first
    observability: ObservabilitySettings = ObservabilitySettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RouterSettings:
        lanes = LaneSettings.from_env(env, in_code=True)
        return cls(
            stage=env.get("STAGE") or "dev",
            jobs_table=_required(env, "JOBS_TABLE"), index_shards=_index_shards(env),
            results_bucket=_required(env, "RESULTS_BUCKET"),
            queue_urls=_queue_urls(env, lanes.lanes),
            webhook_queue_url=_required(env, "WEBHOOK_QUEUE_URL"),
            job_ttl_days=_in_range(env, "JOB_TTL_DAYS", _number(env, "JOB_TTL_DAYS", 30, int), 1, 3650),
            result_retention_days=_retention(env),
            task_rates_per_min=_rates(env),
            claude=ClaudeSettings.from_env(env, key_in_secret=True),
            lanes=lanes,
            allow_loopback_webhooks=_flag(env, "WEBHOOK_ALLOW_LOOPBACK"),
            lane_services=_lane_services(env, lanes.lanes),
            inline_concurrency=(None if not env.get("INLINE_CONCURRENCY") else _in_range(
                env, "INLINE_CONCURRENCY", _number(env, "INLINE_CONCURRENCY", 0, int), 1, 1_000_000)),
            budgets_usd=_budgets(env),
            backoff_base_s=_backoff_base_s(env),
            observability=ObservabilitySettings.from_env(env),
        )


@dataclass(frozen=True, kw_only=True)
class IntakeSettings:
    """The S3 intake (``intake.handler``): what the router needs to submit a job, plus the intake's owner
    (INTAKE_TENANT: the tenant its jobs belong to, an API key's id) and its optional webhook."""

    ENV = RouterSettings.ENV | frozenset({"INTAKE_TENANT", "INTAKE_WEBHOOK_URL"})
    LOCAL_ENV = RouterSettings.LOCAL_ENV | frozenset({"INTAKE_EVERY_S"})

    router: RouterSettings
    tenant_id: str
    webhook_url: str
    every_s: float  # the local lister's passes

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IntakeSettings:
        router = RouterSettings.from_env(env)
        webhook_url = env.get("INTAKE_WEBHOOK_URL") or ""
        if webhook_url:
            from jobcore.errors import InvalidInputError
            from jobcore.requests import webhook_url as checked

            try:
                checked(webhook_url, allow_http=router.allow_loopback_webhooks,
                        allow_loopback=router.allow_loopback_webhooks)
            except InvalidInputError as error:
                raise ConfigError(f"environment variable INTAKE_WEBHOOK_URL: {error}") from None
        return cls(
            router=router, tenant_id=_required(env, "INTAKE_TENANT"), webhook_url=webhook_url,
            every_s=_in_range(env, "INTAKE_EVERY_S", _number(env, "INTAKE_EVERY_S", 1.0, float), 0.1, 900.0),
        )


@dataclass(frozen=True)
class EmbeddingSettings:
    """Where a worker's embedding model comes from (``jobadapters.embeddings`` loads it on the first job):
    ``EMBEDDING_MODEL_URI`` (an S3 model directory, set on the lanes that run embeddings when the deploy
    names one) wins over ``EMBEDDING_MODEL_DIR`` (a directory baked into the image, set by the image)."""

    ENV = frozenset({"EMBEDDING_MODEL_URI"})
    IMAGE_ENV = frozenset({"EMBEDDING_MODEL_DIR", "EMBEDDING_MODEL_CACHE"})

    model_uri: str | None = None
    model_dir: str | None = None
    cache_dir: str = "/tmp/embedding-models"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EmbeddingSettings:
        uri = env.get("EMBEDDING_MODEL_URI") or None
        if uri is not None and not _S3_MODEL_URI.fullmatch(uri):
            raise ConfigError(f"environment variable EMBEDDING_MODEL_URI={uri!r} must be s3://bucket/prefix/")
        return cls(model_uri=uri, model_dir=env.get("EMBEDDING_MODEL_DIR") or None,
                   cache_dir=env.get("EMBEDDING_MODEL_CACHE") or cls.cache_dir)

    def s3_location(self) -> tuple[str, str]:
        """The bucket and key prefix (no trailing slash) of ``model_uri``."""
        match = _S3_MODEL_URI.fullmatch(self.model_uri or "")
        if match is None:
            raise ConfigError(f"{self.model_uri!r} is not an S3 model directory")
        return match["bucket"], match["prefix"].strip("/")

    def describe(self) -> str:
        return self.model_uri or self.model_dir or "no model configured"


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """What a worker task needs: its lane's queue, how many jobs at once, and where results go."""

    ENV = frozenset({
        "STAGE", "LANE", "QUEUE_URL", "JOBS_TABLE", "INDEX_SHARDS", "RESULTS_BUCKET", "WEBHOOK_QUEUE_URL", "RESULT_RETENTION_DAYS",
        "MAX_RECEIVES", "VISIBILITY_TIMEOUT_S", "MODEL_ID", "MODEL_PROVIDERS",
    }) | LaneSettings.ENV | ClaudeSettings.CAPACITY_ENV | ObservabilitySettings.ENV
    # Injected by ECS from Secrets Manager (never plain environment values in the task definition).
    SECRETS = frozenset({"ANTHROPIC_API_KEY"})
    # Only on lanes that run embeddings with the model in S3 (the worker image sets the others).
    MODEL_ENV = EmbeddingSettings.ENV
    # ECS_AGENT_URI is set by ECS itself; the image sets the embedding model's directory; the others
    # only the local runtime. MODEL_WAIT_LIMIT_S, LEASE_S, MALFORMED_RETRY_S and BACKOFF_BASE_S: the CDK app does not set
    # them, so in AWS they are jobcore.limits' (an hour, 60 s, 60 s, 15 s); benches and the fault tests shorten them.
    LOCAL_ENV = frozenset({"ANTHROPIC_BASE_URL", "ECS_AGENT_URI", "POLL_WAIT_S", "MODEL_WAIT_LIMIT_S", "BEDROCK_BASE_URL",
                           "BREAKER_COOL_DOWN_S", "LEASE_S", "MALFORMED_RETRY_S", "BACKOFF_BASE_S"},
                          ) | EmbeddingSettings.IMAGE_ENV | ObservabilitySettings.LOCAL_ENV

    stage: str
    lane: str
    queue_url: str
    jobs_table: str
    index_shards: IndexShards = dataclasses.field(default_factory=IndexShards)  # INDEX_SHARDS
    results_bucket: str
    webhook_queue_url: str
    result_retention_days: int | None
    max_receives: int
    visibility_timeout_s: int
    claude: ClaudeSettings
    lanes: LaneSettings
    embedding: EmbeddingSettings = EmbeddingSettings()
    ecs_agent_uri: str | None = None
    poll_wait_s: int = SQS_MAX_WAIT_S
    model_wait_limit_s: int = MODEL_WAIT_LIMIT_S  # how long, in all, a job may wait for an unavailable model
    lease_s: int = LEASE_S  # how long a claim lasts unless renewed (a heartbeat renews it every third of it at most)
    malformed_retry_s: int = MALFORMED_RETRY_S  # a message that is not a job is seen again after this, until its DLQ
    backoff_base_s: float = BACKOFF_BASE_S  # a failed attempt's first back-off (jobcore.runner.Backoff)
    observability: ObservabilitySettings = ObservabilitySettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerSettings:
        lanes = LaneSettings.from_env(env)
        lane = _required(env, "LANE")
        queued = [spec.name for spec in lanes.lanes.worker_lanes()]
        if lane not in queued:
            raise ConfigError(f"environment variable LANE={lane!r} must be an enabled worker lane of LANES ({', '.join(queued)})")
        return cls(
            stage=env.get("STAGE") or "dev",
            lane=lane,
            queue_url=_required(env, "QUEUE_URL"),
            jobs_table=_required(env, "JOBS_TABLE"), index_shards=_index_shards(env),
            results_bucket=_required(env, "RESULTS_BUCKET"),
            webhook_queue_url=_required(env, "WEBHOOK_QUEUE_URL"),
            result_retention_days=_retention(env),
            max_receives=_in_range(env, "MAX_RECEIVES", _number(env, "MAX_RECEIVES", 5, int), 1, 1000),
            visibility_timeout_s=_in_range(env, "VISIBILITY_TIMEOUT_S", _number(env, "VISIBILITY_TIMEOUT_S", 300, int),
                                           1, SQS_MAX_VISIBILITY_S),
            claude=ClaudeSettings.from_env(env, key_in_secret=False),
            lanes=lanes,
            embedding=EmbeddingSettings.from_env(env),
            ecs_agent_uri=env.get("ECS_AGENT_URI") or None,
            poll_wait_s=_in_range(env, "POLL_WAIT_S", _number(env, "POLL_WAIT_S", SQS_MAX_WAIT_S, int), 0, SQS_MAX_WAIT_S),
            model_wait_limit_s=_in_range(env, "MODEL_WAIT_LIMIT_S", _number(env, "MODEL_WAIT_LIMIT_S", MODEL_WAIT_LIMIT_S, int),
                                         0, 7 * 86_400),
            lease_s=_in_range(env, "LEASE_S", _number(env, "LEASE_S", LEASE_S, int), 6, 3600),
            malformed_retry_s=_in_range(env, "MALFORMED_RETRY_S", _number(env, "MALFORMED_RETRY_S", MALFORMED_RETRY_S, int),
                                        0, SQS_MAX_VISIBILITY_S),
            backoff_base_s=_backoff_base_s(env),
            observability=ObservabilitySettings.from_env(env),
        )

    @property
    def concurrency(self) -> int:
        """Jobs this worker runs at once: its lane's."""
        return self.lanes.lanes.get(self.lane).concurrency


@dataclass(frozen=True, kw_only=True)
class SweeperSettings:
    """What the sweeper needs: the jobs, each queued lane's queue and dead-letter queue, the lanes (to
    re-queue a stale job on its lane), the webhook queue (a settled job's webhook) and MAX_RECEIVES."""

    ENV = frozenset({
        "STAGE", "JOBS_TABLE", "INDEX_SHARDS", "RESULTS_BUCKET", "LANE_QUEUE_URLS", "LANE_DLQ_URLS", "WEBHOOK_QUEUE_URL", "MAX_RECEIVES",
    }) | LaneSettings.CODE_ENV
    # LANES: as RouterSettings.LOCAL_ENV says
    LOCAL_ENV: frozenset[str] = frozenset({"SWEEP_EVERY_S", "LANES"}) | ObservabilitySettings.LOCAL_ENV

    stage: str
    jobs_table: str
    index_shards: IndexShards = dataclasses.field(default_factory=IndexShards)  # INDEX_SHARDS
    results_bucket: str
    queue_urls: dict[str, str]
    dlq_urls: dict[str, str]
    webhook_queue_url: str
    max_receives: int
    lanes: LaneSettings
    sweep_every_s: float
    observability: ObservabilitySettings = ObservabilitySettings()  # metrics only: the sweeper traces nothing

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SweeperSettings:
        lanes = LaneSettings.from_env(env, in_code=True)
        return cls(
            stage=env.get("STAGE") or "dev",
            jobs_table=_required(env, "JOBS_TABLE"), index_shards=_index_shards(env),
            results_bucket=_required(env, "RESULTS_BUCKET"),
            queue_urls=_queue_urls(env, lanes.lanes),
            dlq_urls=_queue_urls(env, lanes.lanes, key="LANE_DLQ_URLS"),
            webhook_queue_url=_required(env, "WEBHOOK_QUEUE_URL"),
            max_receives=_in_range(env, "MAX_RECEIVES", _number(env, "MAX_RECEIVES", 5, int), 1, 1000),
            lanes=lanes,
            sweep_every_s=_in_range(env, "SWEEP_EVERY_S", _number(env, "SWEEP_EVERY_S", 60.0, float), 0.1, 900.0),
            observability=ObservabilitySettings(metrics_file=env.get("METRICS_FILE", "")),
        )


@dataclass(frozen=True, kw_only=True)
class CollectorSettings:
    """What the batch collector needs (jobcore.batches): the batch lane's queue (it drains it, and puts jobs back
    on it), the jobs and their batch records, results, the webhook queue, Claude (the Message Batches API,
    the key from Secrets Manager in AWS), the window and the bound on batches per job."""

    ENV = frozenset({
        "STAGE", "JOBS_TABLE", "INDEX_SHARDS", "RESULTS_BUCKET", "BATCH_QUEUE_URL", "WEBHOOK_QUEUE_URL", "RESULT_RETENTION_DAYS",
        "JOB_TTL_DAYS", "MODEL_ID", "ANTHROPIC_SECRET_ARN", "BATCH_WINDOW_S", "BATCH_MAX_ATTEMPTS",
    }) | LaneSettings.CODE_ENV
    # LANES: as RouterSettings.LOCAL_ENV says
    LOCAL_ENV = (frozenset({"ANTHROPIC_BASE_URL", "COLLECT_EVERY_S", "LANES"}) | ClaudeSettings.CAPACITY_ENV
                 | ObservabilitySettings.LOCAL_ENV)

    stage: str
    lane: str  # the batch lane of LANES
    jobs_table: str
    index_shards: IndexShards = dataclasses.field(default_factory=IndexShards)  # INDEX_SHARDS
    results_bucket: str
    queue_url: str
    webhook_queue_url: str
    result_retention_days: int | None
    job_ttl_days: int
    claude: ClaudeSettings
    lanes: LaneSettings
    window_s: int
    max_attempts: int
    collect_every_s: float = 60.0
    observability: ObservabilitySettings = ObservabilitySettings()  # metrics only

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CollectorSettings:
        lanes = LaneSettings.from_env(env, in_code=True)
        lane = lanes.lanes.batch_lane
        if lane is None:
            raise ConfigError("environment variable LANES has no enabled batch lane for the collector to drain")
        return cls(
            stage=env.get("STAGE") or "dev",
            lane=lane.name,
            jobs_table=_required(env, "JOBS_TABLE"), index_shards=_index_shards(env),
            results_bucket=_required(env, "RESULTS_BUCKET"),
            queue_url=_required(env, "BATCH_QUEUE_URL"),
            webhook_queue_url=_required(env, "WEBHOOK_QUEUE_URL"),
            result_retention_days=_retention(env),
            job_ttl_days=_in_range(env, "JOB_TTL_DAYS", _number(env, "JOB_TTL_DAYS", 30, int), 1, 3650),
            claude=ClaudeSettings.from_env(env, key_in_secret=True),
            lanes=lanes,
            window_s=_in_range(env, "BATCH_WINDOW_S", _number(env, "BATCH_WINDOW_S", 0, int), 0, 3600),
            max_attempts=_in_range(env, "BATCH_MAX_ATTEMPTS", _number(env, "BATCH_MAX_ATTEMPTS", 3, int), 1, 10),
            collect_every_s=_in_range(env, "COLLECT_EVERY_S", _number(env, "COLLECT_EVERY_S", 60.0, float), 0.1, 900.0),
            observability=ObservabilitySettings(metrics_file=env.get("METRICS_FILE", "")),
        )


def _lane_document(env: Mapping[str, str]) -> dict:
    """LANES (the document) or LANES_FILE (a JSON file holding it, relative to :data:`CODE_ROOT`), not both."""
    name = env.get("LANES_FILE", "")
    if not name:
        return _json_object(env, "LANES", required=True)
    if env.get("LANES"):
        raise ConfigError("environment variables LANES and LANES_FILE: set one, the lanes or the file holding them")
    path = CODE_ROOT / name
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"environment variable LANES_FILE={name!r}: cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"environment variable LANES_FILE={name!r}: {path} is not valid JSON: {error.msg}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"environment variable LANES_FILE={name!r}: {path} must hold a JSON object")
    return value


def _retention(env: Mapping[str, str]) -> int | None:
    if not env.get("RESULT_RETENTION_DAYS"):
        return None
    return _in_range(env, "RESULT_RETENTION_DAYS", _number(env, "RESULT_RETENTION_DAYS", 30, int), 1, 3650)


def _queue_urls(env: Mapping[str, str], lanes: Lanes, *, key: str = "LANE_QUEUE_URLS") -> dict[str, str]:
    urls = _json_object(env, key, required=True)
    wanted = {lane.name for lane in lanes.queued()}
    if set(urls) != wanted or not all(isinstance(url, str) and url for url in urls.values()):
        raise ConfigError(f"environment variable {key} must give a queue URL for each enabled queued lane "
                          f"({', '.join(sorted(wanted))}), and for no other; it has {', '.join(sorted(urls)) or 'none'}")
    return urls


def _lane_services(env: Mapping[str, str], lanes: Lanes) -> dict[str, LaneService]:
    """LANE_SERVICES: ``{"<worker lane>": "<its ECS service's ARN>"}`` for some of the enabled worker lanes (a lane
    left out is not woken), none other. The cluster is read from the (long-format) ARN; a plain name is a service
    of the default cluster."""
    raw = _json_object(env, "LANE_SERVICES")
    workers = {lane.name for lane in lanes.worker_lanes()}
    services = {}
    for lane, service in raw.items():
        if lane not in workers:
            raise ConfigError(f"environment variable LANE_SERVICES: {lane!r} is not an enabled worker lane "
                              f"({', '.join(sorted(workers))})")
        if not isinstance(service, str) or not service:
            raise ConfigError(f"environment variable LANE_SERVICES: {lane!r} must be its ECS service's ARN")
        services[lane] = LaneService.from_arn(service)
    return services


def _budgets(env: Mapping[str, str]) -> dict[str, float]:
    try:
        return tenant_budgets(_json_object(env, "TENANT_BUDGETS_USD"))
    except ValueError as error:
        raise ConfigError(f"environment variable TENANT_BUDGETS_USD: {error}") from None


def _rates(env: Mapping[str, str]) -> dict[str, float]:
    try:
        return arrival_rates(_json_object(env, "TASK_RATES_PER_MIN"))
    except ValueError as error:
        raise ConfigError(f"environment variable TASK_RATES_PER_MIN: {error}") from None
