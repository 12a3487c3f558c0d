"""A lane's worker: an autoscaled ECS service that drains the lane's queue. One class for both lanes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from jobadapters.settings import WorkerSettings
from jobcore.capacity import CapacityConfig
from jobcore.lanes import Lane, Lanes
from jobcore.limits import ECS_MAX_STOP_TIMEOUT_S
from stacks.constructs import runtime_env
from stacks.constructs.cluster import WorkerCluster
from stacks.constructs.compute import ComputeProfile
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.model_access import ANTHROPIC_ONLY, ModelAccess
from stacks.constructs.nag import acknowledge, ref
from stacks.constructs.runtime_env import lane_environment
from stacks.constructs.storage import JobStorage
from stacks.constructs.traces import grant_trace_export
from stacks.lane_env import capacity_environment

STOP_TIMEOUT = Duration.seconds(ECS_MAX_STOP_TIMEOUT_S)  # Fargate Spot gives the same 2 minutes' notice
_MINUTE = Duration.minutes(1)


class WorkerService(Construct):
    """Creates ``service`` (on ``compute``), its task definition with one ``Worker`` container, a log group,
    and ``scaling`` on the lane queue's backlog.

    The container gets exactly the environment ``WorkerSettings`` reads (``LANES`` and ``PRICE_OVERRIDES``
    as ``runtime_env.lane_environment`` makes them; the lane's own concurrency is in ``LANES``;
    ``RESULT_RETENTION_DAYS``: how long the bucket keeps results, for a job's ``result_expires_at``), checked
    with ``WorkerSettings`` at synth, and the Anthropic key as an ECS secret (never a plain value). The task
    role may consume the lane queue, send to ``webhook_queue`` (a finished job's webhook is handed over to
    the dispatcher there, never sent from here), send to the lane queue (a job waiting for the model is put back
    as a new delayed message), read/write job items and objects (not delete the table or the bucket) and set its
    own task's scale-in protection.

    Scaling (no CPU-based policy: Claude work is I/O bound): the backlog is visible + in-flight messages.
    While it is ≥ 1 the service runs ceil(backlog / ``concurrency``) tasks (between ``min_tasks`` and
    ``max_tasks``), decided from one 1-minute datapoint, so an idle lane gets its first task about a
    minute after a message arrives. After ``idle_minutes`` with an empty backlog it goes back to ``min_tasks``
    (0 by default). Busy tasks are never killed by a scale-in: the worker protects itself while it works.

    On-demand fallback (when ``compute`` offers one: Fargate Spot with ``spot_fallback_after_s``):
    ``fallback_service`` runs the same task definition on regular Fargate, at 0 tasks. When messages are
    waiting (visible) and the queue's oldest message is at least ``after_s`` old, it runs ceil(waiting /
    ``concurrency``) tasks (at most ``max_tasks``); after ``idle_minutes`` without that it returns to 0.

    ``model_s3_uri`` (an ``s3://bucket/prefix/`` model directory): the container gets it as
    ``EMBEDDING_MODEL_URI`` and the task role may read that prefix (and list the bucket under it).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *,
        cluster: WorkerCluster, compute: ComputeProfile, image: ecs.ContainerImage, lane: Lane, lanes: Lanes,
        job_queue: JobQueue, webhook_queue: JobQueue, storage: JobStorage, anthropic_secret: secretsmanager.ISecret,
        model_access: ModelAccess = ANTHROPIC_ONLY, stage: str, model_id: str, min_tasks: int, max_tasks: int,
        result_retention_days: int,
        price_overrides: Mapping[str, Any], log_retention: logs.RetentionDays, idle_minutes: int = 5,
        model_s3_uri: str = "", capacity: CapacityConfig | None = None, traces_endpoint: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.lane = lane.name
        self.job_queue = job_queue
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.task_definition = compute.task_definition(self)
        environment = {
            **lane_environment(lanes, price_overrides, model_access.bedrock_scope),
            **model_access.environment(),
            "STAGE": stage,
            "LANE": lane.name,
            "QUEUE_URL": job_queue.queue.queue_url,
            **storage.table_environment(),
            "RESULTS_BUCKET": storage.bucket.bucket_name,
            "WEBHOOK_QUEUE_URL": webhook_queue.queue.queue_url,
            "RESULT_RETENTION_DAYS": str(result_retention_days),
            "MAX_RECEIVES": str(job_queue.max_receive_count),
            "VISIBILITY_TIMEOUT_S": str(int(job_queue.visibility_timeout.to_seconds())),
            "MODEL_ID": model_id,
            **capacity_environment(capacity or CapacityConfig()),  # none: nothing paced
            "TRACES_ENDPOINT": traces_endpoint,
        }
        if model_s3_uri:
            environment["EMBEDDING_MODEL_URI"] = model_s3_uri
        runtime_env.check(WorkerSettings.from_env, environment, where=self.node.path)
        self.container = self.task_definition.add_container(
            "Worker",
            image=image,
            environment=environment,
            # ECS injects the key (its execution role reads the secret): only where Anthropic is a provider.
            secrets={"ANTHROPIC_API_KEY": ecs.Secret.from_secrets_manager(anthropic_secret)} if model_access.anthropic else None,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=lane.name, log_group=self.log_group),
            stop_timeout=STOP_TIMEOUT,
            **compute.container_sizing(),
        )
        self.service = compute.service(self, cluster=cluster, task_definition=self.task_definition,
                                       desired_count=min_tasks)
        # The cluster's capacity-provider associations (FARGATE_SPOT, the GPU group) are created late, by an
        # aspect, under the cluster; a service created before them is rejected. Depending on the whole cluster
        # construct reaches them (cfn-lint W3005 about the cluster itself is the price, see .cfnlintrc).
        self.service.node.add_dependency(cluster.cluster)
        self._grant(cluster, storage, webhook_queue)
        grant_trace_export(self.task_definition.task_role, traces_endpoint)
        model_access.grant(self.task_definition.task_role, None)  # the key is the execution role's to read, for ECS
        if model_s3_uri:
            self._grant_model(model_s3_uri)
        self.scaling = self._scale_on_backlog(cluster, lane.concurrency, min_tasks, max_tasks, idle_minutes)
        fallback = compute.fallback_service(self, cluster=cluster, task_definition=self.task_definition,
                                            primary=self.service)
        self.fallback_service: ecs.BaseService | None = None
        self.fallback_after_s = 0
        self.fallback_scaling: appscaling.ScalableTarget | None = None
        if fallback is not None:
            self.fallback_service, self.fallback_after_s = fallback.service, fallback.after_s
            self.fallback_service.node.add_dependency(cluster.cluster)
            self.fallback_scaling = self._scale_fallback(cluster, fallback.service, fallback.after_s, lane.concurrency,
                                                         max_tasks, idle_minutes)

        acknowledge(self.task_definition, "AwsSolutions-ECS2",
                    "The plain variables are resource names and limits (queue URLs, table, bucket, lanes); "
                    "the Anthropic key reaches the container as an ECS secret from Secrets Manager.")

    def backlog(self) -> cloudwatch.MathExpression:
        """Jobs waiting or running on this lane: visible + in-flight messages (max over one minute).

        SQS reports the in-flight count only while there are in-flight messages, and a sum with a missing
        term is missing: without FILL, an idle lane's first message (visible, nothing in flight) would
        never start a task.
        """
        queue = self.job_queue.queue
        return cloudwatch.MathExpression(
            expression="FILL(visible, 0) + FILL(inflight, 0)",
            using_metrics={
                "visible": queue.metric_approximate_number_of_messages_visible(period=_MINUTE, statistic="Maximum"),
                "inflight": queue.metric_approximate_number_of_messages_not_visible(period=_MINUTE, statistic="Maximum"),
            },
            label=f"{self.lane} backlog", period=_MINUTE,
        )

    def waiting(self, after_s: int) -> cloudwatch.MathExpression:
        """Messages waiting for a worker once the wait is long: the visible count while a message is visible
        and the queue's oldest message is ``after_s`` or older, else 0 (max over one minute).

        SQS's oldest-message age counts messages in flight too (any not deleted), so a long job running
        on a worker makes it grow: requiring a visible message as well keeps a busy lane with nothing
        waiting from looking stuck.
        """
        queue = self.job_queue.queue
        return cloudwatch.MathExpression(
            expression=f"IF(FILL(visible, 0) >= 1 AND FILL(age, 0) >= {after_s}, FILL(visible, 0), 0)",
            using_metrics={
                "visible": queue.metric_approximate_number_of_messages_visible(period=_MINUTE, statistic="Maximum"),
                "age": queue.metric_approximate_age_of_oldest_message(period=_MINUTE, statistic="Maximum"),
            },
            label=f"{self.lane} jobs waiting over {after_s} s", period=_MINUTE,
        )

    def _grant(self, cluster: WorkerCluster, storage: JobStorage, webhook_queue: JobQueue) -> None:
        task_role = self.task_definition.task_role
        self.job_queue.grant_consume(task_role)
        # A job waiting for an overloaded or rate-limited model goes back on its lane as a new, delayed message
        # (jobcore.runner's model wait): without this, every wait is AccessDenied and spends a receive instead.
        self.job_queue.grant_send(task_role)
        webhook_queue.grant_send(task_role)
        storage.grant_job_data(task_role)
        task_role.add_to_principal_policy(iam.PolicyStatement(
            actions=["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
            resources=[Stack.of(self).format_arn(service="ecs", resource="task",
                                                 resource_name=f"{cluster.cluster.cluster_name}/*")],
        ))
        acknowledge(task_role, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:"
                               f"task/{ref(cluster.cluster)}/*]",
                    "A task sets its own scale-in protection, and task ids are only known at run time; the "
                    "wildcard is limited to tasks of this cluster and to the two task-protection actions.")
        acknowledge(self.task_definition.obtain_execution_role(), "AwsSolutions-IAM5[Resource::*]",
                    "ecr:GetAuthorizationToken, which ECS needs to pull the worker image, has no resource-level "
                    "permissions; every other statement of the execution role names its repository, log group "
                    "or secret.")

    def _grant_model(self, model_s3_uri: str) -> None:
        """Read the model directory: get objects under the prefix, list the bucket under it (so a missing
        file answers 404, not 403)."""
        bucket, _, prefix = model_s3_uri.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        stack, task_role = Stack.of(self), self.task_definition.task_role
        objects = stack.format_arn(service="s3", region="", account="", resource=bucket,
                                   resource_name=f"{prefix}/*" if prefix else "*")
        task_role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[objects]))
        listing = iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[stack.format_arn(service="s3", region="", account="", resource=bucket)])
        if prefix:
            listing.add_condition("StringLike", {"s3:prefix": [prefix, f"{prefix}/*"]})
        task_role.add_to_principal_policy(listing)
        acknowledge(task_role, f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/{prefix + '/' if prefix else ''}*]",
                    "The embedding model is a directory of objects (model.onnx, tokenizer.json, embedding.json) "
                    "under the configured prefix; read-only, and only under that prefix.")

    def _scalable_target(self, construct_id: str, cluster: WorkerCluster, service: ecs.BaseService, min_tasks: int,
                         max_tasks: int) -> appscaling.ScalableTarget:
        return appscaling.ScalableTarget(
            self, construct_id,
            service_namespace=appscaling.ServiceNamespace.ECS,
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=f"service/{cluster.cluster.cluster_name}/{service.service_name}",
            min_capacity=min_tasks, max_capacity=max_tasks,
            role=iam.Role.from_role_arn(self, f"{construct_id}ScalingRole", Stack.of(self).format_arn(
                service="iam", region="", resource="role",
                resource_name="aws-service-role/ecs.application-autoscaling.amazonaws.com/"
                              "AWSServiceRoleForApplicationAutoScaling_ECSService")),
        )

    def _scale_on_backlog(self, cluster: WorkerCluster, concurrency: int, min_tasks: int, max_tasks: int,
                          idle_minutes: int) -> appscaling.ScalableTarget:
        target = self._scalable_target("TaskCount", cluster, self.service, min_tasks, max_tasks)
        backlog = self.backlog()
        target.scale_on_metric(
            "ScaleOnBacklog", metric=backlog, scaling_steps=backlog_steps(concurrency, max_tasks),
            adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY, evaluation_periods=1,
            cooldown=_MINUTE, metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
        )
        to_min = appscaling.StepScalingAction(
            self, "ScaleInWhenIdle", scaling_target=target, adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY,
            cooldown=_MINUTE, metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM)
        to_min.add_adjustment(adjustment=min_tasks, upper_bound=0)
        idle = backlog.create_alarm(
            self, "IdleAlarm", threshold=0, evaluation_periods=idle_minutes,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{self.lane} lane idle for {idle_minutes} min: scale to the minimum")
        idle.add_alarm_action(cw_actions.ApplicationScalingAction(to_min))
        return target

    def _scale_fallback(self, cluster: WorkerCluster, service: ecs.BaseService, after_s: int, concurrency: int,
                        max_tasks: int, idle_minutes: int) -> appscaling.ScalableTarget:
        """The on-demand fallback: ceil(waiting / concurrency) tasks while jobs wait ``after_s`` or longer,
        back to 0 after ``idle_minutes`` without such a wait."""
        target = self._scalable_target("OnDemandTaskCount", cluster, service, 0, max_tasks)
        waiting = self.waiting(after_s)
        target.scale_on_metric(
            "ScaleOutWhenJobsWait", metric=waiting, scaling_steps=backlog_steps(concurrency, max_tasks),
            adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY, evaluation_periods=1,
            cooldown=_MINUTE, metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
        )
        to_zero = appscaling.StepScalingAction(
            self, "OnDemandScaleInWhenClear", scaling_target=target,
            adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY, cooldown=_MINUTE,
            metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM)
        to_zero.add_adjustment(adjustment=0, upper_bound=0)
        clear = waiting.create_alarm(
            self, "OnDemandClearAlarm", threshold=0, evaluation_periods=idle_minutes,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{self.lane} lane: no job has waited {after_s} s for {idle_minutes} min: "
                              "on-demand fallback back to 0 tasks")
        clear.add_alarm_action(cw_actions.ApplicationScalingAction(to_zero))
        return target


def backlog_steps(concurrency: int, max_tasks: int) -> list[appscaling.ScalingInterval]:
    """Backlog → exact task count: 1..concurrency jobs → 1 task, the next ``concurrency`` → 2, … up to max.

    The range below 1 is left out on purpose: it is where the idle alarm, not this policy, acts.
    """
    steps = [appscaling.ScalingInterval(lower=(tasks - 1) * concurrency + 1, upper=tasks * concurrency + 1, change=tasks)
             for tasks in range(1, max_tasks)]
    steps.append(appscaling.ScalingInterval(lower=(max_tasks - 1) * concurrency + 1, change=max_tasks))
    if len(steps) == 1:  # CDK wants two intervals; split the single one without changing its meaning
        steps = [appscaling.ScalingInterval(lower=1, upper=2, change=1), appscaling.ScalingInterval(lower=2, change=1)]
    return steps
