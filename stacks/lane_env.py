"""The lanes' environment values, without the CDK: the stacks put them on every function and task
(:mod:`stacks.constructs.runtime_env`), and the local runtime on its processes, which must not load the
CDK library (jsii starts a Node process) just to write a few JSON strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jobcore.capacity import CapacityConfig
from jobcore.lanes import Lanes
from jobcore.providers import DEFAULT_BEDROCK_SCOPE


def compact_json(value: Any, *, sort_keys: bool = True) -> str:
    return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"))


def lane_environment(lanes: Lanes, price_overrides: Mapping[str, Any], bedrock_scope: str = DEFAULT_BEDROCK_SCOPE) -> dict[str, str]:
    """``LaneSettings.ENV``: the lanes, the price overrides and the Bedrock profile priced, the same for the router
    and every worker (the functions that never call a model leave the profile at its default).

    The lanes keep their order (routing takes the first lane that fits; the first CPU lane is the fallback).
    """
    return {
        "LANES": compact_json(lanes.to_dict(), sort_keys=False),
        "PRICE_OVERRIDES": compact_json(dict(price_overrides)),
        "BEDROCK_PROFILE": bedrock_scope,
    }


def capacity_environment(capacity: CapacityConfig) -> dict[str, str]:
    """What ``jobadapters.settings.capacity_from_env`` reads: the model's budget, for every process that calls the model."""
    return {
        "MODEL_ADMISSION": "on" if capacity.admission else "off",
        "MODEL_RATE_LIMITS": compact_json({family: limits.to_dict() for family, limits in capacity.limits.items()}),
        "TENANT_SHARES": compact_json({tenant: {"weight": share.weight, "max_share": share.max_share,
                                                **({"max_in_flight": share.max_in_flight} if share.max_in_flight else {})}
                                       for tenant, share in capacity.tenants.items()}),
        "INLINE_RESERVED_SHARE": str(capacity.inline_reserved_share),
    }
