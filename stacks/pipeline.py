"""Adds the pipeline's stacks to an app. ``app.py`` and the tests both go through here."""

from __future__ import annotations

from aws_cdk import App, Tags

from stacks.config import PipelineConfig
from stacks.data_stack import DataStack
from stacks.service_stack import ServiceStack

PROJECT = "JobPipeline"


def add_pipeline(app: App, config: PipelineConfig) -> tuple[DataStack, ServiceStack]:
    """``JobPipeline-<stage>-Data`` (stateful) and ``JobPipeline-<stage>-Service`` (stateless, depends on Data)."""
    prefix = f"{PROJECT}-{config.stage}"
    data = DataStack(app, f"{prefix}-Data", result_retention_days=config.result_retention_days,
                     description="Hybrid AI job pipeline: job table, job bucket, secrets (stateful)")
    service = ServiceStack(app, f"{prefix}-Service", config=config, data=data,
                           description="Hybrid AI job pipeline: API, router, queues, workers, monitoring")
    for stack in (data, service):
        Tags.of(stack).add("project", PROJECT)
        Tags.of(stack).add("stage", config.stage)
    return data, service
