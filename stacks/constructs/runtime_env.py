"""The hand-off from the CDK app to the runtime: the environment the code reads, checked by that code.

The router and the workers parse their environment with ``jobadapters.settings``; the constructs build
that environment from the configuration. :func:`check` parses it at synth with the same classes, so a
deployment whose functions would refuse their own settings fails ``cdk synth`` instead of every request.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Stack, Token

from jobadapters.schema import IndexShards
from jobadapters.settings import ConfigError
from jobcore.capacity import CapacityConfig
from jobcore.lanes import Lanes
from jobcore.limits import LAMBDA_MAX_ENVIRONMENT_BYTES
from jobcore.providers import DEFAULT_BEDROCK_SCOPE, DEFAULT_PROVIDERS
from stacks.lane_env import (  # re-exported: the constructs' one import
    code_files,
    code_lane_environment,
    compact_json,
    lane_environment,
    service_settings,
)

__all__ = ["code_lane_environment", "compact_json", "lane_environment"]


def service_environment(
    scope: Any, *, lanes: Lanes, price_overrides: Mapping[str, Any], stage: str, jobs_table: str, index_shards: IndexShards,
    bucket_name: str, queue_urls: Mapping[str, str], webhook_queue_url: str, job_ttl_days: int, result_retention_days: int,
    task_rates_per_min: Mapping[str, float], model_id: str, model_providers: Sequence[str] = DEFAULT_PROVIDERS,
    bedrock_scope: str = DEFAULT_BEDROCK_SCOPE,
    tenant_budgets_usd: Mapping[str, float] | None = None, traces_endpoint: str = "",
    capacity: CapacityConfig | None = None, inline_concurrency: int | None = None,
) -> dict[str, str]:
    """What ``jobadapters.wiring.build_service`` reads besides the Claude key: the environment of every
    function that submits jobs (the router; the S3 intake, which never calls the model itself), built in one place:
    the deploy-time names and URLs here, the rest by :func:`stacks.lane_env.service_settings` (which the local
    runtime's router uses too). ``lanes`` are read from the function's code (``LANES_FILE``): :func:`check` them with
    the same ``lanes``."""
    return {
        **code_lane_environment(price_overrides, bedrock_scope),
        **service_settings(
            stage=stage, model_id=model_id, model_providers=model_providers, job_ttl_days=job_ttl_days,
            result_retention_days=result_retention_days, task_rates_per_min=task_rates_per_min,
            tenant_budgets_usd=tenant_budgets_usd, traces_endpoint=traces_endpoint, index_shards=index_shards,
            capacity=capacity, inline_concurrency=inline_concurrency),
        "JOBS_TABLE": jobs_table,
        "RESULTS_BUCKET": bucket_name,
        "LANE_QUEUE_URLS": Stack.of(scope).to_json_string(dict(queue_urls)),
        "WEBHOOK_QUEUE_URL": webhook_queue_url,
    }


def queue_url_placeholders(queues: Mapping[str, Any]) -> dict[str, str]:
    """``check``'s stand-in for LANE_QUEUE_URLS, whose URLs are deploy-time tokens: the runtime parses its shape."""
    return {"LANE_QUEUE_URLS": compact_json({lane: f"https://queue/{lane}" for lane in queues})}


def lane_services_environment(scope: Any, services: Mapping[str, str]) -> dict[str, str]:
    """``LANE_SERVICES`` (``RouterSettings``): each worker lane's ECS service ARN (its cluster is in it), which a
    function that queues jobs may wake (``jobadapters.ecs``); deploy-time tokens, filled in by CloudFormation."""
    return {"LANE_SERVICES": Stack.of(scope).to_json_string(dict(services))}


def lane_services_placeholders(lanes: Any) -> dict[str, str]:
    """``check``'s stand-in for LANE_SERVICES (its ARNs are tokens): the runtime parses its shape."""
    return {"LANE_SERVICES": compact_json({lane: f"arn:aws:ecs:region:account:service/cluster/{lane}" for lane in lanes})}


def check_lambda_size(environment: Mapping[str, str], *, where: str) -> None:
    """Lambda refuses a function whose environment is over 4 KB (keys and values): fail synth instead."""
    size = sum(len(key.encode()) + len(value.encode()) for key, value in environment.items() if not Token.is_unresolved(value))
    if size > LAMBDA_MAX_ENVIRONMENT_BYTES:
        raise ValueError(f"{where}: the environment is {size:,} bytes, over Lambda's {LAMBDA_MAX_ENVIRONMENT_BYTES:,}; "
                         "shorten price_overrides or task_rates_per_min")


# What Lambda and ECS set in every function's and task's environment themselves (never the app): the runtime may read it.
PLATFORM_ENV = {"AWS_REGION": "placeholder-region"}


def check(parse: Callable[[Mapping[str, str]], Any], environment: Mapping[str, str], *, where: str,
          placeholders: Mapping[str, str] | None = None, lanes: Lanes | None = None) -> None:
    """Parse ``environment`` as the runtime will; ValueError naming ``where`` and the reason if it refuses.

    Values that are deploy-time tokens (a queue URL, a table name) stand in as placeholders, or as
    ``placeholders[key]`` where the runtime parses the value's shape (a JSON object of URLs). A function that
    reads its lanes from its code (``LANES_FILE``) is parsed with the code's files as ``source_code(lanes)``
    generates them, written to a scratch directory.
    """
    resolved = {
        **PLATFORM_ENV,
        **{key: (placeholders or {}).get(key, f"placeholder-for-{key.lower()}") if Token.is_unresolved(value) else value
           for key, value in environment.items()},
    }
    with tempfile.TemporaryDirectory(prefix="code-") as code_root:
        if "LANES_FILE" in resolved and not Path(resolved["LANES_FILE"]).is_absolute():  # a file of the code
            if lanes is None:
                raise ValueError(f"{where}: LANES_FILE is set; check it with the lanes source_code() was made with")
            for name, text in code_files(lanes).items():
                (Path(code_root) / name).write_text(text, encoding="utf-8")
            resolved["LANES_FILE"] = str(Path(code_root) / resolved["LANES_FILE"])
        try:
            parse(resolved)
        except ConfigError as error:
            raise ValueError(f"{where}: the runtime would refuse this environment: {error}") from None
