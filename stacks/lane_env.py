"""The lanes' environment values, without the CDK: the stacks put them on every function and task
(:mod:`stacks.constructs.runtime_env`), and the local runtime on its processes, which must not load the
CDK library (jsii starts a Node process) just to write a few JSON strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from jobadapters.schema import INDEX_SHARDS_ENV, IndexShards
from jobcore.capacity import CapacityConfig
from jobcore.lanes import Lanes
from jobcore.providers import DEFAULT_BEDROCK_SCOPE

# The lane document's file in the Lambda code asset (``LaneSettings``: LANES_FILE, relative to the code's root).
LANES_FILE = "lanes.json"


def compact_json(value: Any, *, sort_keys: bool = True) -> str:
    return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"))


def lanes_document(lanes: Lanes) -> str:
    """The lanes as ``Lanes.from_dict`` reads them back. They keep their order (routing takes the first lane that
    fits; the first CPU lane is the fallback)."""
    return compact_json(lanes.to_dict(), sort_keys=False)


def lane_environment(lanes: Lanes, price_overrides: Mapping[str, Any], bedrock_scope: str = DEFAULT_BEDROCK_SCOPE) -> dict[str, str]:
    """``LaneSettings.ENV``, a worker task's: the lanes inline, the price overrides and the Bedrock profile priced
    (the functions that never call a model leave the profile at its default)."""
    return {
        "LANES": lanes_document(lanes),
        "PRICE_OVERRIDES": compact_json(dict(price_overrides)),
        "BEDROCK_PROFILE": bedrock_scope,
    }


def code_lane_environment(
    price_overrides: Mapping[str, Any], bedrock_scope: str = DEFAULT_BEDROCK_SCOPE,
) -> dict[str, str]:
    """``LaneSettings.CODE_ENV``, a Lambda's: the name of the lane document in its code asset
    (``python_lambda.source_code`` writes it there), the price overrides and the Bedrock profile priced. Its size is
    the same for any lanes."""
    return {
        "LANES_FILE": LANES_FILE,
        "PRICE_OVERRIDES": compact_json(dict(price_overrides)),
        "BEDROCK_PROFILE": bedrock_scope,
    }


def code_files(lanes: Lanes) -> dict[str, str]:
    """The files the CDK app generates into the Lambda code asset: the lane document."""
    return {LANES_FILE: lanes_document(lanes)}


def capacity_environment(capacity: CapacityConfig) -> dict[str, str]:
    """What ``jobadapters.settings.capacity_from_env`` reads: the model's budget, for every process that calls the model."""
    return {
        "MODEL_ADMISSION": "on" if capacity.admission else "off",
        "MODEL_RATE_LIMITS": compact_json({family: limits.to_dict() for family, limits in capacity.limits.items()}),
        "BEDROCK_RATE_LIMITS": compact_json({family: limits.to_dict() for family, limits in capacity.bedrock.items()}),
        "TENANT_SHARES": compact_json({tenant: {"weight": share.weight, "max_share": share.max_share,
                                                **({"max_in_flight": share.max_in_flight} if share.max_in_flight else {})}
                                       for tenant, share in capacity.tenants.items()}),
        "INLINE_RESERVED_SHARE": str(capacity.inline_reserved_share),
    }


def providers_value(providers: Sequence[str]) -> str:
    """``MODEL_PROVIDERS`` (``ClaudeSettings``): the providers in the order they are tried, comma-separated."""
    return ",".join(providers)


def service_settings(
    *, stage: str, model_id: str, model_providers: Sequence[str], job_ttl_days: int, result_retention_days: int,
    task_rates_per_min: Mapping[str, float], tenant_budgets_usd: Mapping[str, float] | None, traces_endpoint: str,
    index_shards: IndexShards, capacity: CapacityConfig | None, inline_concurrency: int | None,
) -> dict[str, str]:
    """The token-free part of what ``RouterSettings`` reads, for the deployed functions that submit jobs
    (``runtime_env.service_environment``) and the local router alike, so that a local run has the stage's shards,
    inline budget and model budget of a deploy. ``capacity`` and ``inline_concurrency`` None leave their keys out
    (a function that never runs a job inline)."""
    return {
        "STAGE": stage,
        "MODEL_ID": model_id,
        "MODEL_PROVIDERS": providers_value(model_providers),
        INDEX_SHARDS_ENV: index_shards.to_env(),
        "JOB_TTL_DAYS": str(job_ttl_days),
        "RESULT_RETENTION_DAYS": str(result_retention_days),
        "TASK_RATES_PER_MIN": compact_json(dict(task_rates_per_min)),
        "TENANT_BUDGETS_USD": compact_json(dict(tenant_budgets_usd or {})),
        "TRACES_ENDPOINT": traces_endpoint,
        **({} if capacity is None else capacity_environment(capacity)),
        **({} if inline_concurrency is None else {"INLINE_CONCURRENCY": str(inline_concurrency)}),
    }
