"""The stateless stack: API, router, queues, workers, the webhook dispatcher, the job sweeper and monitoring.
Safe to destroy and redeploy."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Annotations, CfnOutput, Duration, Stack, Token
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from jobadapters import schema
from jobcore.lanes import Ec2Compute, FargateCompute
from jobcore.limits import CPU_UNITS_PER_VCPU
from stacks import names
from stacks.config import PipelineConfig, WorkerLane
from stacks.constructs.api import JobsApi
from stacks.constructs.batch_collector import BatchCollector
from stacks.constructs.bundling import NOT_COPIED_ANYWHERE
from stacks.constructs.cluster import WorkerCluster
from stacks.constructs.compute import ComputeProfile, FargateSpot, GpuInstances
from stacks.constructs.intake import IntakeFunction
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.job_sweeper import JobSweeper
from stacks.constructs.model_access import model_access
from stacks.constructs.monitoring import PipelineMonitoring
from stacks.constructs.python_lambda import source_code
from stacks.constructs.router import RouterFunction
from stacks.constructs.webhook_dispatcher import WebhookDispatcher
from stacks.constructs.worker_service import WorkerService
from stacks.data_stack import DataStack
from stacks.gpu_ami import GpuAmiReleases, GpuInstanceRegions
from stacks.lane_env import code_files

REPO_ROOT = Path(__file__).resolve().parents[1]
# Both built with the repo root as context, for linux/amd64, each narrowed to what its Dockerfile copies
# (build_context_exclude): a change to one image's files never rebuilds and redeploys the lanes of the other.
WORKER_DOCKERFILE = "container_src/Dockerfile"  # cpu: Python slim, onnxruntime on the CPU
GPU_WORKER_DOCKERFILE = "container_src/Dockerfile.gpu"  # gpu: CUDA runtime, onnxruntime-gpu, a baked model
# The worker images by kind (stacks.config.IMAGE_KINDS): a lane names its kind; lanes of one kind share one image.
WORKER_DOCKERFILES = {"cpu": WORKER_DOCKERFILE, "gpu": GPU_WORKER_DOCKERFILE}
_R = logs.RetentionDays
LOG_RETENTION: dict[int, logs.RetentionDays] = {
    1: _R.ONE_DAY, 3: _R.THREE_DAYS, 5: _R.FIVE_DAYS, 7: _R.ONE_WEEK, 14: _R.TWO_WEEKS, 30: _R.ONE_MONTH,
    60: _R.TWO_MONTHS, 90: _R.THREE_MONTHS, 120: _R.FOUR_MONTHS, 150: _R.FIVE_MONTHS, 180: _R.SIX_MONTHS,
    365: _R.ONE_YEAR, 400: _R.THIRTEEN_MONTHS, 545: _R.EIGHTEEN_MONTHS, 731: _R.TWO_YEARS, 1096: _R.THREE_YEARS,
    1827: _R.FIVE_YEARS, 2192: _R.SIX_YEARS, 2557: _R.SEVEN_YEARS, 2922: _R.EIGHT_YEARS, 3288: _R.NINE_YEARS,
    3653: _R.TEN_YEARS,
}


class ServiceStack(Stack):
    """Composes the lanes (a queue per enabled queued lane of ``config.lanes()``; a worker service per enabled worker
    lane, ``config.worker_lanes()``; the batch collector for the batch lane when enabled), the router and its API,
    the webhook dispatcher (the router, the workers, the collector and the sweeper hand finished jobs' webhooks to
    its queue), the job sweeper (settles jobs whose runner is gone,
    drains the lanes' dead-letter queues), and monitoring, on the data stack's table, bucket and secrets.

    Each lane's workers run the image of its kind (:func:`worker_image`, one asset per kind in ``worker_images``):
    ``cpu`` from ``Dockerfile``, ``gpu`` from ``Dockerfile.gpu`` with the embedding model to bake as build args. Construct
    ids come from the lane names (:func:`stacks.names.construct_id`). With an EC2 lane on, its
    instance type and the AMI release are checked against the deploy region first (:meth:`check_gpu_region`): the stack's
    own region, or, for an environment-agnostic stack, ``default_region`` (the CDK CLI's default region,
    ``CDK_DEFAULT_REGION``, which is where ``cdk deploy`` sends such a stack)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, data: DataStack,
                 default_region: str | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        c = config
        retention = LOG_RETENTION[c.log_retention_days]
        storage, secrets = data.storage, data.secrets
        lanes = c.lanes()
        queued = lanes.queued()
        capacity = c.capacity()  # the model's budget, for the router and every worker lane
        region = self.region if not Token.is_unresolved(self.region) else default_region
        access = model_access(c.model_providers, c.bedrock_profile, c.bedrock_profiles(region))
        instance_types = list(dict.fromkeys(lane.compute.instance for lane in queued if isinstance(lane.compute, Ec2Compute)))
        if instance_types:
            self.check_gpu_region(instance_types, c.gpu_ami_release, region)
        queues = {lane.name: JobQueue(self, f"{names.construct_id(lane.name)}Lane", max_receive_count=c.max_receives,
                                      visibility_timeout=Duration.seconds(schema.queue_visibility_s(lane)))
                  for lane in queued}

        code = source_code(lanes)  # one asset for every function of the stack, the lane document in it
        self.code_files = code_files(lanes)  # what source_code generates into it
        webhooks = WebhookDispatcher(
            self, "Webhooks", code=code, storage=storage, webhook_secret=secrets.webhook_signing_secret, stage=c.stage,
            retry_schedule_s=c.webhook_retry_schedule_s, log_retention=retention, max_concurrency=c.webhook_max_concurrency,
            traces_endpoint=c.traces_endpoint)

        router = RouterFunction(
            self, "Router", code=code, storage=storage, lanes=lanes, queues=queues, webhook_queue=webhooks.job_queue,
            anthropic_secret=secrets.anthropic_api_key, model_access=access,
            stage=c.stage, model_id=c.model_id, timeout=Duration.seconds(c.router_timeout_s),
            reserved_concurrency=c.router_reserved_concurrency, job_ttl_days=c.job_ttl_days,
            result_retention_days=c.result_retention_days,
            task_rates_per_min=c.task_rates_per_min, price_overrides=c.price_overrides, log_retention=retention,
            snapstart=c.router_snapstart, provisioned_concurrency=c.router_provisioned_concurrency, capacity=capacity,
            inline_concurrency=c.inline_concurrency(),
            tenant_budgets_usd=c.tenant_budgets_usd, traces_endpoint=c.traces_endpoint)
        api = JobsApi(self, "Api", handler=router.target, stage_name=c.stage, rate_limit=c.api_rate_limit,
                      burst_limit=c.api_burst_limit, log_retention=retention)

        cluster = WorkerCluster(self, "Workers", log_retention=retention)
        self.worker_images: dict[str, ecr_assets.DockerImageAsset] = {}  # by image kind
        workers = {
            worker.name: WorkerService(
                self, f"{names.construct_id(worker.name)}Worker", cluster=cluster, image=self._image(c, worker.image),
                storage=storage, lane=worker.lane, lanes=lanes, job_queue=queues[worker.name],
                webhook_queue=webhooks.job_queue, compute=compute_profile(c, worker), min_tasks=worker.min_tasks,
                max_tasks=worker.max_tasks, stage=c.stage, model_id=c.worker_model_id,
                anthropic_secret=secrets.anthropic_api_key, model_access=access, price_overrides=c.price_overrides,
                result_retention_days=c.result_retention_days, log_retention=retention,
                model_s3_uri=c.embedding_model_s3_uri if worker.lane.gpu else "", capacity=capacity,
                traces_endpoint=c.traces_endpoint)
            for worker in c.worker_lanes()
        }
        # A job queued on an idle worker lane asks ECS for its first task at once (jobcore.wake), not a minute later.
        router.wake_lanes({lane: worker.service for lane, worker in workers.items()})
        batch_lane = lanes.batch_lane
        collector = None if batch_lane is None else BatchCollector(
            self, "Collector", code=code, storage=storage, lanes=lanes, queue=queues[batch_lane.name],
            webhook_queue=webhooks.job_queue, anthropic_secret=secrets.anthropic_api_key, stage=c.stage,
            model_id=c.worker_model_id, window_s=c.batch_window_s, max_attempts=c.batch_max_attempts,
            job_ttl_days=c.job_ttl_days, result_retention_days=c.result_retention_days,
            price_overrides=c.price_overrides, log_retention=retention, reserved_concurrency=c.collector_reserved_concurrency)
        sweeper = JobSweeper(
            self, "Sweeper", code=code, storage=storage, lanes=lanes, queues=queues, webhook_queue=webhooks.job_queue,
            stage=c.stage, max_receives=c.max_receives, price_overrides=c.price_overrides, log_retention=retention)

        intake = IntakeFunction(
            self, "Intake", code=code, storage=storage, intake=data.intake, lanes=lanes, queues=queues,
            webhook_queue=webhooks.job_queue, stage=c.stage, model_id=c.model_id, job_ttl_days=c.job_ttl_days,
            result_retention_days=c.result_retention_days, task_rates_per_min=c.task_rates_per_min,
            price_overrides=c.price_overrides, tenant_id=c.intake_tenant, webhook_url=c.intake_webhook_url,
            log_retention=retention, max_concurrency=c.intake_max_concurrency, tenant_budgets_usd=c.tenant_budgets_usd,
            traces_endpoint=c.traces_endpoint)
        intake.wake_lanes({lane: worker.service for lane, worker in workers.items()})

        PipelineMonitoring(self, "Monitoring", intake=intake, alarm_email=c.alarm_email, router=router.function, api=api.api,
                           workers=workers, webhooks=webhooks, sweeper=sweeper, collector=collector,
                           batch_open_alarm_hours=c.batch_open_alarm_hours, stage=c.stage, table=storage.table,
                           api_access_logs=api.log_group, cluster=cluster.cluster)

        CfnOutput(self, "ApiUrl", value=api.api.url, description="Base URL; jobs are at <ApiUrl>v1/jobs")
        CfnOutput(self, "ApiKeyId", value=api.api_key.key_id)
        CfnOutput(self, "GetApiKeyCommand", value=(
            f"aws apigateway get-api-key --api-key {api.api_key.key_id} --include-value --query value --output text"))
        for lane, job_queue in queues.items():
            CfnOutput(self, f"{names.construct_id(lane)}QueueUrl", value=job_queue.queue.queue_url)
            CfnOutput(self, f"{names.construct_id(lane)}DeadLetterQueueUrl", value=job_queue.dead_letter_queue.queue_url)
        if collector is not None:
            CfnOutput(self, "BatchCollectorFunctionName", value=collector.function.function_name,
                      description="The batch lane's collector (every minute); its log shows each pass")
        CfnOutput(self, "IntakeDeadLetterQueueUrl", value=data.intake.job_queue.dead_letter_queue.queue_url,
                  description="S3 intake notifications the intake function failed on 5 times (alarmed)")
        CfnOutput(self, "WebhookQueueUrl", value=webhooks.job_queue.queue.queue_url)
        CfnOutput(self, "WebhookDeadLetterQueueUrl", value=webhooks.job_queue.dead_letter_queue.queue_url,
                  description="Hand-overs the dispatcher could not process; the sweep retries pending deliveries")

    def check_gpu_region(self, instance_types: Sequence[str], release: str, region: str | None) -> None:
        """Fails synth unless ``region`` (the deploy region) offers each of ``instance_types``
        (``gpu_instance_regions.json``: :class:`stacks.gpu_ami.GpuInstanceRegionError`) and ``gpu_ami_releases.json``
        lists ``release`` for it (:class:`stacks.gpu_ami.GpuAmiReleaseError`, saying what to do); a warning when no
        region is known. Each file is read once, the release checked once."""
        if not region:
            types = ", ".join(repr(instance_type) for instance_type in instance_types)
            Annotations.of(self).add_warning_v2(
                "pipeline:gpu-ami-release-unchecked",
                f"gpu_instance_type {types} and gpu_ami_release {release!r} were not checked against a "
                "region: the stack is environment-agnostic "
                "and CDK_DEFAULT_REGION is not set. cdk deploy sets it; to check by hand, synth with AWS_REGION "
                "set or see stacks/gpu_ami_releases.json.")
            return
        offered = GpuInstanceRegions.load()
        for instance_type in instance_types:
            offered.check(instance_type, region)
        GpuAmiReleases.load().check(release, region)

    def _image(self, config: PipelineConfig, kind: str) -> ecs.ContainerImage:
        """The worker image of ``kind``, made once however many lanes run it."""
        asset = self.worker_images.get(kind)
        if asset is None:
            asset = self.worker_images[kind] = worker_image(self, config, kind)
        return ecs.ContainerImage.from_docker_image_asset(asset)


def worker_image(scope: Construct, config: PipelineConfig, kind: str, *, root: Path = REPO_ROOT) -> ecr_assets.DockerImageAsset:
    """The worker image asset of ``kind`` (``<Kind>WorkerImage``), built at ``cdk deploy`` for linux/amd64 from the
    repository root (``root``), staged and hashed with only what its Dockerfile copies (:func:`build_context_exclude`).

    ``gpu`` comes from ``Dockerfile.gpu`` and bakes ``embedding_model_repo`` at ``embedding_model_revision``
    (nothing when ``embedding_model_s3_uri`` is set: the worker loads that instead, so the image need not carry a
    model it never reads).
    """
    dockerfile = WORKER_DOCKERFILES[kind]
    return ecr_assets.DockerImageAsset(
        scope, f"{names.construct_id(kind)}WorkerImage", directory=str(root), file=dockerfile,
        exclude=build_context_exclude(root / dockerfile, root=root), platform=ecr_assets.Platform.LINUX_AMD64,
        build_args=gpu_build_args(config) if kind == "gpu" else None)


def copied_sources(dockerfile: Path) -> list[str]:
    """The build-context paths a Dockerfile's ``COPY`` instructions read (not ``COPY --from`` a stage)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text(encoding="utf-8"))
    sources: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words[1:-1] if not word.startswith("--")]  # the last word is the destination
    return sources


def build_context_exclude(dockerfile: Path, *, root: Path = REPO_ROOT) -> list[str]:
    """Patterns (Docker's, after .dockerignore's) that leave in the context only ``dockerfile`` and what it copies,
    without caches or tests. CDK stages and hashes the context after them, so each image's hash covers its own
    files, the shared packages and .dockerignore, and nothing only the other image reads."""
    keep = [dockerfile.relative_to(root).as_posix(), *copied_sources(dockerfile)]
    return ["*", *(f"!{path}/" if (root / path).is_dir() else f"!{path}" for path in keep), *NOT_COPIED_ANYWHERE]


def gpu_build_args(config: PipelineConfig) -> dict[str, str]:
    """Dockerfile.gpu's build args: the model to bake (an empty repo bakes nothing)."""
    return {
        "EMBEDDING_MODEL_REPO": "" if config.embedding_model_s3_uri else config.embedding_model_repo,
        "EMBEDDING_MODEL_REVISION": config.embedding_model_revision,
    }


def compute_profile(config: PipelineConfig, worker: WorkerLane) -> ComputeProfile:
    """Where a worker lane's tasks run: its compute, as the lane describes it, with what the deployment adds for it
    (Spot base and weight, on-demand fallback, the GPU AMI release, task CPU)."""
    lane, compute = worker.lane, worker.lane.compute
    if isinstance(compute, FargateCompute):
        return FargateSpot(cpu=int(compute.vcpu * CPU_UNITS_PER_VCPU), memory_mb=compute.memory_mb,
                           on_demand_base=worker.on_demand_base, on_demand_weight=worker.on_demand_weight,
                           spot_fallback_after_s=worker.spot_fallback_after_s if worker.has_on_demand_fallback else 0,
                           on_demand_only=worker.on_demand_only)
    if isinstance(compute, Ec2Compute):
        return GpuInstances(instance_type=compute.instance, ami_release=config.gpu_ami_release, cpu=worker.task_cpu,
                            memory_mb=lane.memory_mb, max_instances=worker.max_tasks)
    raise ValueError(f"lanes.{lane.name}: no compute profile for {compute.kind!r} workers")
