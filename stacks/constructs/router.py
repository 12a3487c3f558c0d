"""The router Lambda: decides per job whether to run Claude inline or queue it on a lane."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import AssetHashType, BundlingOptions, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from jobadapters.settings import RouterSettings
from jobcore.lanes import Lanes
from stacks.constructs import runtime_env
from stacks.constructs.bundling import PipLocalBundling
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.nag import acknowledge
from stacks.constructs.runtime_env import compact_json, lane_environment
from stacks.constructs.storage import JobStorage

LAMBDA_SRC = Path(__file__).resolve().parents[2] / "lambda_src"
HANDLER = "router.handler.handler"
RUNTIME = lambda_.Runtime.PYTHON_3_13
PYTHON_VERSION = "3.13"  # the pip target of the bundle; must match RUNTIME


class RouterFunction(Construct):
    """Creates ``function`` (arm64, Python 3.13, code = ``lambda_src`` packages + pip-installed
    ``lambda_src/requirements.txt``, bundled locally) and its log group.

    It sets exactly the environment ``RouterSettings`` reads (``LANES`` and ``PRICE_OVERRIDES`` as
    ``runtime_env.lane_environment`` makes them, ``LANE_QUEUE_URLS`` with a queue for each queued lane
    in ``queues``), and parses it with ``RouterSettings`` at synth: a bad value fails synth, not requests.
    It grants exactly what the router does, on its own role (no AWS-managed policy): write its log group,
    use job data (``JobStorage.access_policy``; presigned URLs are signed with this role), send (never
    receive) to each lane queue, read both secrets.
    ``reserved_concurrency`` None leaves the function on the account's unreserved pool.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *,
        storage: JobStorage, lanes: Lanes, queues: Mapping[str, JobQueue],
        anthropic_secret: secretsmanager.ISecret, webhook_secret: secretsmanager.ISecret,
        stage: str, model_id: str, timeout: Duration, reserved_concurrency: int | None, job_ttl_days: int,
        task_rates_per_min: Mapping[str, float], price_overrides: Mapping[str, Any],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        environment = {
            **lane_environment(lanes, price_overrides),
            "STAGE": stage,
            "JOBS_TABLE": storage.table.table_name,
            "RESULTS_BUCKET": storage.bucket.bucket_name,
            "LANE_QUEUE_URLS": Stack.of(self).to_json_string({lane: q.queue.queue_url for lane, q in queues.items()}),
            "JOB_TTL_DAYS": str(job_ttl_days),
            "TASK_RATES_PER_MIN": compact_json(dict(task_rates_per_min)),
            "MODEL_ID": model_id,
            "ANTHROPIC_SECRET_ARN": anthropic_secret.secret_arn,
            "WEBHOOK_SECRET_ARN": webhook_secret.secret_arn,
        }
        runtime_env.check_lambda_size(environment, where=self.node.path)
        runtime_env.check(RouterSettings.from_env, environment, where=self.node.path,
                          placeholders={"LANE_QUEUE_URLS": compact_json({lane: f"https://queue/{lane}" for lane in queues})})

        self.log_group = logs.LogGroup(self, "LogGroup", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description="The router Lambda's role")
        self.function = lambda_.Function(
            self, "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(
                str(LAMBDA_SRC),
                exclude=["**/__pycache__", "**/*.pyc", "**/tests"],
                # Hash the sources (pins included), not pip's output: a synth that changes nothing changes nothing.
                asset_hash_type=AssetHashType.SOURCE,
                bundling=BundlingOptions(
                    image=RUNTIME.bundling_image,  # never used: local bundling either succeeds or raises
                    local=PipLocalBundling(source_dir=LAMBDA_SRC, requirements=LAMBDA_SRC / "requirements.txt",
                                           python_version=PYTHON_VERSION),
                ),
            ),
            memory_size=lanes.inline.memory_mb,
            timeout=timeout,
            reserved_concurrent_executions=reserved_concurrency,
            environment=environment,
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            description="Routes each job: Claude inline within the budget, else onto a lane queue.",
        )
        self.log_group.grant_write(self.role)
        storage.grant_job_data(self.role)
        for job_queue in queues.values():
            job_queue.grant_send(self.role)
        anthropic_secret.grant_read(self.role)
        webhook_secret.grant_read(self.role)

        acknowledge(self.function, "AwsSolutions-L1",
                    f"Pinned to {RUNTIME.name}: the bundle's wheels are built for it (pip --python-version "
                    f"{PYTHON_VERSION}) and the worker image runs the same Python; both move together.")
