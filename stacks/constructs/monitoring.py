"""Alarms, the topic they notify, and one dashboard of the whole pipeline."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from jobadapters.telemetry import NAMESPACE, STAGE_DIMENSION
from stacks import names
from stacks.constructs.batch_collector import BatchCollector
from stacks.constructs.intake import IntakeFunction
from stacks.constructs.job_sweeper import JobSweeper
from stacks.constructs.webhook_dispatcher import WebhookDispatcher
from stacks.constructs.worker_service import WorkerService

_MINUTE = Duration.minutes(1)
# On top of a lane's job timeout: how long a message may wait for a worker to start before we call it stuck.
QUEUE_AGE_ALLOWANCE = Duration.minutes(15)
# The webhook queue holds hand-overs delayed up to SQS's 15 min by design: older than this, the dispatcher is stuck.
WEBHOOK_QUEUE_AGE = Duration.minutes(30)
# The S3 intake's notifications are consumed within seconds: older than this, the intake function is stuck.
INTAKE_QUEUE_AGE = Duration.minutes(15)
# The router's longest run in a minute, as a share of its timeout, past which it is about to time out.
ROUTER_DURATION_SHARE = 0.8
API_THROTTLED_METRIC = "ApiThrottled"  # 429s API Gateway answered (its access log, by stage)


class PipelineMonitoring(Construct):
    """Creates ``topic`` (SSL-only; e-mail subscription when ``alarm_email`` is set), ``alarms`` and ``dashboard``.

    Alarms, each notifying the topic: per lane, DLQ depth > 0 and the oldest message older than the
    lane's job timeout + 15 min, and, for a lane with an on-demand fallback, any task of it running (Spot
    did not keep up: jobs ran on regular Fargate, at the regular price); the router's errors and
    throttles (any, in a minute); API 5xx responses; webhooks: the dispatcher's DLQ depth > 0, any
    delivery exhausted (its retry schedule ran out), errors of the dispatcher and of the sweep; the job
    sweeper: its errors, and any job it recovered in 5 minutes (``JobsRecoveredBySweeper`` > 0: workers
    dying or routers timing out; a client's queue deadline passing is counted apart, in
    ``JobsExpiredInQueue``, and not alarmed); the batch collector (when the batch lane is on): its errors, the
    batch lane's DLQ depth > 0, and a Message Batch open longer than ``batch_open_alarm_hours``
    (``OldestOpenBatchAgeSeconds``, which each pass reports); the webhook queue's oldest hand-over older than
    30 min and the intake queue's older than 15 min; DynamoDB throttling of the jobs table (any in a minute); the
    router's longest run over 80 % of its timeout; API Gateway's 429s (``ApiThrottled``, from the access log: a
    tenant over the usage plan's rate). Every alarm notifies the topic when it fires and when it recovers (OK).
    ECS tasks of the cluster that stop before they start (``TaskFailedToStart``: image pull, secrets, capacity)
    are sent to the topic by an EventBridge rule as they happen, not after the oldest-message alarm's wait.
    The custom metrics an alarm reads carry the ``stage`` dimension: a stage's alarms read only its own.
    """

    def __init__(self, scope: Construct, construct_id: str, *, alarm_email: str, router: lambda_.Function,
                 api: apigw.RestApi, workers: Mapping[str, WorkerService], webhooks: WebhookDispatcher,
                 sweeper: JobSweeper, collector: BatchCollector | None = None, batch_open_alarm_hours: int = 24,
                 intake: IntakeFunction | None = None, stage: str = "dev", table: dynamodb.ITable | None = None,
                 api_access_logs: logs.ILogGroup | None = None, cluster: ecs.ICluster | None = None) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "AlarmTopic", display_name="Job pipeline alarms", enforce_ssl=True)
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for lane, worker in workers.items():
            queues, name = worker.job_queue, names.construct_id(lane)
            self._alarm(f"{name}DeadLetters", _maximum(queues.dead_letter_queue.metric_approximate_number_of_messages_visible),
                        threshold=0, description=f"{lane} lane: jobs reached the dead-letter queue "
                                                 f"(received {queues.max_receive_count} times without finishing)")
            age_limit = queues.visibility_timeout.to_seconds() + QUEUE_AGE_ALLOWANCE.to_seconds()
            self._alarm(f"{name}OldestMessage", _maximum(queues.queue.metric_approximate_age_of_oldest_message),
                        threshold=age_limit,
                        description=f"{lane} lane: a job has waited over {age_limit:.0f} s (job timeout + 15 min)")
            if worker.fallback_service is not None:
                self._alarm(f"{name}OnDemandFallback", _running_tasks(worker, worker.fallback_service), threshold=0,
                            description=f"{lane} lane: jobs waited over {worker.fallback_after_s} s and the on-demand "
                                        "fallback runs them on regular Fargate (Fargate Spot is not keeping up); it "
                                        "returns to 0 tasks 5 minutes after no job waits that long")
        self._alarm("RouterErrors", router.metric_errors(period=_MINUTE, statistic="Sum"), threshold=0,
                    description="router Lambda raised errors")
        self._alarm("RouterThrottles", router.metric_throttles(period=_MINUTE, statistic="Sum"), threshold=0,
                    description="router Lambda was throttled (reserved concurrency or account limit)")
        self._alarm("Api5xx", api.metric_server_error(period=_MINUTE, statistic="Sum"), threshold=0,
                    description="API answered 5xx")
        timeout_ms = router.timeout.to_milliseconds() if router.timeout is not None else 3000
        self._alarm("RouterNearTimeout", router.metric_duration(period=_MINUTE, statistic="Maximum"),
                    threshold=timeout_ms * ROUTER_DURATION_SHARE,
                    description=f"router Lambda ran over {ROUTER_DURATION_SHARE:.0%} of its {timeout_ms / 1000:g} s timeout "
                                "(an inline run or a store call is about to be cut off)")
        self._alarm("WebhookOldestMessage", _maximum(webhooks.job_queue.queue.metric_approximate_age_of_oldest_message),
                    threshold=WEBHOOK_QUEUE_AGE.to_seconds(),
                    description=f"webhooks: a hand-over has waited over {WEBHOOK_QUEUE_AGE.to_minutes():g} min "
                                "(the dispatcher is not consuming its queue)")
        if table is not None:
            self._alarm("TableThrottles", table.metric_throttled_requests_for_operations(
                operations=[dynamodb.Operation.GET_ITEM, dynamodb.Operation.PUT_ITEM, dynamodb.Operation.UPDATE_ITEM,
                            dynamodb.Operation.QUERY, dynamodb.Operation.BATCH_GET_ITEM], period=_MINUTE),
                        threshold=0, description="the jobs table throttled requests (callers got 503 unavailable or retried)")
        if api_access_logs is not None:
            logs.MetricFilter(self, "ApiThrottledFilter", log_group=api_access_logs, metric_namespace=NAMESPACE,
                              metric_name=API_THROTTLED_METRIC, metric_value="1",
                              filter_pattern=logs.FilterPattern.string_value("$.status", "=", "429"),
                              dimensions={STAGE_DIMENSION: "$.stage"})
            throttled = cloudwatch.Metric(namespace=NAMESPACE, metric_name=API_THROTTLED_METRIC, statistic="Sum",
                                          period=_MINUTE, dimensions_map={STAGE_DIMENSION: stage})
            self._alarm("Api429", throttled, threshold=0,
                        description="API Gateway answered 429: a tenant is over the usage plan's rate or burst")
        if cluster is not None:
            rule = events.Rule(self, "TaskFailedToStart", description="ECS tasks of the workers that failed to start",
                               event_pattern=events.EventPattern(
                                   source=["aws.ecs"], detail_type=["ECS Task State Change"],
                                   detail={"clusterArn": [cluster.cluster_arn], "lastStatus": ["STOPPED"],
                                           "stopCode": ["TaskFailedToStart"]}))
            rule.add_target(targets.SnsTopic(self.topic, message=events.RuleTargetInput.from_text(
                f"{stage}: an ECS worker task failed to start: {events.EventField.from_path('$.detail.stoppedReason')} "
                f"(task {events.EventField.from_path('$.detail.taskArn')})")))
        self._alarm("WebhookDeadLetters", _maximum(webhooks.job_queue.dead_letter_queue.metric_approximate_number_of_messages_visible),
                    threshold=0, description="webhooks: hand-overs reached the dead-letter queue (the dispatcher failed "
                                             f"{webhooks.job_queue.max_receive_count} times; the sweep retries pending deliveries)")
        self._alarm("WebhookDeliveriesExhausted", webhooks.metric_exhausted(period=_MINUTE), threshold=0,
                    description="webhooks: a delivery failed every attempt of its retry schedule (see the job's "
                                "GET /v1/jobs/{id}/deliveries; POST there sends it again)")
        for name, function in webhooks.functions().items():
            self._alarm(f"Webhook{name}Errors", function.metric_errors(period=_MINUTE, statistic="Sum"), threshold=0,
                        description=f"webhook {name.lower()} Lambda raised errors")
        self._alarm("SweeperErrors", sweeper.function.metric_errors(period=_MINUTE, statistic="Sum"), threshold=0,
                    description="job sweeper Lambda raised errors (stale and dead-lettered jobs are not being settled)")
        self._alarm("JobsRecoveredBySweeper", sweeper.metric_recovered(), threshold=0,
                    description="the job sweeper re-queued, failed or canceled runs whose worker or router had died "
                                "in the last 5 minutes (see its log)")
        if collector is not None:
            lane = collector.lane.name
            self._alarm("BatchCollectorErrors", collector.function.metric_errors(period=_MINUTE, statistic="Sum"), threshold=0,
                        description="batch collector Lambda raised errors (batch jobs are not being sent or settled)")
            self._alarm(f"{names.construct_id(lane)}DeadLetters",
                        _maximum(collector.queue.dead_letter_queue.metric_approximate_number_of_messages_visible), threshold=0,
                        description=f"{lane} lane: jobs reached the dead-letter queue (the collector received them "
                                    f"{collector.queue.max_receive_count} times without sending them)")
            self._alarm("BatchOpenTooLong", collector.metric_oldest_open_batch(), threshold=batch_open_alarm_hours * 3600,
                        description=f"a Message Batch has been open over {batch_open_alarm_hours} h (the API ends every batch "
                                    "within 24 h: the collector is not settling it; see its log)")
        if intake is not None:
            dlq = intake.intake_queue.dead_letter_queue
            self._alarm("IntakeDeadLetters", _maximum(dlq.metric_approximate_number_of_messages_visible), threshold=0,
                        description="S3 intake: notifications reached the dead-letter queue (the intake function failed "
                                    f"{intake.intake_queue.max_receive_count} times: the table, S3 or a lane queue was "
                                    "unavailable; an object that cannot run becomes a failed job instead)")
            self._alarm("IntakeErrors", intake.function.metric_errors(period=_MINUTE, statistic="Sum"), threshold=0,
                        description="S3 intake Lambda raised errors")
            self._alarm("IntakeOldestMessage", _maximum(intake.intake_queue.queue.metric_approximate_age_of_oldest_message),
                        threshold=INTAKE_QUEUE_AGE.to_seconds(),
                        description=f"S3 intake: a notification has waited over {INTAKE_QUEUE_AGE.to_minutes():g} min "
                                    "(the intake function is not consuming its queue)")
        self.dashboard = self._dashboard(router, api, workers, webhooks, sweeper)
        if collector is not None:
            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(title="batch lane: oldest open batch (s)", left=[collector.metric_oldest_open_batch()]),
                cloudwatch.GraphWidget(title="batch collector: runs, errors and duration", left=[
                    collector.function.metric_invocations(period=_MINUTE), collector.function.metric_errors(period=_MINUTE),
                ], right=[collector.function.metric_duration(period=_MINUTE, statistic="Maximum")]),
            )

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, *,
               threshold: float, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self, construct_id, metric=metric, threshold=threshold, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING, alarm_description=description)
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.topic))  # recovered: the on-call hears that too
        self.alarms[construct_id] = alarm

    def _dashboard(self, router: lambda_.Function, api: apigw.RestApi, workers: Mapping[str, WorkerService],
                   webhooks: WebhookDispatcher, sweeper: JobSweeper) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="API requests and errors", left=[api.metric_count(period=_MINUTE)],
                                   right=[api.metric_client_error(period=_MINUTE), api.metric_server_error(period=_MINUTE)]),
            cloudwatch.GraphWidget(title="API latency (p50, p99)", left=[
                api.metric_latency(period=_MINUTE, statistic="p50"), api.metric_latency(period=_MINUTE, statistic="p99")]),
            cloudwatch.GraphWidget(title="Router", left=[router.metric_invocations(period=_MINUTE)],
                                   right=[router.metric_errors(period=_MINUTE), router.metric_throttles(period=_MINUTE)]),
            cloudwatch.GraphWidget(title="Router duration (p50, p99)", left=[
                router.metric_duration(period=_MINUTE, statistic="p50"),
                router.metric_duration(period=_MINUTE, statistic="p99")]),
        )
        for lane, worker in workers.items():
            queue, dlq = worker.job_queue.queue, worker.job_queue.dead_letter_queue
            dashboard.add_widgets(
                cloudwatch.GraphWidget(title=f"{lane} lane: backlog and tasks", left=[
                    _maximum(queue.metric_approximate_number_of_messages_visible),
                    _maximum(queue.metric_approximate_number_of_messages_not_visible),
                ], right=[_running_tasks(worker, service, label) for service, label in (
                    (worker.service, "running tasks"), (worker.fallback_service, "on-demand fallback tasks"))
                    if service is not None]),
                cloudwatch.GraphWidget(title=f"{lane} lane: oldest message (s)", left=[
                    _maximum(queue.metric_approximate_age_of_oldest_message)]),
                cloudwatch.GraphWidget(title=f"{lane} lane: dead letters", left=[
                    _maximum(dlq.metric_approximate_number_of_messages_visible)]),
                cloudwatch.GraphWidget(title=f"{lane} lane: worker CPU and memory (%)", left=[
                    worker.service.metric_cpu_utilization(period=_MINUTE),
                    worker.service.metric_memory_utilization(period=_MINUTE)]),
            )
        queue, dlq = webhooks.job_queue.queue, webhooks.job_queue.dead_letter_queue
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="webhooks: hand-overs waiting and dead letters", left=[
                _maximum(queue.metric_approximate_number_of_messages_visible),
                _maximum(queue.metric_approximate_number_of_messages_delayed),
            ], right=[_maximum(dlq.metric_approximate_number_of_messages_visible)]),
            cloudwatch.GraphWidget(title="webhooks: deliveries exhausted", left=[webhooks.metric_exhausted(period=_MINUTE)]),
            cloudwatch.GraphWidget(title="webhooks: dispatcher and sweep", left=[
                function.metric_invocations(period=_MINUTE, label=f"{name} invocations")
                for name, function in webhooks.functions().items()
            ], right=[function.metric_errors(period=_MINUTE, label=f"{name} errors")
                      for name, function in webhooks.functions().items()]),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="sweeper: jobs recovered", left=[sweeper.metric_recovered(period=_MINUTE)]),
            cloudwatch.GraphWidget(title="sweeper: runs, errors and duration", left=[
                sweeper.function.metric_invocations(period=_MINUTE), sweeper.function.metric_errors(period=_MINUTE),
            ], right=[sweeper.function.metric_duration(period=_MINUTE, statistic="Maximum")]),
        )
        return dashboard


def _maximum(metric_method) -> cloudwatch.Metric:
    """A queue metric as the scaling alarms see it: the maximum over each minute."""
    return metric_method(period=_MINUTE, statistic="Maximum")


def _running_tasks(worker: WorkerService, service: ecs.BaseService | None = None,
                   label: str = "running tasks") -> cloudwatch.Metric:
    """Container Insights' running task count of one of the lane's services (its own by default)."""
    service = service or worker.service
    return cloudwatch.Metric(
        namespace="ECS/ContainerInsights", metric_name="RunningTaskCount", period=_MINUTE, statistic="Maximum",
        dimensions_map={"ClusterName": service.cluster.cluster_name, "ServiceName": service.service_name},
        label=label)
