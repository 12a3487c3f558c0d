"""The S3 intake: objects created under ``intake/<task>/`` of the job bucket become jobs (``lambda_src/intake``).

S3 event notification (prefix ``intake/``) → the intake queue (SQS, its dead-letter queue after
``jobcore.intake.MAX_RECEIVES`` receives, alarmed) → the intake Lambda (batches of ``BATCH_SIZE``, partial batch
responses). Two parts, in two stacks: :class:`IntakeQueue` sits in the data stack beside the bucket, because a
bucket's notification configuration is a custom resource of the *bucket's* stack, which would then refer to a
queue of the service stack while the service stack refers to the bucket: a dependency cycle. With the queue in
the data stack every reference points one way, service → data, as for the table and the bucket.
:class:`IntakeFunction` sits in the service stack with the other functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct

from jobadapters.settings import IntakeSettings
from jobcore import intake as intake_core
from jobcore.lanes import Lanes
from stacks.constructs import runtime_env
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.lane_waker import let_wake
from stacks.constructs.nag import acknowledge, ref
from stacks.constructs.python_lambda import python_function
from stacks.constructs.runtime_env import queue_url_placeholders, service_environment
from stacks.constructs.storage import JobStorage
from stacks.constructs.traces import grant_trace_export

HANDLER = "intake.handler.handler"
FUNCTION_TIMEOUT = Duration.seconds(intake_core.FUNCTION_TIMEOUT_S)
BATCH_SIZE = intake_core.BATCH_SIZE
MEMORY_MB = 512

if intake_core.QUEUE_VISIBILITY_S < 6 * intake_core.FUNCTION_TIMEOUT_S:
    raise ValueError("the intake queue's visibility must be at least six times the intake function's timeout")


class IntakeQueue(Construct):
    """Creates ``job_queue`` (the intake queue and its DLQ: SSE-SQS, SSL only, visibility
    ``jobcore.intake.QUEUE_VISIBILITY_S``, a message received ``jobcore.intake.MAX_RECEIVES`` times goes to the DLQ)
    and the bucket's notification of ``s3:ObjectCreated:*`` under ``jobcore.intake.PREFIX`` into it (S3 may send
    to the queue only for this bucket: the queue policy CDK writes is conditioned on its ARN and account)."""

    def __init__(self, scope: Construct, construct_id: str, *, bucket: s3.Bucket) -> None:
        """Also creates ``read_policy``: s3:GetObject on ``intake/*`` of ``bucket``, for the intake function."""
        super().__init__(scope, construct_id)
        self.job_queue = JobQueue(self, "Queue", visibility_timeout=Duration.seconds(intake_core.QUEUE_VISIBILITY_S),
                                  max_receive_count=intake_core.MAX_RECEIVES)
        bucket.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.SqsDestination(self.job_queue.queue),
                                      s3.NotificationKeyFilter(prefix=intake_core.PREFIX))
        # The notification is written by CDK's BucketNotificationsHandler, a singleton function of the stack.
        stack = Stack.of(self)
        for child in stack.node.children:
            if child.node.id.startswith("BucketNotificationsHandler"):
                acknowledge(child, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                                   "AWSLambdaBasicExecutionRole]",
                            "CDK's own BucketNotificationsHandler (it writes the bucket's notification configuration at "
                            "deploy) uses AWSLambdaBasicExecutionRole for its logs; CDK makes it, not this app.")
        # What the intake function may read of the bucket: objects under intake/, nothing else. A policy of this stack
        # (as JobStorage's access policy), so that its acknowledgement can name the bucket's ARN.
        self.read_policy = iam.ManagedPolicy(self, "ReadIntakeObjects", description="Read objects under intake/ of the job bucket.",
                                             statements=[iam.PolicyStatement(
            sid="ReadIntakeObjects", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{intake_core.PREFIX}*")])])
        acknowledge(self.read_policy, f"AwsSolutions-IAM5[Resource::{ref(bucket, 'Arn')}/{intake_core.PREFIX}*]",
                    f"Intake objects are named by whoever drops them under {intake_core.PREFIX}<task>/: the wildcard is "
                    "limited to that prefix of this one bucket, and to reading.")


class IntakeFunction(Construct):
    """Creates ``function`` (from ``code``, the stack's ``python_lambda.source_code()``; own ``role`` and log group),
    consuming ``intake.job_queue`` (batches of ``BATCH_SIZE``, partial batch responses, at most ``max_concurrency``
    invocations at once).

    It gets exactly the environment ``IntakeSettings`` reads: the router's (without the Anthropic secret: an intake
    job is async, never run inline, so the function never calls Claude), ``INTAKE_TENANT`` (``tenant_id``, the API
    key id that owns intake jobs) and ``INTAKE_WEBHOOK_URL`` (``webhook_url``, '' for none), parsed at synth.
    Permissions, on its own role: read (only) objects under ``intake/`` of the bucket; job data
    (``JobStorage.access_policy``: items, results and inputs); send (only) to each lane queue and to the webhook
    queue; consume the intake queue; with :meth:`wake_lanes`, DescribeServices and UpdateService on the worker lanes'
    services (``LANE_SERVICES``). (The read policy is the data stack's ``IntakeQueue.read_policy``.)
    """

    def __init__(
        self, scope: Construct, construct_id: str, *,
        code: lambda_.Code, storage: JobStorage, intake: IntakeQueue, lanes: Lanes, queues: Mapping[str, JobQueue],
        webhook_queue: JobQueue, stage: str, model_id: str, job_ttl_days: int, result_retention_days: int,
        task_rates_per_min: Mapping[str, float], price_overrides: Mapping[str, Any], tenant_id: str, webhook_url: str,
        log_retention: logs.RetentionDays, max_concurrency: int, tenant_budgets_usd: Mapping[str, float] | None = None,
        traces_endpoint: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.intake_queue = intake_queue = intake.job_queue
        environment = {
            **service_environment(
                self, lanes=lanes, price_overrides=price_overrides, stage=stage, jobs_table=storage.table.table_name,
                index_shards=storage.shards,
                bucket_name=storage.bucket.bucket_name, queue_urls={lane: q.queue.queue_url for lane, q in queues.items()},
                webhook_queue_url=webhook_queue.queue.queue_url, job_ttl_days=job_ttl_days,
                result_retention_days=result_retention_days, task_rates_per_min=task_rates_per_min, model_id=model_id,
                tenant_budgets_usd=tenant_budgets_usd, traces_endpoint=traces_endpoint),
            "INTAKE_TENANT": tenant_id,
            "INTAKE_WEBHOOK_URL": webhook_url,
        }
        runtime_env.check_lambda_size(environment, where=self.node.path)
        runtime_env.check(IntakeSettings.from_env, environment, where=self.node.path, placeholders=queue_url_placeholders(queues),
                          lanes=lanes)
        self._environment, self._placeholders, self._lanes = environment, queue_url_placeholders(queues), lanes

        made = python_function(
            self, code=code, handler=HANDLER, environment=environment, memory_mb=MEMORY_MB, timeout=FUNCTION_TIMEOUT,
            log_retention=log_retention, role_description="The S3 intake Lambda's role",
            description="Turns objects created under intake/<task>/ of the job bucket into jobs.")
        self.function, self.role, self.log_group = made.function, made.role, made.log_group
        self.function.add_event_source(event_sources.SqsEventSource(
            intake_queue.queue, batch_size=BATCH_SIZE, report_batch_item_failures=True, max_concurrency=max_concurrency))
        self.role.add_managed_policy(intake.read_policy)
        storage.grant_job_data(self.role)
        for job_queue in queues.values():
            job_queue.grant_send(self.role)
        webhook_queue.grant_send(self.role)
        grant_trace_export(self.role, traces_endpoint)

    def wake_lanes(self, services: Mapping[str, ecs.BaseService]) -> None:
        """Lets the intake wake each worker lane's idle service when it queues a job there, as the router does
        (``RouterFunction.wake_lanes``)."""
        let_wake(self.function, self.role, services, environment=self._environment, parse=IntakeSettings.from_env,
                 where=self.node.path, placeholders=self._placeholders, lanes=self._lanes)
