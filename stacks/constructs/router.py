"""The router Lambda: decides per job whether to run Claude inline or queue it on a lane."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Annotations, Duration
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from jobadapters.settings import RouterSettings
from jobcore.capacity import CapacityConfig
from jobcore.lanes import Lanes
from stacks.constructs import runtime_env
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.lane_waker import let_wake
from stacks.constructs.model_access import ANTHROPIC_ONLY, ModelAccess
from stacks.constructs.python_lambda import python_function
from stacks.constructs.runtime_env import queue_url_placeholders, service_environment
from stacks.constructs.storage import JobStorage
from stacks.constructs.traces import grant_trace_export

HANDLER = "router.handler.handler"
LIVE_ALIAS = "live"  # with SnapStart or provisioned concurrency: the alias API Gateway invokes


class RouterFunction(Construct):
    """Creates ``function`` (arm64, Python 3.13, ``code``: the stack's ``python_lambda.source_code()``),
    its ``role`` and its log group.

    It sets exactly the environment ``RouterSettings`` reads (``LANES_FILE``, naming the lane document in ``code``,
    which must be ``source_code(lanes)``, and ``PRICE_OVERRIDES``, as ``runtime_env.code_lane_environment`` makes
    them; ``LANE_QUEUE_URLS`` with a queue for each queued lane
    in ``queues``, ``WEBHOOK_QUEUE_URL``: the webhook dispatcher's queue, ``RESULT_RETENTION_DAYS``: how long
    the bucket keeps results, for a job's ``result_expires_at``), and parses it with
    ``RouterSettings`` at synth: a bad value fails synth, not requests.
    It grants exactly what the router does, on its own role (no AWS-managed policy): write its log group,
    use job data (``JobStorage.access_policy``; presigned URLs are signed with this role), send (never
    receive) to each lane queue and to the webhook queue (a finished job's webhook is handed over there,
    never sent from here), read the Anthropic key.
    ``reserved_concurrency`` None leaves the function on the account's unreserved pool. ``inline_concurrency``
    (``INLINE_CONCURRENCY``): the inline runs it admits at once before queueing new jobs (jobcore.concurrency).
    ``snapstart`` (SnapStart on published versions; ``router.handler`` primes the snapshot) or
    ``provisioned_concurrency`` (that many environments kept initialized) publish a version behind the alias
    ``live`` (``alias``); ``target`` is what API Gateway must invoke: that alias, else the function.
    ``wake_lanes`` adds ``LANE_SERVICES`` and the permission to wake those services.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *,
        code: lambda_.Code, storage: JobStorage, lanes: Lanes, queues: Mapping[str, JobQueue], webhook_queue: JobQueue,
        anthropic_secret: secretsmanager.ISecret, model_access: ModelAccess = ANTHROPIC_ONLY,
        stage: str, model_id: str, timeout: Duration, reserved_concurrency: int | None, job_ttl_days: int,
        result_retention_days: int,
        task_rates_per_min: Mapping[str, float], price_overrides: Mapping[str, Any],
        log_retention: logs.RetentionDays, snapstart: bool = False, provisioned_concurrency: int = 0,
        capacity: CapacityConfig | None = None,
        inline_concurrency: int | None = None,
        tenant_budgets_usd: Mapping[str, float] | None = None, traces_endpoint: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        environment = {
            **service_environment(
                self, lanes=lanes, price_overrides=price_overrides, stage=stage, jobs_table=storage.table.table_name,
                index_shards=storage.shards,
                bucket_name=storage.bucket.bucket_name, queue_urls={lane: q.queue.queue_url for lane, q in queues.items()},
                webhook_queue_url=webhook_queue.queue.queue_url, job_ttl_days=job_ttl_days,
                result_retention_days=result_retention_days, task_rates_per_min=task_rates_per_min, model_id=model_id,
                model_providers=model_access.providers, bedrock_scope=model_access.bedrock_scope,
                tenant_budgets_usd=tenant_budgets_usd, traces_endpoint=traces_endpoint,
                capacity=capacity or CapacityConfig(),  # none: nothing paced
                inline_concurrency=inline_concurrency),
        }
        if model_access.anthropic:  # no key, and no grant to read it, when Anthropic is not a provider
            environment["ANTHROPIC_SECRET_ARN"] = anthropic_secret.secret_arn
        runtime_env.check_lambda_size(environment, where=self.node.path)
        runtime_env.check(RouterSettings.from_env, environment, where=self.node.path, placeholders=queue_url_placeholders(queues),
                          lanes=lanes)
        self._environment, self._placeholders, self._lanes = environment, queue_url_placeholders(queues), lanes

        made = python_function(
            self, code=code, handler=HANDLER, environment=environment, memory_mb=lanes.inline.memory_mb,
            timeout=timeout, reserved_concurrency=reserved_concurrency, log_retention=log_retention, snap_start=snapstart,
            role_description="The router Lambda's role",
            description="Routes each job: Claude inline within the budget, else onto a lane queue.")
        self.function, self.role, self.log_group = made.function, made.role, made.log_group
        # What API Gateway invokes: the function itself, or, to start warm, the alias of its published version.
        self.target: lambda_.IFunction = self.function
        self.alias: lambda_.Alias | None = None
        if snapstart or provisioned_concurrency:
            self.alias = lambda_.Alias(
                self, "Live", alias_name=LIVE_ALIAS, version=self.function.current_version,
                provisioned_concurrent_executions=provisioned_concurrency or None,
                description="What API Gateway invokes: the published version (SnapStart, provisioned concurrency)")
            self.target = self.alias
        if snapstart:
            Annotations.of(self.function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish", "its current version is published, behind the alias API Gateway invokes")
        storage.grant_job_data(self.role)
        for job_queue in queues.values():
            job_queue.grant_send(self.role)
        webhook_queue.grant_send(self.role)
        model_access.grant(self.role, anthropic_secret)
        grant_trace_export(self.role, traces_endpoint)

    def wake_lanes(self, services: Mapping[str, ecs.BaseService]) -> None:
        """Lets the router wake each worker lane's idle service when it queues a job there (``jobcore.wake``):
        ``LANE_SERVICES`` names them, and the role may DescribeServices and UpdateService on exactly those."""
        let_wake(self.function, self.role, services, environment=self._environment, parse=RouterSettings.from_env,
                 where=self.node.path, placeholders=self._placeholders, lanes=self._lanes)
