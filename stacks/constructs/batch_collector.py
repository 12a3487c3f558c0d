"""The batch collector: a Lambda run every minute that drains the batch lane's queue into Message Batches and
settles the batches that ended (``lambda_src/collector``, :mod:`jobcore.batches`).

Why a scheduled Lambda and not an ECS service: a pass is seconds of work (a few API calls and DynamoDB writes),
while a batch takes minutes to hours to end; a function that runs a minute apart costs nothing in between,
where a task would idle all day. No reserved concurrency by default (``reserved_concurrency``, the config's
``collector_reserved_concurrency``): a reservation fails the deploy in an account whose concurrency quota is
low, and passes that overlap cannot corrupt anything (batch records are written on their version), only waste
calls. 1 keeps them one at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from jobadapters import schema
from jobadapters.settings import CollectorSettings
from jobadapters.telemetry import BATCH_OLDEST_OPEN_METRIC, COLLECTOR_SERVICE, NAMESPACE, STAGE_DIMENSION
from jobcore.lanes import Lanes
from stacks.constructs import runtime_env
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.python_lambda import python_function
from stacks.constructs.runtime_env import code_lane_environment
from stacks.constructs.storage import JobStorage

HANDLER = "collector.handler.handler"
COLLECT_EVERY = Duration.minutes(1)
# A pass drains up to 5,000 messages and settles what ended, stopping 30 s before this; the next run goes on.
FUNCTION_TIMEOUT = Duration.seconds(schema.COLLECTOR_TIMEOUT_S)
# The batch lane's queue: a message is held only within a pass (then deleted, or released for the window).
OPEN_BATCH_PERIOD = Duration.minutes(5)


class BatchCollector(Construct):
    """Creates ``function`` (from ``code``, the stack's ``python_lambda.source_code()``; own ``role`` and log
    group; ``memory_mb`` the batch lane's; ``reserved_concurrency``, None for none) and ``schedule``, an EventBridge rule that runs
    it every ``COLLECT_EVERY`` (a failed or late run is not retried: the next one does the same work).

    It gets exactly the environment ``CollectorSettings`` reads (``LANES_FILE``: the lane document in ``code``, which
    must be ``source_code(lanes)``; ``PRICE_OVERRIDES``; ``BATCH_QUEUE_URL``,
    the batch lane's queue; ``WEBHOOK_QUEUE_URL``; ``MODEL_ID``; ``ANTHROPIC_SECRET_ARN``; ``BATCH_WINDOW_S``,
    ``BATCH_MAX_ATTEMPTS``; the retention days), parsed with it at synth. Permissions, on its own role: job data
    (``JobStorage.access_policy``: job items and batch records, results and inputs in the bucket), consume and
    send on the batch lane's queue (a job is put back for a new batch), send to the webhook queue, read the
    Anthropic key's secret.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *,
        code: lambda_.Code, storage: JobStorage, lanes: Lanes, queue: JobQueue, webhook_queue: JobQueue,
        anthropic_secret: secretsmanager.ISecret, stage: str, model_id: str, window_s: int, max_attempts: int,
        job_ttl_days: int, result_retention_days: int, price_overrides: Mapping[str, Any], log_retention: logs.RetentionDays,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.stage = stage  # the dimension of its metrics
        lane = lanes.batch_lane
        if lane is None:
            raise ValueError(f"{self.node.path}: the lanes have no enabled batch lane to collect")
        self.lane = lane
        self.queue = queue
        environment = {
            **code_lane_environment(price_overrides),
            "STAGE": stage,
            **storage.table_environment(),
            "RESULTS_BUCKET": storage.bucket.bucket_name,
            "BATCH_QUEUE_URL": queue.queue.queue_url,
            "WEBHOOK_QUEUE_URL": webhook_queue.queue.queue_url,
            "RESULT_RETENTION_DAYS": str(result_retention_days),
            "JOB_TTL_DAYS": str(job_ttl_days),
            "MODEL_ID": model_id,
            "ANTHROPIC_SECRET_ARN": anthropic_secret.secret_arn,
            "BATCH_WINDOW_S": str(window_s),
            "BATCH_MAX_ATTEMPTS": str(max_attempts),
        }
        runtime_env.check_lambda_size(environment, where=self.node.path)
        runtime_env.check(CollectorSettings.from_env, environment, where=self.node.path, lanes=lanes)
        made = python_function(
            self, code=code, handler=HANDLER, environment=environment, memory_mb=lane.memory_mb, timeout=FUNCTION_TIMEOUT,
            log_retention=log_retention, retry_attempts=0, reserved_concurrency=reserved_concurrency,
            role_description="The batch collector Lambda's role",
            description="Sends the batch lane's jobs as Message Batches and settles the batches that ended.")
        self.function, self.role, self.log_group = made.function, made.role, made.log_group
        self.schedule = events.Rule(
            self, "Schedule", schedule=events.Schedule.rate(COLLECT_EVERY), description="Runs the batch collector",
            targets=[targets.LambdaFunction(self.function, max_event_age=COLLECT_EVERY)])

        storage.grant_job_data(self.role)
        queue.grant_consume(self.role)
        queue.grant_send(self.role)
        webhook_queue.grant_send(self.role)
        anthropic_secret.grant_read(self.role)

    def metric_oldest_open_batch(self, *, period: Duration = OPEN_BATCH_PERIOD) -> cloudwatch.Metric:
        """The age (s) of the oldest Message Batch the collector has not settled, as each pass reports it."""
        return cloudwatch.Metric(
            namespace=NAMESPACE, metric_name=BATCH_OLDEST_OPEN_METRIC,
            dimensions_map={"service": COLLECTOR_SERVICE, STAGE_DIMENSION: self.stage},
            statistic="Maximum", period=period, label="oldest open batch (s)")
