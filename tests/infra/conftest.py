"""Builds the CDK app once per session for the default config and once with the GPU lane (and other
non-default values) on. Bundling is skipped (``aws:cdk:bundling-stacks: []``): .ci/synth bundles for real."""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # before jsii starts

import pytest  # noqa: E402
from infra_support import GPU_OVERRIDES, GPU_REGION, Synth, synth  # noqa: E402


@pytest.fixture(scope="session")
def default_app() -> Synth:
    return synth()


@pytest.fixture(scope="session")
def gpu_app() -> Synth:
    return synth(default_region=GPU_REGION, **GPU_OVERRIDES)
