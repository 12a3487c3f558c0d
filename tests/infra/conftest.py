"""Builds the CDK app once per session for the default config and once with the GPU lane (and other
non-default values) on. Bundling is skipped (``aws:cdk:bundling-stacks: []``): .ci/synth bundles for real."""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # before jsii starts

import pytest  # noqa: E402
from infra_support import Synth, synth  # noqa: E402

# The GPU build also turns on the options that are off by default, so each is synthesized at least once.
GPU_OVERRIDES = {
    "gpu_enabled": "true",  # a string, as `cdk deploy -c gpu_enabled=true` passes it
    "alarm_email": "ops@example.com",
    "router_reserved_concurrency": 50,
    "worker_on_demand_base": 1,
    "worker_min_tasks": 1,
    "task_rates_per_min": '{"summarize": 30}',
    "price_overrides": {"fargate_spot_discount": 0.6},
}


@pytest.fixture(scope="session")
def default_app() -> Synth:
    return synth()


@pytest.fixture(scope="session")
def gpu_app() -> Synth:
    return synth(**GPU_OVERRIDES)
