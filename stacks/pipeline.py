"""Adds the pipeline's stacks to an app. ``app.py`` and the tests both go through here."""

from __future__ import annotations

from aws_cdk import App, Environment, Tags

from stacks.config import PipelineConfig
from stacks.data_stack import DataStack
from stacks.service_stack import ServiceStack

PROJECT = "JobPipeline"


def add_pipeline(app: App, config: PipelineConfig, *, default_region: str | None = None,
                 env: Environment | None = None) -> tuple[DataStack, ServiceStack]:
    """``JobPipeline-<stage>-Data`` (stateful) and ``JobPipeline-<stage>-Service`` (stateless, depends on Data).

    ``env``: where the stacks go (None: environment-agnostic, deployed to the CLI's account and region).
    ``default_region``: that region for an environment-agnostic deploy (``CDK_DEFAULT_REGION``), for the
    checks that depend on it (the GPU AMI release); raises :class:`stacks.config.ConfigError` when one fails.
    """
    prefix = f"{PROJECT}-{config.stage}"
    data = DataStack(app, f"{prefix}-Data", result_retention_days=config.result_retention_days, env=env,
                     index_shards=config.index_shards(), legacy_tenant_index=config.legacy_tenant_index,
                     description="Hybrid AI job pipeline: job table, job bucket, secrets (stateful)")
    service = ServiceStack(app, f"{prefix}-Service", config=config, data=data, default_region=default_region, env=env,
                           description="Hybrid AI job pipeline: API, router, queues, workers, monitoring")
    for stack in (data, service):
        Tags.of(stack).add("project", PROJECT)
        Tags.of(stack).add("stage", config.stage)
    return data, service
