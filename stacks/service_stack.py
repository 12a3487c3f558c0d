"""The stateless stack: API, router, queues, workers and monitoring. Safe to destroy and redeploy."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import PipelineConfig
from stacks.constructs.api import JobsApi
from stacks.constructs.cluster import WorkerCluster
from stacks.constructs.compute import FargateSpot, GpuInstances
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.monitoring import PipelineMonitoring
from stacks.constructs.router import RouterFunction
from stacks.constructs.worker_service import WorkerService
from stacks.data_stack import DataStack

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKER_DOCKERFILE = "container_src/Dockerfile"  # built with the repo root as context (see .dockerignore)
_R = logs.RetentionDays
LOG_RETENTION: dict[int, logs.RetentionDays] = {
    1: _R.ONE_DAY, 3: _R.THREE_DAYS, 5: _R.FIVE_DAYS, 7: _R.ONE_WEEK, 14: _R.TWO_WEEKS, 30: _R.ONE_MONTH,
    60: _R.TWO_MONTHS, 90: _R.THREE_MONTHS, 120: _R.FOUR_MONTHS, 150: _R.FIVE_MONTHS, 180: _R.SIX_MONTHS,
    365: _R.ONE_YEAR, 400: _R.THIRTEEN_MONTHS, 545: _R.EIGHTEEN_MONTHS, 731: _R.TWO_YEARS, 1096: _R.THREE_YEARS,
    1827: _R.FIVE_YEARS, 2192: _R.SIX_YEARS, 2557: _R.SEVEN_YEARS, 2922: _R.EIGHT_YEARS, 3288: _R.NINE_YEARS,
    3653: _R.TEN_YEARS,
}


def pricing_environment(config: PipelineConfig) -> dict[str, str]:
    """The cost model's inputs (``CostSettings.ENV``), the same for the router and every worker: the sizes
    each lane is priced with and the operator's price overrides."""
    return {
        "ROUTER_MEMORY_MB": str(config.router_memory_mb),
        "WORKER_VCPU": f"{config.worker_cpu / 1024:g}",
        "WORKER_MEMORY_MB": str(config.worker_memory_mb),
        "WORKER_CONCURRENCY": str(config.worker_concurrency),
        "GPU_INSTANCE_TYPE": config.gpu_instance_type,
        "FARGATE_SPOT": "true",  # the CPU lane runs on Fargate Spot first (FargateSpot)
        "PRICE_OVERRIDES": json.dumps(config.price_overrides, sort_keys=True, separators=(",", ":")),
    }


class ServiceStack(Stack):
    """Composes the lanes (queue + worker per lane: cpu always, gpu when enabled), the router and its API,
    and monitoring, on the data stack's table, bucket and secrets."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, data: DataStack,
                 **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        c = config
        retention = LOG_RETENTION[c.log_retention_days]
        storage, secrets = data.storage, data.secrets
        pricing = pricing_environment(c)
        lanes = {"cpu": JobQueue(self, "CpuLane", visibility_timeout=Duration.seconds(c.cpu_job_timeout_s),
                                 max_receive_count=c.max_receives)}
        if c.gpu_enabled:
            lanes["gpu"] = JobQueue(self, "GpuLane", visibility_timeout=Duration.seconds(c.gpu_job_timeout_s),
                                    max_receive_count=c.max_receives)

        router = RouterFunction(
            self, "Router", storage=storage, lanes=lanes,
            anthropic_secret=secrets.anthropic_api_key, webhook_secret=secrets.webhook_signing_secret,
            stage=c.stage, model_id=c.model_id, inline_budget_s=c.inline_budget_s, memory_mb=c.router_memory_mb,
            timeout=Duration.seconds(c.router_timeout_s), reserved_concurrency=c.router_reserved_concurrency,
            gpu_memory_mb=c.gpu_memory_mb, job_ttl_days=c.job_ttl_days, task_rates_per_min=c.task_rates_per_min,
            pricing_environment=pricing, log_retention=retention)
        api = JobsApi(self, "Api", handler=router.function, stage_name=c.stage, rate_limit=c.api_rate_limit,
                      burst_limit=c.api_burst_limit, log_retention=retention)

        cluster = WorkerCluster(self, "Workers", log_retention=retention)
        image = ecs.ContainerImage.from_docker_image_asset(ecr_assets.DockerImageAsset(
            self, "WorkerImage", directory=str(REPO_ROOT), file=WORKER_DOCKERFILE,
            platform=ecr_assets.Platform.LINUX_AMD64))
        shared = dict(cluster=cluster, image=image, storage=storage, stage=c.stage,
                      model_id=c.worker_model_id, anthropic_secret=secrets.anthropic_api_key,
                      webhook_secret=secrets.webhook_signing_secret, pricing_environment=pricing,
                      log_retention=retention)
        workers = {"cpu": WorkerService(
            self, "CpuWorker", lane="cpu", job_queue=lanes["cpu"], **shared,
            compute=FargateSpot(cpu=c.worker_cpu, memory_mb=c.worker_memory_mb, on_demand_base=c.worker_on_demand_base),
            concurrency=c.worker_concurrency, min_tasks=c.worker_min_tasks, max_tasks=c.worker_max_tasks)}
        if c.gpu_enabled:
            workers["gpu"] = WorkerService(
                self, "GpuWorker", lane="gpu", job_queue=lanes["gpu"], **shared,
                compute=GpuInstances(instance_type=c.gpu_instance_type, ami_release=c.gpu_ami_release, cpu=c.gpu_cpu,
                                     memory_mb=c.gpu_memory_mb, max_instances=c.gpu_max_tasks),
                concurrency=c.gpu_concurrency, min_tasks=0, max_tasks=c.gpu_max_tasks)

        PipelineMonitoring(self, "Monitoring", alarm_email=c.alarm_email, router=router.function, api=api.api,
                           workers=workers)

        CfnOutput(self, "ApiUrl", value=api.api.url, description="Base URL; jobs are at <ApiUrl>v1/jobs")
        CfnOutput(self, "ApiKeyId", value=api.api_key.key_id)
        CfnOutput(self, "GetApiKeyCommand", value=(
            f"aws apigateway get-api-key --api-key {api.api_key.key_id} --include-value --query value --output text"))
        for lane, job_queue in lanes.items():
            CfnOutput(self, f"{lane.capitalize()}QueueUrl", value=job_queue.queue.queue_url)
            CfnOutput(self, f"{lane.capitalize()}DeadLetterQueueUrl", value=job_queue.dead_letter_queue.queue_url)
