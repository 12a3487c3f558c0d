"""The job sweeper: a Lambda run every minute that settles jobs whose runner is gone (``lambda_src/sweeper``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from jobadapters.settings import SweeperSettings
from jobadapters.telemetry import NAMESPACE, RECOVERED_METRIC, STAGE_DIMENSION, SWEEPER_SERVICE
from jobcore.lanes import Lanes
from stacks.constructs import runtime_env
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.python_lambda import python_function
from stacks.constructs.runtime_env import code_lane_environment, compact_json
from stacks.constructs.storage import JobStorage

HANDLER = "sweeper.handler.handler"
SWEEP_EVERY = Duration.minutes(1)
# A run queries the watch index, settles up to a few hundred jobs and drains the dead-letter queues; one
# that does not finish in time is superseded by the next (every write is conditional).
FUNCTION_TIMEOUT = Duration.seconds(60)
MEMORY_MB = 256
RECOVERED_PERIOD = Duration.minutes(5)  # what the alarm sums: any recovered job in it alarms


class JobSweeper(Construct):
    """Creates ``function`` (from ``code``, the stack's ``python_lambda.source_code()``; own ``role`` and log
    group) and ``schedule``, an EventBridge rule that runs it every ``SWEEP_EVERY`` (a failed or late run
    is not retried: the next one does the same work).

    It gets exactly the environment ``SweeperSettings`` reads (``LANES_FILE``, the lane document in ``code``, which
    must be ``source_code(lanes)``, and ``PRICE_OVERRIDES``, as ``runtime_env.code_lane_environment`` makes them;
    ``LANE_QUEUE_URLS`` and ``LANE_DLQ_URLS``: each queued
    lane's queue and dead-letter queue in ``queues``; ``WEBHOOK_QUEUE_URL``; ``MAX_RECEIVES``, the lane
    queues' redrive count), parsed with ``SweeperSettings`` at synth.
    Permissions, on its own role: job data (``JobStorage.access_policy``: items and the watch index), send
    (only) to each lane queue (a stale job is queued again), receive and delete on each lane's dead-letter
    queue (a dead-lettered job is settled, then its message dropped), send to the webhook queue (a job
    it settles hands its webhook over). No secret: it never calls Claude nor signs a webhook.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *,
        code: lambda_.Code, storage: JobStorage, lanes: Lanes, queues: Mapping[str, JobQueue], webhook_queue: JobQueue,
        stage: str, max_receives: int, price_overrides: Mapping[str, Any], log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.stage = stage  # the dimension of its metrics
        mismatched = sorted(lane for lane, q in queues.items() if q.max_receive_count != max_receives)
        if mismatched:
            raise ValueError(f"{self.node.path}: MAX_RECEIVES={max_receives} must be the redrive count of every lane "
                             f"queue; not of {', '.join(mismatched)}")
        stack = Stack.of(self)
        environment = {
            **code_lane_environment(price_overrides),
            "STAGE": stage,
            **storage.table_environment(),
            "RESULTS_BUCKET": storage.bucket.bucket_name,
            "LANE_QUEUE_URLS": stack.to_json_string({lane: q.queue.queue_url for lane, q in queues.items()}),
            "LANE_DLQ_URLS": stack.to_json_string({lane: q.dead_letter_queue.queue_url for lane, q in queues.items()}),
            "WEBHOOK_QUEUE_URL": webhook_queue.queue.queue_url,
            "MAX_RECEIVES": str(max_receives),
        }
        runtime_env.check_lambda_size(environment, where=self.node.path)
        runtime_env.check(SweeperSettings.from_env, environment, where=self.node.path, placeholders={
            "LANE_QUEUE_URLS": compact_json({lane: f"https://queue/{lane}" for lane in queues}),
            "LANE_DLQ_URLS": compact_json({lane: f"https://queue/{lane}-dlq" for lane in queues}),
        }, lanes=lanes)

        made = python_function(
            self, code=code, handler=HANDLER, environment=environment, memory_mb=MEMORY_MB, timeout=FUNCTION_TIMEOUT,
            log_retention=log_retention, retry_attempts=0, role_description="The job sweeper Lambda's role",
            description="Settles jobs whose runner is gone (stale leases, queue deadlines) and dead-lettered jobs.")
        self.function, self.role, self.log_group = made.function, made.role, made.log_group
        self.schedule = events.Rule(
            self, "Schedule", schedule=events.Schedule.rate(SWEEP_EVERY), description="Runs the job sweeper",
            targets=[targets.LambdaFunction(self.function, max_event_age=SWEEP_EVERY)])

        storage.grant_job_data(self.role)
        for job_queue in queues.values():
            job_queue.grant_send(self.role)
            job_queue.grant_drain_dead_letters(self.role)
        webhook_queue.grant_send(self.role)

    def metric_recovered(self, *, period: Duration = RECOVERED_PERIOD) -> cloudwatch.Metric:
        """Jobs the sweeper queued again, failed, canceled or expired (their runner was gone, their message
        dead-lettered or their queue deadline passed), as the sweeper counts them; a poison message it only
        drops is not counted."""
        return cloudwatch.Metric(
            namespace=NAMESPACE, metric_name=RECOVERED_METRIC, dimensions_map={"service": SWEEPER_SERVICE, STAGE_DIMENSION: self.stage},
            statistic="Sum", period=period, label="jobs recovered by the sweeper")
