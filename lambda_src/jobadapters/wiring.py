"""Settings → clients → core: the one place the router, the worker and the local runtime wire up."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from jobadapters import request_time
from jobadapters.bedrock import BedrockModel
from jobadapters.breaker_store import DynamoBreakerStore
from jobadapters.capacity_store import DynamoCapacityStore
from jobadapters.claude import AnthropicModel, api_key_source
from jobadapters.dynamo import DynamoBatchStore, DynamoInlineSlots, DynamoJobStore, DynamoUsageStore
from jobadapters.ecs import EcsLaneWaker, LaneService
from jobadapters.observer import Telemetry, TracedModel, telemetry_for
from jobadapters.request_time import RequestDeadline
from jobadapters.s3 import S3BlobStore
from jobadapters.schema import IndexShards
from jobadapters.settings import (
    ClaudeSettings,
    CollectorSettings,
    ConfigError,
    DispatcherSettings,
    IntakeSettings,
    RouterSettings,
    SweeperSettings,
)
from jobadapters.sqs import SqsBatchInbox, SqsDeadLetters, SqsDeliveryQueue, SqsJobQueue
from jobadapters.webhook_sender import HttpWebhookSender
from jobcore.breaker import BreakerPolicy, Breakers, MemoryBreakerStore
from jobcore.capacity_pacer import PacedModel, Pacer
from jobcore.context import JobContext
from jobcore.costing import CostModel
from jobcore.dispatch import Dispatcher
from jobcore.failover import FailoverModel
from jobcore.lanes import Lanes
from jobcore.limits import BACKOFF_BASE_S, LEASE_S, MODEL_WAIT_LIMIT_S, SQS_MAX_WAIT_S
from jobcore.observing import QUIET
from jobcore.ports import LanguageModel
from jobcore.pricing import Prices
from jobcore.providers import ANTHROPIC, BEDROCK, DEFAULT_PROVIDERS
from jobcore.routing import RoutingPolicy
from jobcore.runner import Backoff, JobRunner
from jobcore.service import JobService
from jobcore.sweeper import Sweeper
from jobcore.views import render, with_base_path
from jobcore.wake import GatedWaker, WakeGate

if TYPE_CHECKING:  # the batch lane's parts, imported by the collector only: the router's cold start skips them
    from jobcore.batches import Collector

# The inline path retries within its own deadline (jobcore.deadline); workers let the SDK retry.
INLINE_SDK_RETRIES = 0
WORKER_SDK_RETRIES = 3
WORKER_CALL_TIMEOUT_S = 300.0


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class AwsClients:
    """boto3 clients, made once per process; AWS_ENDPOINT_URL points them at moto locally."""

    table: Any
    sqs: Any
    s3: Any
    shards: IndexShards = IndexShards()  # the table's indexes' shards (INDEX_SHARDS), for every store over it

    @classmethod
    def create(cls, table_name: str, *, shards: IndexShards | None = None, max_pool_connections: int = 10,
               deadline: RequestDeadline | None = None) -> AwsClients:
        """``max_pool_connections``: connections each client keeps open (botocore's default is 10); a process
        calling from more threads at once (a worker with many slots) needs one per thread, or it opens and
        discards a connection per call beyond them. ``deadline``: the clients of a request's path (the
        router's), bounded by :mod:`jobadapters.request_time` and by the request's time left."""
        # Every AWS call is bounded: a stalled connection must not outlast a request's budget or a worker's
        # stop timeout. SQS's read timeout leaves room for its 20 s long poll (a worker's; a request never polls).
        pool = Config(max_pool_connections=max_pool_connections)
        if deadline is None:
            bounded = pool.merge(Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}))
            sqs_config = bounded.merge(Config(read_timeout=SQS_MAX_WAIT_S + 10))
        else:
            bounded = sqs_config = pool.merge(request_time.CONFIG)
        sqs = boto3.client("sqs", config=sqs_config)
        # SigV4 for presigned result URLs: buckets created since mid-2020 refuse the older SigV2.
        s3 = boto3.client("s3", config=bounded.merge(Config(signature_version="s3v4")))
        clients = cls(boto3.resource("dynamodb", config=bounded).Table(table_name), sqs, s3, shards or IndexShards())
        if deadline is not None:
            for client in (clients.table, clients.sqs, clients.s3):
                deadline.bind(client)
        return clients


def build_pacer(settings: ClaudeSettings, clients: AwsClients) -> Pacer | None:
    """This process's admission to the model's shared budget (jobcore.capacity_pacer); None when nothing is paced."""
    if not settings.capacity.active:
        return None
    return Pacer(DynamoCapacityStore(clients.table), settings.capacity, clock_ms)



def build_model(settings: ClaudeSettings, *, max_retries: int, timeout_s: float, env: Mapping[str, str] = os.environ,
                pacer: Pacer | None = None, table: Any = None, telemetry: Telemetry | None = None,
                lane: str = "", prices: Prices | None = None) -> LanguageModel:
    """The model: the Anthropic API alone (the default), or the providers in order behind FailoverModel, their
    breakers shared through the jobs ``table`` (a process's own without one). With a ``pacer``, every Anthropic
    call waits for a grant of Anthropic's budget and the SDK does not retry (its blind retries of a 429 are what the
    pacer replaces): a refusal or failure goes to the next provider, or to the runner, which decides. With
    ``telemetry``, each provider call is a span (inside the pacer: a wait for a grant is not the model's time).
    ``prices``: the deployment's (PRICE_OVERRIDES applied, as the CDK app's grants and the costing use them), whose
    Bedrock table maps each model to its inference profile; needed with the Bedrock provider."""
    if settings.providers == DEFAULT_PROVIDERS:
        return _provider_model(ANTHROPIC, settings, max_retries=max_retries, timeout_s=timeout_s, env=env, pacer=pacer,
                               telemetry=telemetry, lane=lane, prices=prices)
    models = [(name, _provider_model(name, settings, max_retries=max_retries, timeout_s=timeout_s, env=env, pacer=pacer,
                                     telemetry=telemetry, lane=lane, prices=prices))
              for name in settings.providers]
    breakers = None
    if len(models) > 1:
        store = MemoryBreakerStore() if table is None else DynamoBreakerStore(table)
        breakers = Breakers(store, BreakerPolicy(cool_down_ms=int(settings.breaker_cool_down_s * 1000)), clock_ms)
    return FailoverModel(models, breakers)


def _provider_model(name: str, settings: ClaudeSettings, *, max_retries: int, timeout_s: float,
                    env: Mapping[str, str], pacer: Pacer | None = None, telemetry: Telemetry | None = None,
                    lane: str = "", prices: Prices | None = None) -> LanguageModel:
    def traced(model: LanguageModel) -> LanguageModel:
        return model if telemetry is None else TracedModel(model, telemetry, lane=lane, provider=name)

    if name == ANTHROPIC:
        # Each provider has its own budget (jobcore.capacity): Anthropic's, which its rate-limit headers correct, and
        # Bedrock's (bedrock_rate_limits: its quotas per profile and Region, configured only; it sends no headers).
        key = api_key_source(base_url=settings.base_url, secret_arn=settings.secret_arn, env=env)
        if pacer is None:
            return traced(AnthropicModel(api_key=key, base_url=settings.base_url, timeout_s=timeout_s, max_retries=max_retries))
        llm = AnthropicModel(api_key=key, base_url=settings.base_url, timeout_s=timeout_s, max_retries=0, observer=pacer.observe)
        return PacedModel(traced(llm), pacer, settings.model_id)
    if not settings.region:
        raise ConfigError("the Bedrock provider needs the process's Region (AWS_REGION)")
    if prices is None:
        raise ConfigError("the Bedrock provider needs the deployment's prices (their Bedrock table, PRICE_OVERRIDES applied)")
    profiles = {model_id: scopes[settings.bedrock_scope].id
                for model_id, scopes in prices.claude.bedrock.items() if settings.bedrock_scope in scopes}
    if pacer is None or not pacer.config.bedrock:
        return traced(BedrockModel(region=settings.region, profiles=profiles, base_url=settings.bedrock_base_url,
                                   timeout_s=timeout_s, max_retries=max_retries))
    bedrock = BedrockModel(region=settings.region, profiles=profiles, base_url=settings.bedrock_base_url,
                           timeout_s=timeout_s, max_retries=0)
    return PacedModel(traced(bedrock), pacer, settings.model_id, provider=BEDROCK)


def build_runner(
    clients: AwsClients, bucket: str, webhook_queue_url: str, lanes: Lanes, *, cost_model: CostModel | None,
    role: str, result_retention_days: int | None = None, model_wait_limit_s: float = MODEL_WAIT_LIMIT_S,
    lease_s: int = LEASE_S, backoff_base_s: float = BACKOFF_BASE_S, telemetry: Telemetry | None = None,
) -> JobRunner:
    """The runner of the router, the workers and the sweeper: a terminal job's webhook is handed to the
    dispatcher's queue, never sent from here; its usage is added to its tenant's counters. ``role`` names this
    process in the leases it takes."""
    context = JobContext(
        store=DynamoJobStore(clients.table, shards=clients.shards, telemetry=telemetry),
        blobs=S3BlobStore(clients.s3, bucket, telemetry=telemetry), clock_ms=clock_ms,
        lanes=lanes, usage=DynamoUsageStore(clients.table), observer=telemetry if telemetry is not None else QUIET,
    )
    return JobRunner(
        context=context, deliveries=SqsDeliveryQueue(clients.sqs, webhook_queue_url), cost_model=cost_model,
        owner=lease_owner(role), result_retention_days=result_retention_days, model_wait_limit_s=model_wait_limit_s,
        lease_ms=lease_s * 1000, backoff=Backoff(base_s=backoff_base_s),
    )


def lease_owner(role: str) -> str:
    """A name for this process that no other shares: its role, host and a random part."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def build_sweeper(settings: SweeperSettings, clients: AwsClients) -> tuple[Sweeper, dict[str, SqsDeadLetters]]:
    runner = build_runner(clients, settings.results_bucket, settings.webhook_queue_url, settings.lanes.lanes,
                          cost_model=None, role="sweeper",
                          telemetry=telemetry_for("sweeper", settings.observability, stage=settings.stage))
    sweeper = Sweeper(runner=runner, queue=SqsJobQueue(clients.sqs, settings.queue_urls), max_attempts=settings.max_receives)
    return sweeper, {lane: SqsDeadLetters(clients.sqs, url) for lane, url in settings.dlq_urls.items()}


def build_collector(settings: CollectorSettings, clients: AwsClients, *, keep_going: Callable[[], bool] = lambda: True,
                    env: Mapping[str, str] = os.environ) -> Collector:
    """The batch lane's collector: the Message Batches API through the SDK (the stand-in locally), the batch
    records next to the jobs, the batch lane's queue to drain and to put jobs back on."""
    from jobadapters.batches import AnthropicBatches
    from jobcore.batches import Collector

    runner = build_runner(clients, settings.results_bucket, settings.webhook_queue_url, settings.lanes.lanes,
                          cost_model=settings.lanes.cost_model(), role="collector",
                          result_retention_days=settings.result_retention_days,
                          telemetry=telemetry_for("collector", settings.observability, stage=settings.stage))
    claude = settings.claude
    api = AnthropicBatches(api_key=api_key_source(base_url=claude.base_url, secret_arn=claude.secret_arn, env=env),
                           base_url=claude.base_url)
    return Collector(
        runner=runner, batches=DynamoBatchStore(clients.table, ttl_days=settings.job_ttl_days), api=api,
        inbox=SqsBatchInbox(clients.sqs, settings.queue_url), queue=SqsJobQueue(clients.sqs, {settings.lane: settings.queue_url}),
        model_id=claude.model_id, lane=settings.lane, window_s=settings.window_s, max_batch_attempts=settings.max_attempts,
        keep_going=keep_going,
    )


def build_service(settings: RouterSettings, clients: AwsClients, *, env: Mapping[str, str] = os.environ,
                  telemetry: Telemetry | None = None) -> JobService:
    cost_model = settings.lanes.cost_model()
    lanes = settings.lanes.lanes
    telemetry = telemetry or telemetry_for("router", settings.observability, stage=settings.stage)
    runner = build_runner(clients, settings.results_bucket, settings.webhook_queue_url, lanes, cost_model=cost_model,
                          role="router", result_retention_days=settings.result_retention_days,
                          backoff_base_s=settings.backoff_base_s, telemetry=telemetry)
    inline_budget_s = lanes.inline.time_limit_s
    pacer = build_pacer(settings.claude, clients)
    return JobService(
        context=runner.context, runner=runner, queue=SqsJobQueue(clients.sqs, settings.queue_urls),
        policy=RoutingPolicy(lanes=lanes), model_id=settings.claude.model_id,
        llm=build_model(settings.claude, max_retries=INLINE_SDK_RETRIES, timeout_s=inline_budget_s, env=env, pacer=pacer,
                        table=clients.table, telemetry=telemetry, lane=lanes.inline.name, prices=settings.lanes.prices),
        pacer=pacer, budgets_usd=settings.budgets_usd,
        new_id=new_job_id, monotonic=time.monotonic, sleep=time.sleep, job_ttl_days=settings.job_ttl_days,
        allow_http_webhooks=settings.allow_loopback_webhooks,
        cost_model=cost_model, arrival_rates_per_min=settings.task_rates_per_min,
        uploads=S3BlobStore(clients.s3, settings.results_bucket),  # the runner's bucket, as an UploadStore
        waker=build_waker(settings.lane_services, lanes),
        inline_slots=None if settings.inline_concurrency is None else DynamoInlineSlots(clients.table, limit=settings.inline_concurrency),
    )


def build_waker(services: Mapping[str, LaneService], lanes: Lanes, *, client: Any = None) -> GatedWaker | None:
    """The idle-lane waker (jobcore.wake) over the lanes' ECS services; None where none is configured (locally)."""
    if not services:
        return None
    return GatedWaker(EcsLaneWaker(client, services), lanes=lanes, gate=WakeGate(monotonic=time.monotonic))


@dataclass(frozen=True)
class Intake:
    """The S3 intake's parts: the job service it submits through, where intake objects are read, who owns them."""

    service: JobService
    s3: Any
    tenant_id: str
    webhook_url: str

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def build_intake(settings: IntakeSettings, clients: AwsClients, *, env: Mapping[str, str] = os.environ) -> Intake:
    """The intake submits like the router (its jobs are async: never inline, so the model is never called here)."""
    return Intake(build_service(settings.router, clients, env=env), clients.s3, settings.tenant_id, settings.webhook_url)


def build_dispatcher(settings: DispatcherSettings, clients: AwsClients) -> Dispatcher:
    blobs = S3BlobStore(clients.s3, settings.results_bucket)
    return Dispatcher(
        store=DynamoJobStore(clients.table, shards=clients.shards), blobs=blobs, queue=SqsDeliveryQueue(clients.sqs, settings.queue_url),
        sender=HttpWebhookSender(secret=_webhook_secret(settings), clock_ms=clock_ms, allow_loopback=settings.allow_loopback),
        render=lambda job: with_base_path(render(job, blobs, now_ms=clock_ms()), settings.api_base_path),
        clock_ms=clock_ms, schedule=settings.schedule,
        sweep_every_s=settings.sweep_every_s, observer=telemetry_for("webhooks", settings.observability, stage=settings.stage),
    )


def _webhook_secret(settings: DispatcherSettings) -> Callable[[], str | None]:
    """The signing secret: from Secrets Manager, cached 5 min (AWS), or inline (the local runtime)."""
    arn = settings.secret_arn
    if arn:
        from aws_lambda_powertools.utilities import parameters

        return lambda: parameters.get_secret(arn, max_age=300)
    return lambda: settings.secret
