"""The configuration: one typed, validated object from cdk.json; a bad value names its key."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import aws_cdk
import pytest
from infra_support import CDK_JSON, REPO

from stacks.config import ConfigError, PipelineConfig

# One bad value per key; the test below checks that every key has one.
BAD_VALUES = {
    "stage": "Prod_1",
    "model_id": "",
    "worker_model_id": "claude sonnet",
    "inline_budget_s": 26,
    "router_memory_mb": 64,
    "router_timeout_s": 30,
    "router_reserved_concurrency": 0,
    "worker_cpu": 300,
    "worker_memory_mb": 100,
    "worker_concurrency": 0,
    "worker_min_tasks": -1,
    "worker_max_tasks": 21,
    "worker_on_demand_base": "many",
    "cpu_job_timeout_s": 43201,
    "max_receives": 0,
    "gpu_enabled": "yes please",
    "gpu_instance_type": "m5.large",
    "gpu_ami_release": "ami-0123456789abcdef0",
    "gpu_cpu": 64,
    "gpu_memory_mb": 256,
    "gpu_concurrency": 101,
    "gpu_max_tasks": 0,
    "gpu_job_timeout_s": 59,
    "alarm_email": "not-an-address",
    "log_retention_days": 31,
    "job_ttl_days": 0,
    "result_retention_days": 0,
    "api_rate_limit": 0,
    "api_burst_limit": 1.5,
    "task_rates_per_min": '{"summarize": -2}',
    "price_overrides": "[1, 2]",
}


def test_every_key_has_a_bad_value_case():
    assert set(BAD_VALUES) == set(PipelineConfig.keys())


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_a_bad_value_fails_with_a_message_naming_the_key(key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        PipelineConfig.from_mapping({key: BAD_VALUES[key]})


@pytest.mark.parametrize(("values", "keys"), [
    ({"worker_cpu": 256, "worker_memory_mb": 4096}, ("worker_cpu", "worker_memory_mb")),
    ({"inline_budget_s": 20, "router_timeout_s": 22}, ("inline_budget_s", "router_timeout_s")),
    ({"worker_min_tasks": 3, "worker_max_tasks": 2}, ("worker_min_tasks", "worker_max_tasks")),
    ({"worker_on_demand_base": 5, "worker_max_tasks": 4}, ("worker_on_demand_base", "worker_max_tasks")),
    ({"result_retention_days": 7, "job_ttl_days": 30}, ("result_retention_days", "job_ttl_days")),
])
def test_inconsistent_values_name_both_keys(values, keys):
    with pytest.raises(ConfigError) as raised:
        PipelineConfig.from_mapping(values)
    for key in keys:
        assert f"'{key}'" in str(raised.value)


def test_values_given_with_dash_c_arrive_as_strings_and_are_parsed():
    config = PipelineConfig.from_mapping({
        "gpu_enabled": "true", "worker_max_tasks": "6", "router_reserved_concurrency": "25", "stage": "prod",
    })
    assert (config.gpu_enabled, config.worker_max_tasks, config.router_reserved_concurrency, config.stage) == (
        True, 6, 25, "prod")
    assert PipelineConfig.from_mapping({"router_reserved_concurrency": "none"}).router_reserved_concurrency is None
    rates = PipelineConfig.from_mapping({"task_rates_per_min": '{"summarize": 12.5}'}).task_rates_per_min
    assert rates == {"summarize": 12.5}


def test_a_missing_key_keeps_its_default_and_the_defaults_are_valid():
    assert PipelineConfig.from_mapping({}) == PipelineConfig()


def test_cdk_json_holds_every_key_with_the_default_value():
    defaults = PipelineConfig().to_context()
    assert {key: CDK_JSON["context"][key] for key in defaults} == defaults


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PipelineConfig().stage = "prod"  # type: ignore[misc]


def test_cdk_json_carries_the_feature_flags_cdk_init_generates_for_this_aws_cdk_lib():
    jsii_tarball = next((Path(aws_cdk.__file__).parent / "_jsii").glob("aws-cdk-lib@*.jsii.tgz"))
    with tarfile.open(jsii_tarball) as tarball:
        recommended = json.load(tarball.extractfile("package/recommended-feature-flags.json"))
    assert {key: CDK_JSON["context"].get(key) for key in recommended} == recommended
    assert CDK_JSON["app"] == "python3 app.py"


def test_app_py_refuses_a_bad_value_naming_the_key():
    # GIVEN the context the CDK CLI would pass for `cdk synth -c worker_cpu=300`
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({**CDK_JSON["context"], "worker_cpu": "300"}),
           "CDK_OUTDIR": "/nonexistent-never-written"}
    # WHEN the app runs THEN it stops before synthesizing, with a message that names the key
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "configuration error: context key 'worker_cpu' = 300" in result.stderr
