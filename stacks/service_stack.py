"""The stateless stack: API, router, queues, workers, the webhook dispatcher, the job sweeper and monitoring.
Safe to destroy and redeploy."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from jobcore.lanes import Ec2Compute, FargateCompute, Lane
from jobcore.limits import CPU_UNITS_PER_VCPU
from stacks.config import PipelineConfig
from stacks.constructs.api import JobsApi
from stacks.constructs.cluster import WorkerCluster
from stacks.constructs.compute import ComputeProfile, FargateSpot, GpuInstances
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.job_sweeper import JobSweeper
from stacks.constructs.monitoring import PipelineMonitoring
from stacks.constructs.python_lambda import source_code
from stacks.constructs.router import RouterFunction
from stacks.constructs.webhook_dispatcher import WebhookDispatcher
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


class ServiceStack(Stack):
    """Composes the lanes (a queue and a worker service per enabled queued lane of ``config.lanes()``: cpu
    always, gpu when enabled), the router and its API, the webhook dispatcher (the router, the workers and the
    sweeper hand finished jobs' webhooks to its queue), the job sweeper (settles jobs whose runner is gone,
    drains the lanes' dead-letter queues), and monitoring, on the data stack's table, bucket and secrets."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, data: DataStack,
                 **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        c = config
        retention = LOG_RETENTION[c.log_retention_days]
        storage, secrets = data.storage, data.secrets
        lanes = c.lanes()
        queued = lanes.queued()
        queues = {lane.name: JobQueue(self, f"{lane.name.capitalize()}Lane", max_receive_count=c.max_receives,
                                      visibility_timeout=Duration.seconds(int(lane.time_limit_s)))
                  for lane in queued}

        code = source_code()  # one asset for every function of the stack
        webhooks = WebhookDispatcher(
            self, "Webhooks", code=code, storage=storage, webhook_secret=secrets.webhook_signing_secret, stage=c.stage,
            retry_schedule_s=c.webhook_retry_schedule_s, log_retention=retention)

        router = RouterFunction(
            self, "Router", code=code, storage=storage, lanes=lanes, queues=queues, webhook_queue=webhooks.job_queue,
            anthropic_secret=secrets.anthropic_api_key,
            stage=c.stage, model_id=c.model_id, timeout=Duration.seconds(c.router_timeout_s),
            reserved_concurrency=c.router_reserved_concurrency, job_ttl_days=c.job_ttl_days,
            result_retention_days=c.result_retention_days,
            task_rates_per_min=c.task_rates_per_min, price_overrides=c.price_overrides, log_retention=retention)
        api = JobsApi(self, "Api", handler=router.function, stage_name=c.stage, rate_limit=c.api_rate_limit,
                      burst_limit=c.api_burst_limit, log_retention=retention)

        cluster = WorkerCluster(self, "Workers", log_retention=retention)
        image = ecs.ContainerImage.from_docker_image_asset(ecr_assets.DockerImageAsset(
            self, "WorkerImage", directory=str(REPO_ROOT), file=WORKER_DOCKERFILE,
            platform=ecr_assets.Platform.LINUX_AMD64))
        workers = {
            lane.name: WorkerService(
                self, f"{lane.name.capitalize()}Worker", cluster=cluster, image=image, storage=storage,
                lane=lane, lanes=lanes, job_queue=queues[lane.name], webhook_queue=webhooks.job_queue,
                compute=compute_profile(c, lane), min_tasks=c.min_tasks(lane.name), max_tasks=c.max_tasks(lane.name),
                stage=c.stage, model_id=c.worker_model_id, anthropic_secret=secrets.anthropic_api_key,
                price_overrides=c.price_overrides, result_retention_days=c.result_retention_days,
                log_retention=retention)
            for lane in queued
        }
        sweeper = JobSweeper(
            self, "Sweeper", code=code, storage=storage, lanes=lanes, queues=queues, webhook_queue=webhooks.job_queue,
            stage=c.stage, max_receives=c.max_receives, price_overrides=c.price_overrides, log_retention=retention)

        PipelineMonitoring(self, "Monitoring", alarm_email=c.alarm_email, router=router.function, api=api.api,
                           workers=workers, webhooks=webhooks, sweeper=sweeper)

        CfnOutput(self, "ApiUrl", value=api.api.url, description="Base URL; jobs are at <ApiUrl>v1/jobs")
        CfnOutput(self, "ApiKeyId", value=api.api_key.key_id)
        CfnOutput(self, "GetApiKeyCommand", value=(
            f"aws apigateway get-api-key --api-key {api.api_key.key_id} --include-value --query value --output text"))
        for lane, job_queue in queues.items():
            CfnOutput(self, f"{lane.capitalize()}QueueUrl", value=job_queue.queue.queue_url)
            CfnOutput(self, f"{lane.capitalize()}DeadLetterQueueUrl", value=job_queue.dead_letter_queue.queue_url)
        CfnOutput(self, "WebhookQueueUrl", value=webhooks.job_queue.queue.queue_url)
        CfnOutput(self, "WebhookDeadLetterQueueUrl", value=webhooks.job_queue.dead_letter_queue.queue_url,
                  description="Hand-overs the dispatcher could not process; the sweep retries pending deliveries")


def compute_profile(config: PipelineConfig, lane: Lane) -> ComputeProfile:
    """Where a queued lane's workers run: its compute, as the lane describes it, with the deployment's
    own settings for it (Spot base, GPU AMI release, task CPU)."""
    compute = lane.compute
    if isinstance(compute, FargateCompute):
        return FargateSpot(cpu=int(compute.vcpu * CPU_UNITS_PER_VCPU), memory_mb=compute.memory_mb,
                           on_demand_base=config.worker_on_demand_base)
    if isinstance(compute, Ec2Compute):
        return GpuInstances(instance_type=compute.instance, ami_release=config.gpu_ami_release, cpu=config.gpu_cpu,
                            memory_mb=lane.memory_mb, max_instances=config.max_tasks(lane.name))
    raise ValueError(f"lanes.{lane.name}: no compute profile for {compute.kind!r} workers")
