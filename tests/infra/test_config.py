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
from infra_support import CDK_JSON, REPO, resources

from jobadapters import settings
from jobadapters.settings import DispatcherSettings, RouterSettings
from jobcore.deliveries import RetrySchedule
from jobcore.lanes import INLINE, Ec2Compute, FargateCompute, LambdaCompute
from jobcore.limits import (
    API_GATEWAY_TIMEOUT_S,
    CPU_UNITS_PER_VCPU,
    FARGATE_SIZES,
    INLINE_FALLBACK_MARGIN_S,
    LAMBDA_MAX_MEMORY_MB,
    LAMBDA_MIN_MEMORY_MB,
    MAX_INLINE_BUDGET_S,
    SQS_EVENT_SOURCE_MIN_CONCURRENCY,
    SQS_MAX_VISIBILITY_S,
)
from stacks.config import ConfigError, PipelineConfig, check_known_keys, gpu_task_memory_limit_mb
from stacks.constructs.runtime_env import compact_json, lane_environment

# One bad value per key; the test below checks that every key has one.
BAD_VALUES = {
    "model_providers": ["anthropic", "anthropic"],
    "bedrock_profile": "apac",
    "stage": "Prod_1",
    "model_id": "",
    "worker_model_id": "claude sonnet",
    "inline_budget_s": 26,
    "router_memory_mb": 64,
    "router_timeout_s": 30,
    "router_reserved_concurrency": 0,
    "router_snapstart": "on",
    "router_provisioned_concurrency": -1,
    "collector_reserved_concurrency": 0,
    "webhook_max_concurrency": 1,  # AWS's minimum is 2
    "intake_max_concurrency": 1001,
    "worker_cpu": 300,
    "worker_memory_mb": 100,
    "worker_concurrency": 0,
    "worker_min_tasks": -1,
    "worker_max_tasks": 21,
    "worker_on_demand_base": "many",
    "worker_on_demand_weight": 101,
    "worker_spot_fallback_after_s": 30,
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
    "embedding_model_s3_uri": "https://example.com/model/",
    "embedding_model_repo": "not a repo",
    "embedding_model_revision": "../main",
    "batch_enabled": "maybe",
    "batch_window_s": 3601,
    "batch_max_attempts": 0,
    "batch_open_alarm_hours": 49,
    "alarm_email": "not-an-address",
    "log_retention_days": 31,
    "job_ttl_days": 0,
    "result_retention_days": 0,
    "tenant_index_shards": 0,
    "watch_index_shards": 257,
    "delivery_index_shards": "four",
    "legacy_tenant_index": "yes",
    "lambda_concurrency_quota": 5,
    "api_rate_limit": 0,
    "api_burst_limit": 1.5,
    "task_rates_per_min": '{"summarize": -2}',
    "price_overrides": "[1, 2]",
    "tenant_budgets_usd": '{"tenant-a": -5}',
    "traces_endpoint": "localhost:4318",
    "lanes": '{"name": "cpu-large"}',
    "webhook_retry_schedule_s": "5,soon",
    "intake_tenant": "not a key id",
    "intake_webhook_url": "http://hooks.example.com/intake",
    "model_admission": "sometimes",
    "model_rate_limits": '{"sonnet-4": {"rpm": 0, "itpm": 1, "otpm": 1}}',
    "bedrock_rate_limits": '{"sonnet-4": {"tpm": 200000}}',  # with model_providers ["anthropic"]: paces nothing
    "tenant_shares": '{"a": {"weight": 0}}',
    "inline_reserved_share": 0.9,
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
    ({"router_snapstart": True, "router_provisioned_concurrency": 2}, ("router_snapstart", "router_provisioned_concurrency")),
    ({"router_provisioned_concurrency": 20, "router_reserved_concurrency": 10},
     ("router_provisioned_concurrency", "router_reserved_concurrency")),
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
    rates = PipelineConfig.from_mapping({"task_rates_per_min": '{"documents.summarize": 12.5}'}).task_rates_per_min
    assert rates == {"documents.summarize": 12.5}
    overrides = PipelineConfig.from_mapping({"price_overrides": '{"fargate": {"spot_discount": 0.6}}'})
    assert overrides.price_overrides == {"fargate": {"spot_discount": 0.6}}
    assert overrides.prices().fargate.spot_discount == 0.6


def test_a_missing_key_keeps_its_default_and_the_defaults_are_valid():
    assert PipelineConfig.from_mapping({}) == PipelineConfig()


def test_cdk_json_holds_every_key_with_the_default_value():
    defaults = PipelineConfig().to_context()
    assert {key: CDK_JSON["context"][key] for key in defaults} == defaults
    # ... and no key the configuration no longer reads (the rest are CDK feature flags).
    assert {key for key in CDK_JSON["context"] if not key.startswith("@")} == set(defaults)
    assert PipelineConfig.from_mapping(CDK_JSON["context"]) == PipelineConfig()


class TestUnknownKeys:
    """A misspelt key would be ignored and its default deployed: it is refused, naming the nearest known key."""

    @pytest.mark.parametrize(("key", "nearest"), [
        ("worker_concurency", "worker_concurrency"),
        ("gpu_memory", "gpu_memory_mb"),
        ("worker-max-tasks", "worker_max_tasks"),
        ("Stage", "stage"),
    ])
    def test_a_misspelt_key_fails_suggesting_the_nearest_one(self, key, nearest):
        with pytest.raises(ConfigError) as raised:
            PipelineConfig.from_mapping({**CDK_JSON["context"], key: 16})
        assert str(raised.value) == f"context key {key!r} is not a setting of this pipeline: did you mean {nearest!r}?"

    def test_a_key_like_no_other_still_fails_naming_itself(self):
        with pytest.raises(ConfigError, match="context key 'zzz' is not a setting of this pipeline: see the keys"):
            PipelineConfig.from_mapping({"zzz": 1})

    @pytest.mark.parametrize("key", [
        "@aws-cdk/aws-lambda:recognizeLayerVersion",  # feature flags, also a flag this aws-cdk-lib does not know
        "@aws-cdk/core:someFutureFlag",
        "@aws-cdk-containers/ecs-service-extensions:enableDefaultLogDriver",
        "aws:cdk:bundling-stacks",  # the CLI's own switches
        "aws:cdk:enable-path-metadata",
        "aws:cdk:toolkit:default-region",
        "acknowledged-issue-numbers",  # written by `cdk acknowledge`
        "cli-telemetry",  # written by `cdk cli-telemetry --disable`
        "availability-zones:account=123456789012:region=us-east-1",  # a context provider's cached lookup
        "ssm:account=123456789012:parameterName=/x:region=us-east-1",
    ])
    def test_the_cdks_own_keys_pass(self, key):
        assert PipelineConfig.from_mapping({**CDK_JSON["context"], key: [1]}) == PipelineConfig()

    def test_the_known_keys_are_the_fields_of_the_config(self):
        check_known_keys({key: None for key in PipelineConfig.keys()})
        assert {"worker_concurrency", "gpu_memory_mb", "collector_reserved_concurrency"} <= set(PipelineConfig.keys())

    def test_app_py_refuses_a_misspelt_key(self):
        env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({**CDK_JSON["context"], "worker_concurency": "8"}),
               "CDK_OUTDIR": "/nonexistent-never-written"}
        result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0
        assert ("configuration error: context key 'worker_concurency' is not a setting of this pipeline: "
                "did you mean 'worker_concurrency'?") in result.stderr


class TestGpuTaskFitsItsInstance:
    """A GPU task larger than its instance synthesizes, deploys, and is never placed: synth refuses it."""

    def test_the_limits_are_the_instance_size_less_the_agents_headroom(self):
        # g5.xlarge: 4 vCPU, 16 GiB in prices.json; 5 % of 16,384 MiB kept for the agent and the system.
        assert gpu_task_memory_limit_mb(16) == 15564
        config = PipelineConfig.from_mapping({"gpu_instance_type": "g5.xlarge", "gpu_cpu": 4096, "gpu_memory_mb": 15564})
        assert (config.gpu_cpu, config.gpu_memory_mb) == (4096, 15564)

    @pytest.mark.parametrize(("values", "keys", "detail"), [
        ({"gpu_memory_mb": 16384}, ("gpu_memory_mb", "gpu_instance_type"), "at most 15564 MiB"),
        ({"gpu_memory_mb": 15565}, ("gpu_memory_mb", "gpu_instance_type"), "at most 15564 MiB"),
        ({"gpu_cpu": 8192}, ("gpu_cpu", "gpu_instance_type"), "at most 4096 CPU units"),
        ({"gpu_cpu": 4097, "gpu_enabled": True}, ("gpu_cpu", "gpu_instance_type"), "at most 4096 CPU units"),
    ])
    def test_a_task_larger_than_a_g5_xlarge_fails_naming_both_keys(self, values, keys, detail):
        with pytest.raises(ConfigError) as raised:
            PipelineConfig.from_mapping({"gpu_instance_type": "g5.xlarge", **values})
        message = str(raised.value)
        assert all(f"'{key}'" in message for key in keys) and detail in message
        assert "g5.xlarge has 4 vCPU and 16 GiB" in message

    def test_a_larger_instance_takes_the_larger_task(self):
        config = PipelineConfig.from_mapping({"gpu_instance_type": "g5.2xlarge", "gpu_cpu": 8192, "gpu_memory_mb": 16384})
        assert config.lanes().get("gpu").memory_mb == 16384

    def test_an_instance_added_by_price_overrides_is_sized_by_them(self):
        g6e = {"hour": 1.861, "vcpu": 4, "memory_gib": 32, "gpus": 1, "gpu_model": "L40S"}
        overrides = {"ec2": {"instances": {"g6e.xlarge": g6e}}}
        assert PipelineConfig.from_mapping({"gpu_instance_type": "g6e.xlarge", "gpu_memory_mb": 30000,
                                            "price_overrides": overrides}).gpu_memory_mb == 30000
        with pytest.raises(ConfigError, match="at most 31129 MiB"):
            PipelineConfig.from_mapping({"gpu_instance_type": "g6e.xlarge", "gpu_memory_mb": 32768,
                                         "price_overrides": overrides})


class TestANewAccount:
    """The defaults deploy in a new account, whose Lambda concurrency quota can be 10: Lambda refuses any reserved
    concurrency that leaves fewer than 100 unreserved executions, and an SQS event source without a maximum
    concurrency could take all of them from the router."""

    def test_no_function_reserves_concurrency_by_default(self, default_app):
        for template in (default_app.data_json, default_app.service_json):
            functions = resources(template, "AWS::Lambda::Function")
            assert functions
            assert {name for name, f in functions.items() if "ReservedConcurrentExecutions" in f["Properties"]} == set()
        assert PipelineConfig().router_reserved_concurrency is None and PipelineConfig().collector_reserved_concurrency is None

    def test_every_sqs_event_source_has_a_maximum_concurrency(self, default_app, gpu_app):
        for app in (default_app, gpu_app):
            mappings = resources(app.service_json, "AWS::Lambda::EventSourceMapping")
            assert len(mappings) == 2  # the webhook dispatcher's and the S3 intake's
            for name, mapping in mappings.items():
                assert mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"] >= SQS_EVENT_SOURCE_MIN_CONCURRENCY, name


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


# Values the CDK-side rules cannot see but the runtime refuses: the config parses them with the runtime's
# own code (jobcore.pricing, jobcore.tasks, jobcore.costing), so they fail synth, naming the key and the
# detail, instead of every request. (key, value, a detail the message must name)
RUNTIME_REJECTS = [
    ("price_overrides", {"fargate_spot_discount": 0.6}, "fargate_spot_discount"),
    ("price_overrides", {"fargate": {"spot_discountt": 0.5}}, "fargate.spot_discountt"),
    ("price_overrides", {"fargate": {"spot_discount": "cheap"}}, "fargate.spot_discount"),
    ("price_overrides", {"fargate": {"spot_discount": 1.5}}, "fargate.spot_discount"),
    ("price_overrides", {"fargate": {"spot_discount": -0.1}}, "fargate.spot_discount"),
    ("price_overrides", {"fargate": 0.6}, "fargate"),
    ("price_overrides", '{"lambda": {"gb_second": {"arm64": true}}}', "lambda.gb_second.arm64"),
    ("price_overrides", {"ec2": {"instances": {"g4dn.xlarge": {"hour": 0.526}}}}, "ec2.instances.g4dn.xlarge"),
    ("task_rates_per_min", {"summarize": 3}, "summarize"),
    ("task_rates_per_min", '{"summarize": 3}', "summarize"),
    ("task_rates_per_min", {"documents.summarize": -1}, "documents.summarize"),
    ("task_rates_per_min", {"documents.summarize": "often"}, "documents.summarize"),
    ("task_rates_per_min", {"invoice.extract": True}, "invoice.extract"),
    ("task_rates_per_min", {"invoice.extract": None}, "invoice.extract"),
    ("task_rates_per_min", '{"claude.messages": NaN}', "claude.messages"),
    ("task_rates_per_min", '{"claude.messages": Infinity}', "claude.messages"),
    ("gpu_instance_type", "g4dn.xlarge", "g4dn.xlarge"),  # a GPU type ECS can use, but not in prices.json
]
RUNTIME_REJECT_IDS = [f"{key}={value}" for key, value, _ in RUNTIME_REJECTS]
G4DN_XLARGE = {"hour": 0.526, "vcpu": 4, "memory_gib": 16, "gpus": 1, "gpu_model": "T4"}


@pytest.mark.parametrize(("key", "value", "detail"), RUNTIME_REJECTS, ids=RUNTIME_REJECT_IDS)
def test_a_value_the_runtime_would_refuse_fails_naming_the_key(key, value, detail):
    with pytest.raises(ConfigError, match=f"'{key}'") as raised:
        PipelineConfig.from_mapping({key: value})
    assert detail in str(raised.value)
    # also with the GPU lane on, where every lane is deployed
    with pytest.raises(ConfigError, match=f"'{key}'"):
        PipelineConfig.from_mapping({key: value, "gpu_enabled": True})


@pytest.mark.parametrize("overrides", [
    '{"fargate": {"spot_discount": NaN}}',
    '{"lambda": {"request_per_million": Infinity}}',
    '{"ec2": {"instances": {"g5.xlarge": {"hour": NaN}}}}',
])
def test_a_price_that_is_not_a_finite_number_fails_naming_the_key(overrides):
    with pytest.raises(ConfigError, match="'price_overrides'"):
        PipelineConfig.from_mapping({"price_overrides": overrides})


def _router_env(lanes: dict, *, price_overrides: object = None, task_rates: object = None) -> dict[str, str]:
    return {
        "LANES": compact_json(lanes), "PRICE_OVERRIDES": compact_json(price_overrides or {}),
        "TASK_RATES_PER_MIN": compact_json(task_rates or {}), "JOBS_TABLE": "jobs", "RESULTS_BUCKET": "results",
        "LANE_QUEUE_URLS": compact_json({"cpu": "https://sqs.example/cpu", "batch": "https://sqs.example/batch"}),
        "WEBHOOK_QUEUE_URL": "https://sqs.example/webhooks", "ANTHROPIC_SECRET_ARN": "arn:anthropic",
    }


@pytest.mark.parametrize(("key", "value", "detail"), RUNTIME_REJECTS, ids=RUNTIME_REJECT_IDS)
def test_the_runtime_refuses_the_same_values(key, value, detail):
    # GIVEN the environment the router would get with the default config but this one value
    parsed = json.loads(value) if isinstance(value, str) and key != "gpu_instance_type" else value
    lanes = PipelineConfig().lanes().to_dict()
    if key == "gpu_instance_type":
        lanes["gpu"]["compute"]["instance"] = value
    env = _router_env(lanes, price_overrides=parsed if key == "price_overrides" else None,
                      task_rates=parsed if key == "task_rates_per_min" else None)
    RouterSettings.from_env(_router_env(PipelineConfig().lanes().to_dict()))  # the baseline parses
    # WHEN the router parses it THEN it refuses it, as the config did
    with pytest.raises(settings.ConfigError) as raised:
        RouterSettings.from_env(env)
    assert detail in str(raised.value)


@pytest.mark.parametrize("overrides", [
    {"ec2": {"instances": {"g4dn.xlarge": G4DN_XLARGE}}},
    json.dumps({"ec2": {"instances": {"g4dn.xlarge": G4DN_XLARGE}}}),  # as `-c price_overrides=...` gives it
])
def test_an_instance_type_missing_from_the_price_file_is_accepted_once_overrides_price_it(overrides):
    config = PipelineConfig.from_mapping({"gpu_enabled": "true", "gpu_instance_type": "g4dn.xlarge",
                                          "price_overrides": overrides})
    gpu = config.lanes().get("gpu")
    assert (gpu.enabled, gpu.compute) == (True, Ec2Compute(instance="g4dn.xlarge"))
    instance = config.prices().ec2.instances["g4dn.xlarge"]
    assert (instance.hour, instance.vcpu, instance.memory_gib, instance.gpus, instance.gpu_model) == (
        0.526, 4, 16, 1, "T4")
    # and the runtime, given the same lanes and overrides, accepts them too
    env = _router_env(config.lanes().to_dict(), price_overrides=config.price_overrides)
    env["LANE_QUEUE_URLS"] = compact_json({"cpu": "https://sqs.example/cpu", "gpu": "https://sqs.example/gpu",
                                           "batch": "https://sqs.example/batch"})
    assert RouterSettings.from_env(env).lanes.prices.ec2.instances["g4dn.xlarge"].hour == 0.526


class TestWebhookRetrySchedule:
    """``webhook_retry_schedule_s`` is parsed at synth by the dispatcher's own parser (jobcore.deliveries)."""

    def test_the_default_is_the_dispatchers_default_schedule(self):
        assert RetrySchedule.parse(PipelineConfig().webhook_retry_schedule_s) == RetrySchedule()
        assert PipelineConfig().webhook_retry_schedule_s == "5,300,1800,7200,18000,36000,36000"

    @pytest.mark.parametrize(("value", "detail"), [
        ("5,soon", "comma-separated seconds"),
        ("5,-300", "non-negative"),
        ("5,nan", "non-negative"),
        ("inf", "non-negative"),
        ("", "comma-separated seconds"),
        (" , ", "comma-separated seconds"),
    ])
    def test_a_schedule_the_dispatcher_would_refuse_fails_naming_the_key(self, value, detail):
        with pytest.raises(ConfigError, match="'webhook_retry_schedule_s'") as raised:
            PipelineConfig.from_mapping({"webhook_retry_schedule_s": value})
        assert detail in str(raised.value)

    @pytest.mark.parametrize("value", ["5,soon", "5,-300", "5,nan", "inf"])
    def test_the_dispatcher_refuses_the_same_values(self, value):
        env = {"JOBS_TABLE": "jobs", "RESULTS_BUCKET": "results", "WEBHOOK_QUEUE_URL": "https://sqs.example/webhooks",
               "WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:webhook"}
        DispatcherSettings.from_env({**env, "WEBHOOK_RETRY_SCHEDULE_S": "5,300"})  # the baseline parses
        with pytest.raises(settings.ConfigError, match="WEBHOOK_RETRY_SCHEDULE_S"):
            DispatcherSettings.from_env({**env, "WEBHOOK_RETRY_SCHEDULE_S": value})

    def test_a_schedule_given_with_dash_c_is_kept_as_written(self):
        config = PipelineConfig.from_mapping({"webhook_retry_schedule_s": " 10, 60 ,600 "})
        assert config.webhook_retry_schedule_s == "10, 60 ,600"
        assert RetrySchedule.parse(config.webhook_retry_schedule_s).gaps_s == (10, 60, 600)


def test_the_price_file_instance_types_are_accepted_without_overrides():
    for instance in ("g5.xlarge", "g5.2xlarge", "g6.xlarge"):
        assert PipelineConfig.from_mapping({"gpu_instance_type": instance}).lanes().get("gpu").compute.instance == instance


class TestLanes:
    def test_default_lanes_are_inline_cpu_and_batch_with_the_gpu_lane_off(self):
        config = PipelineConfig()
        lanes = config.lanes()
        assert [lane.name for lane in lanes] == [INLINE, "cpu", "gpu", "batch"]
        assert [lane.name for lane in lanes.queued()] == ["cpu", "batch"]
        assert [lane.name for lane in lanes.worker_lanes()] == ["cpu"]
        assert lanes.batch_lane is not None and lanes.batch_lane.name == "batch"
        assert PipelineConfig.from_mapping({"batch_enabled": False}).lanes().batch_lane is None
        assert lanes.fallback.name == "cpu"
        assert lanes.gpu_lanes() == ()
        assert not lanes.get("gpu").enabled

    def test_lane_sizes_come_from_the_config(self):
        config = PipelineConfig.from_mapping({
            "gpu_enabled": True, "inline_budget_s": 15, "router_memory_mb": 2048, "worker_cpu": 2048,
            "worker_memory_mb": 8192, "worker_concurrency": 5, "cpu_job_timeout_s": 600,
            "gpu_memory_mb": 12000, "gpu_concurrency": 3, "gpu_job_timeout_s": 3600, "gpu_instance_type": "g6.xlarge",
        })
        lanes = config.lanes()
        inline, cpu, gpu = lanes.inline, lanes.get("cpu"), lanes.get("gpu")
        assert (inline.queued, inline.memory_mb, inline.time_limit_s, inline.compute) == (
            False, 2048, 15, LambdaCompute(memory_mb=2048, arch="arm64"))
        assert (cpu.queued, cpu.gpu, cpu.memory_mb, cpu.time_limit_s, cpu.concurrency, cpu.compute) == (
            True, False, 8192, 600, 5, FargateCompute(vcpu=2048 / CPU_UNITS_PER_VCPU, memory_mb=8192, spot=True))
        assert (gpu.queued, gpu.gpu, gpu.enabled, gpu.memory_mb, gpu.time_limit_s, gpu.concurrency, gpu.compute) == (
            True, True, True, 12000, 3600, 3, Ec2Compute(instance="g6.xlarge"))
        assert [lane.name for lane in lanes.queued()] == ["cpu", "gpu", "batch"]

    def test_an_on_demand_base_prices_the_cpu_lane_as_on_demand(self):
        assert PipelineConfig().lanes().get("cpu").compute.spot is True
        assert PipelineConfig.from_mapping({"worker_on_demand_base": 1}).lanes().get("cpu").compute.spot is False

    @pytest.mark.parametrize("context", [{}, {"gpu_enabled": True}, {"worker_on_demand_base": 2}])
    def test_lanes_survive_the_trip_through_the_environment(self, context):
        config = PipelineConfig.from_mapping(context)
        env = lane_environment(config.lanes(), config.price_overrides)
        parsed = settings.LaneSettings.from_env(env)
        assert {lane.name: lane for lane in parsed.lanes} == {lane.name: lane for lane in config.lanes()}
        assert parsed.prices == config.prices()

    def test_lanes_keep_their_order_through_the_environment(self):
        config = PipelineConfig.from_mapping({"gpu_enabled": True})
        parsed = settings.LaneSettings.from_env(lane_environment(config.lanes(), config.price_overrides))
        assert [lane.name for lane in parsed.lanes] == [lane.name for lane in config.lanes()]


class TestPlatformLimits:
    """The bounds of the config are the platform's, from jobcore.limits: at the limit passes, past it fails."""

    def test_inline_budget_leaves_the_fallback_margin_under_api_gateway(self):
        assert MAX_INLINE_BUDGET_S + INLINE_FALLBACK_MARGIN_S < API_GATEWAY_TIMEOUT_S
        config = PipelineConfig.from_mapping({"inline_budget_s": MAX_INLINE_BUDGET_S,
                                              "router_timeout_s": MAX_INLINE_BUDGET_S + INLINE_FALLBACK_MARGIN_S})
        assert config.lanes().inline.time_limit_s == MAX_INLINE_BUDGET_S
        with pytest.raises(ConfigError, match="'inline_budget_s'"):
            PipelineConfig.from_mapping({"inline_budget_s": MAX_INLINE_BUDGET_S + 1,
                                         "router_timeout_s": API_GATEWAY_TIMEOUT_S})

    def test_router_timeout_is_at_most_api_gateway_s(self):
        assert PipelineConfig.from_mapping({"router_timeout_s": API_GATEWAY_TIMEOUT_S}).router_timeout_s == 29
        with pytest.raises(ConfigError, match="'router_timeout_s'"):
            PipelineConfig.from_mapping({"router_timeout_s": API_GATEWAY_TIMEOUT_S + 1})

    def test_router_memory_is_within_lambda_limits(self):
        for memory in (LAMBDA_MIN_MEMORY_MB, LAMBDA_MAX_MEMORY_MB):
            assert PipelineConfig.from_mapping({"router_memory_mb": memory}).lanes().inline.memory_mb == memory
        for memory in (LAMBDA_MIN_MEMORY_MB - 1, LAMBDA_MAX_MEMORY_MB + 1):
            with pytest.raises(ConfigError, match="'router_memory_mb'"):
                PipelineConfig.from_mapping({"router_memory_mb": memory})

    @pytest.mark.parametrize("cpu", sorted(FARGATE_SIZES))
    def test_every_fargate_size_is_accepted_and_priced(self, cpu):
        sizes = FARGATE_SIZES[cpu]
        for memory in (sizes[0], sizes[-1]):
            config = PipelineConfig.from_mapping({"worker_cpu": cpu, "worker_memory_mb": memory})
            assert config.lanes().get("cpu").compute == FargateCompute(
                vcpu=cpu / CPU_UNITS_PER_VCPU, memory_mb=memory, spot=True)
        with pytest.raises(ConfigError, match="'worker_memory_mb'"):
            PipelineConfig.from_mapping({"worker_cpu": cpu, "worker_memory_mb": sizes[-1] + sizes.step})

    def test_job_timeouts_are_at_most_the_sqs_visibility_limit(self):
        config = PipelineConfig.from_mapping({"cpu_job_timeout_s": SQS_MAX_VISIBILITY_S,
                                              "gpu_job_timeout_s": SQS_MAX_VISIBILITY_S})
        assert {lane.time_limit_s for lane in config.lanes().worker_lanes() + config.lanes().gpu_lanes(enabled=False)} == {
            SQS_MAX_VISIBILITY_S}
        for key in ("cpu_job_timeout_s", "gpu_job_timeout_s"):
            with pytest.raises(ConfigError, match=f"'{key}'"):
                PipelineConfig.from_mapping({key: SQS_MAX_VISIBILITY_S + 1})


def test_jobs_must_outlive_the_webhook_schedule_that_lives_on_them():
    # The default schedule runs up to 29.7 h with jitter: one day of job retention would cut it short.
    with pytest.raises(ConfigError, match="'job_ttl_days' and 'webhook_retry_schedule_s'"):
        PipelineConfig.from_mapping({"job_ttl_days": 1, "result_retention_days": 1})
    assert PipelineConfig.from_mapping({"job_ttl_days": 1, "result_retention_days": 1,
                                        "webhook_retry_schedule_s": "5,300,1800"}).job_ttl_days == 1


def test_the_gpu_lane_needs_an_embedding_model():
    with pytest.raises(ConfigError, match="embedding model"):
        PipelineConfig(gpu_enabled=True, embedding_model_s3_uri="", embedding_model_repo="")
    assert PipelineConfig(gpu_enabled=True, embedding_model_s3_uri="s3://models-bucket/minilm/", embedding_model_repo="")
    assert PipelineConfig(gpu_enabled=False, embedding_model_repo="")


def test_the_router_budget_is_its_reservation_or_the_quota_less_the_other_functions_and_inline_holds_nine_tenths():
    from jobcore.concurrency import INLINE_SHARE

    unreserved = PipelineConfig(lambda_concurrency_quota=1000, webhook_max_concurrency=5, intake_max_concurrency=2)
    assert unreserved.router_concurrency() == 1000 - 5 - 2 - 1 - 1  # the collector's pass and the sweeper's
    assert unreserved.inline_concurrency() == int(991 * INLINE_SHARE) == 891
    assert PipelineConfig(router_reserved_concurrency=200).inline_concurrency() == 180


def test_tenant_budgets_are_read_from_json_and_checked_by_the_runtimes_parser():
    config = PipelineConfig.from_mapping({"tenant_budgets_usd": '{"tenant-a": 25, "tenant-b": 0.5}'})
    assert config.tenant_budgets_usd == {"tenant-a": 25, "tenant-b": 0.5}
    with pytest.raises(ConfigError, match="tenant_budgets_usd.*'a b' is not a tenant"):
        PipelineConfig.from_mapping({"tenant_budgets_usd": '{"a b": 1}'})
