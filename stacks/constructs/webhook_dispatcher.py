"""The webhook dispatcher: the queue finished jobs' webhooks are handed over on, and the two Lambdas
that make the attempts and sweep for the ones falling due (``lambda_src/dispatcher/handler.py``)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from jobadapters import schema
from jobadapters.settings import DispatcherSettings
from jobadapters.telemetry import EXHAUSTED_METRIC, NAMESPACE, STAGE_DIMENSION, WEBHOOKS_SERVICE
from jobcore.dispatch import WEBHOOK_TIMEOUT_S
from stacks.constructs import runtime_env
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.python_lambda import python_function
from stacks.constructs.storage import JobStorage
from stacks.constructs.traces import grant_trace_export

DISPATCH_HANDLER = "dispatcher.handler.handler"
SWEEP_HANDLER = "dispatcher.handler.sweep"
# What dispatcher.handler publishes through Powertools Metrics (EMF): this namespace, and its service as
# the metric's one dimension, ``service`` (a test checks these against the handler's own objects).
# Hand-overs per invocation: each is one POST of at most WEBHOOK_TIMEOUT_S, made one after another.
BATCH_SIZE = 3
# SQS wants an event-source queue's visibility timeout at six times its function's timeout.
FUNCTION_TIMEOUT = Duration.seconds(schema.WEBHOOK_VISIBILITY_S // 6)
SWEEP_EVERY = Duration.minutes(1)
MEMORY_MB = 256
_MINUTE = Duration.minutes(1)

if 6 * FUNCTION_TIMEOUT.to_seconds() != schema.WEBHOOK_VISIBILITY_S:
    raise ValueError(f"schema.WEBHOOK_VISIBILITY_S = {schema.WEBHOOK_VISIBILITY_S} must be six times a whole "
                     "number of seconds, the dispatcher's timeout")
if BATCH_SIZE * WEBHOOK_TIMEOUT_S >= FUNCTION_TIMEOUT.to_seconds():
    raise ValueError(f"{BATCH_SIZE} attempts of {WEBHOOK_TIMEOUT_S:g} s must fit in the dispatcher's "
                     f"{FUNCTION_TIMEOUT.to_seconds():g} s timeout")


class WebhookDispatcher(Construct):
    """Creates ``job_queue`` (the webhook queue and its DLQ: visibility ``schema.WEBHOOK_VISIBILITY_S``, a
    hand-over received ``schema.WEBHOOK_MAX_RECEIVES`` times goes to the DLQ; the sweep hands a pending
    delivery over again) and two functions from ``code`` (the stack's ``python_lambda.source_code()``),
    each with its own role and log group:

      ``dispatcher``: consumes the queue (batches of ``BATCH_SIZE``, partial batch responses, at most
        ``max_concurrency`` invocations at once), one attempt per hand-over; timeout ``FUNCTION_TIMEOUT`` (a
        sixth of the queue's visibility).
      ``sweep``: run every ``SWEEP_EVERY`` by an EventBridge rule (``schedule``); hands over what falls
        due before the next run. A failed run is not retried: the next one does the same work.

    Both get exactly the environment ``DispatcherSettings`` reads, checked with it at synth; the retry
    schedule is ``retry_schedule_s`` (the config's ``webhook_retry_schedule_s``). Permissions: the
    dispatcher uses job data (``JobStorage.access_policy``: items, the delivery index, results to presign,
    event bodies under ``webhooks/``), consumes and sends to (re-schedules on) the queue, and reads the
    signing secret; the sweep queries the delivery index and sends to the queue, nothing more.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *,
        code: lambda_.Code, storage: JobStorage, webhook_secret: secretsmanager.ISecret,
        stage: str, retry_schedule_s: str, log_retention: logs.RetentionDays, max_concurrency: int,
        traces_endpoint: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.stage = stage  # the dimension of its metrics
        self.job_queue = JobQueue(self, "Delivery", visibility_timeout=Duration.seconds(schema.WEBHOOK_VISIBILITY_S),
                                  max_receive_count=schema.WEBHOOK_MAX_RECEIVES)
        environment = {
            "STAGE": stage,
            "TRACES_ENDPOINT": traces_endpoint,
            **storage.table_environment(),
            "RESULTS_BUCKET": storage.bucket.bucket_name,
            "WEBHOOK_QUEUE_URL": self.job_queue.queue.queue_url,
            "WEBHOOK_SECRET_ARN": webhook_secret.secret_arn,
            "WEBHOOK_RETRY_SCHEDULE_S": retry_schedule_s,
            "WEBHOOK_SWEEP_EVERY_S": str(int(SWEEP_EVERY.to_seconds())),
            # The API's stage is named after the deployment's stage (JobsApi): the links in a webhook's job.
            "API_BASE_PATH": f"/{stage}",
        }
        runtime_env.check_lambda_size(environment, where=self.node.path)
        runtime_env.check(DispatcherSettings.from_env, environment, where=self.node.path)

        dispatcher = python_function(
            Construct(self, "Dispatcher"), code=code, handler=DISPATCH_HANDLER, environment=environment,
            memory_mb=MEMORY_MB, timeout=FUNCTION_TIMEOUT, log_retention=log_retention,
            role_description="The webhook dispatcher Lambda's role",
            description="Makes the webhook attempt each hand-over names, records it, schedules the next.")
        self.dispatcher = dispatcher.function
        dispatcher.function.add_event_source(event_sources.SqsEventSource(
            self.job_queue.queue, batch_size=BATCH_SIZE, report_batch_item_failures=True, max_concurrency=max_concurrency))
        storage.grant_job_data(dispatcher.role)
        self.job_queue.grant_send(dispatcher.role)
        webhook_secret.grant_read(dispatcher.role)
        grant_trace_export(dispatcher.role, traces_endpoint)

        sweep_scope = Construct(self, "Sweep")
        sweep = python_function(
            sweep_scope, code=code, handler=SWEEP_HANDLER, environment=environment, memory_mb=MEMORY_MB,
            timeout=FUNCTION_TIMEOUT, log_retention=log_retention, retry_attempts=0,
            role_description="The webhook sweep Lambda's role",
            description="Hands over every webhook delivery that falls due before its next run.")
        self.sweep = sweep.function
        self.schedule = events.Rule(
            sweep_scope, "Schedule", schedule=events.Schedule.rate(SWEEP_EVERY),
            description="Runs the webhook sweep",
            targets=[targets.LambdaFunction(sweep.function, max_event_age=SWEEP_EVERY)])
        storage.grant_due_deliveries(sweep.role)
        self.job_queue.grant_send(sweep.role)
        grant_trace_export(sweep.role, traces_endpoint)

    def functions(self) -> dict[str, lambda_.Function]:
        return {"Dispatcher": self.dispatcher, "Sweep": self.sweep}

    def metric_exhausted(self, *, period: Duration = _MINUTE) -> cloudwatch.Metric:
        """Deliveries whose every attempt failed (their retry schedule ran out), as the dispatcher counts them."""
        return cloudwatch.Metric(
            namespace=NAMESPACE, metric_name=EXHAUSTED_METRIC, dimensions_map={"service": WEBHOOKS_SERVICE, STAGE_DIMENSION: self.stage},
            statistic="Sum", period=period, label="webhook deliveries exhausted")
