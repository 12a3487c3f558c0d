"""The hand-off to the runtime: the environment each function and task gets is one its own code parses.

``runtime_env.check`` parses it at synth (the backstop); the tests below also parse what was actually
synthesized, with CloudFormation's values replaced by placeholders, as the deployed code will.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from infra_support import (
    context,
    deployed_environment,
    dispatcher_variables,
    lane_queue_id,
    router_variables,
    sweeper_variables,
    synth,
    worker_variables,
)

from jobadapters.settings import DispatcherSettings, RouterSettings, SweeperSettings, WorkerSettings
from jobcore.deliveries import RetrySchedule
from local.pipeline import LocalPipeline, Options, local_service_settings
from local.resources import LocalResources
from stacks.config import PipelineConfig
from stacks.constructs import runtime_env
from stacks.constructs.cluster import WorkerCluster
from stacks.constructs.compute import FargateSpot
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.job_sweeper import JobSweeper
from stacks.constructs.python_lambda import source_code
from stacks.constructs.router import RouterFunction
from stacks.constructs.runtime_env import code_lane_environment, compact_json, lane_environment
from stacks.constructs.secrets import PipelineSecrets
from stacks.constructs.storage import JobStorage
from stacks.constructs.webhook_dispatcher import WebhookDispatcher
from stacks.constructs.worker_service import WorkerService
from stacks.lane_env import LANES_FILE, capacity_environment, code_files

WHERE = "Pipeline/Service/Router"
# What local.pipeline's router environment names of the local resources (moto's), as stand-ins.
LOCAL_RESOURCES = LocalResources(
    table="jobs", bucket="results", queue_urls={"cpu": "http://sqs/cpu"}, dlq_urls={}, webhook_queue_url="http://sqs/webhooks",
    webhook_dlq_url="", lane_services={"cpu": "arn:aws:ecs:us-east-1:000000000000:service/workers/cpu"})
WEBHOOK_QUEUE = "WebhooksDeliveryQueueAF018C07"


_DOCUMENTS = Path(tempfile.mkdtemp(prefix="lanes-"))


def lanes_file(config: PipelineConfig) -> str:
    """The lane document of ``config``'s code, as a file (what ``LANES_FILE`` names, resolved)."""
    text = code_files(config.lanes())[LANES_FILE]
    path = _DOCUMENTS / f"{abs(hash(text))}.json"
    path.write_text(text, encoding="utf-8")
    return str(path)


def router_env(config: PipelineConfig) -> dict[str, str]:
    """The environment RouterFunction builds for ``config``, with plain stand-ins for the deploy-time values
    (``runtime_env.check`` finds its ``LANES_FILE`` in the code it is given the lanes of)."""
    return {
        **code_lane_environment(config.price_overrides), "LANES_FILE": lanes_file(config),
        "STAGE": config.stage, "JOBS_TABLE": "jobs", "INDEX_SHARDS": config.index_shards().to_env(),
        "INLINE_CONCURRENCY": str(config.inline_concurrency()), "RESULTS_BUCKET": "results",
        "LANE_QUEUE_URLS": compact_json({lane.name: f"https://sqs.example/{lane.name}" for lane in config.lanes().queued()}),
        "WEBHOOK_QUEUE_URL": "https://sqs.example/webhooks", "JOB_TTL_DAYS": str(config.job_ttl_days),
        "RESULT_RETENTION_DAYS": str(config.result_retention_days),
        "TASK_RATES_PER_MIN": compact_json(config.task_rates_per_min), "MODEL_ID": config.model_id,
        "ANTHROPIC_SECRET_ARN": "arn:anthropic", "MODEL_PROVIDERS": ",".join(config.model_providers),
        "TENANT_BUDGETS_USD": compact_json(config.tenant_budgets_usd), "TRACES_ENDPOINT": config.traces_endpoint,
        "LANE_SERVICES": compact_json({lane.name: f"arn:aws:ecs:us-east-1:111122223333:service/workers/{lane.name}"
                                       for lane in config.lanes().worker_lanes()}),
        **capacity_environment(config.capacity()),
    }


def worker_env(config: PipelineConfig, lane: str) -> dict[str, str]:
    """The environment WorkerService builds for ``lane``, likewise."""
    return {
        **lane_environment(config.lanes(), config.price_overrides),
        "STAGE": config.stage, "LANE": lane, "QUEUE_URL": f"https://sqs.example/{lane}", "JOBS_TABLE": "jobs",
        "INDEX_SHARDS": config.index_shards().to_env(),
        "RESULTS_BUCKET": "results", "WEBHOOK_QUEUE_URL": "https://sqs.example/webhooks",
        "RESULT_RETENTION_DAYS": str(config.result_retention_days), "MAX_RECEIVES": str(config.max_receives),
        "VISIBILITY_TIMEOUT_S": str(int(config.lanes().get(lane).time_limit_s)), "MODEL_ID": config.worker_model_id,
        **capacity_environment(config.capacity()),
        "MODEL_PROVIDERS": ",".join(config.model_providers),
        "TRACES_ENDPOINT": config.traces_endpoint,
    }


def dispatcher_env(config: PipelineConfig) -> dict[str, str]:
    """The environment WebhookDispatcher builds (both functions), likewise."""
    return {
        "STAGE": config.stage, "JOBS_TABLE": "jobs", "INDEX_SHARDS": config.index_shards().to_env(), "RESULTS_BUCKET": "results",
        "WEBHOOK_QUEUE_URL": "https://sqs.example/webhooks", "WEBHOOK_SECRET_ARN": "arn:webhook",
        "WEBHOOK_RETRY_SCHEDULE_S": config.webhook_retry_schedule_s, "WEBHOOK_SWEEP_EVERY_S": "60",
        "API_BASE_PATH": f"/{config.stage}", "TRACES_ENDPOINT": config.traces_endpoint,
    }


def sweeper_env(config: PipelineConfig) -> dict[str, str]:
    """The environment JobSweeper builds, likewise."""
    lanes = [lane.name for lane in config.lanes().queued()]
    return {
        **code_lane_environment(config.price_overrides), "LANES_FILE": lanes_file(config),
        "STAGE": config.stage, "JOBS_TABLE": "jobs", "INDEX_SHARDS": config.index_shards().to_env(),
        "RESULTS_BUCKET": "results",
        "LANE_QUEUE_URLS": compact_json({lane: f"https://sqs.example/{lane}" for lane in lanes}),
        "LANE_DLQ_URLS": compact_json({lane: f"https://sqs.example/{lane}-dlq" for lane in lanes}),
        "WEBHOOK_QUEUE_URL": "https://sqs.example/webhooks", "MAX_RECEIVES": str(config.max_receives),
    }


def without(env: Mapping[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != key}


class TestCheck:
    def test_a_good_environment_passes(self):
        for config in (PipelineConfig(), PipelineConfig(gpu_enabled=True)):
            assert set(router_env(config)) == RouterSettings.ENV
            assert runtime_env.check(RouterSettings.from_env, router_env(config), where=WHERE) is None
            for lane in config.lanes().worker_lanes():
                assert set(worker_env(config, lane.name)) == WorkerSettings.ENV
                assert runtime_env.check(WorkerSettings.from_env, worker_env(config, lane.name), where=WHERE) is None
            assert set(dispatcher_env(config)) == DispatcherSettings.ENV
            assert runtime_env.check(DispatcherSettings.from_env, dispatcher_env(config), where=WHERE) is None
            assert set(sweeper_env(config)) == SweeperSettings.ENV
            assert runtime_env.check(SweeperSettings.from_env, sweeper_env(config), where=WHERE) is None

    @pytest.mark.parametrize(("parse", "env", "detail"), [
        (RouterSettings.from_env, without(router_env(PipelineConfig()), "LANES_FILE"), "LANES is required"),
        (RouterSettings.from_env, {**without(router_env(PipelineConfig()), "LANES_FILE"), "LANES": "cpu,gpu"}, "LANES"),
        (RouterSettings.from_env, {**without(router_env(PipelineConfig()), "LANES_FILE"), "LANES": compact_json(
            {k: v for k, v in PipelineConfig().lanes().to_dict().items() if k != "inline"})}, "'inline'"),
        (RouterSettings.from_env, {**without(router_env(PipelineConfig()), "LANES_FILE"), "LANES": compact_json(
            {**PipelineConfig().lanes().to_dict(), "cpu": {"queued": True}})}, "lanes.cpu.memory_mb"),
        (RouterSettings.from_env, {**router_env(PipelineConfig()), "PRICE_OVERRIDES": '{"fargate_spot_discount": 0.6}'},
         "PRICE_OVERRIDES"),
        (RouterSettings.from_env, {**router_env(PipelineConfig()), "TASK_RATES_PER_MIN": '{"summarize": 3}'},
         "TASK_RATES_PER_MIN"),
        # the GPU lane is on, but the router was given no queue for it
        (RouterSettings.from_env, {**router_env(PipelineConfig(gpu_enabled=True)),
                                   "LANE_QUEUE_URLS": compact_json({"cpu": "https://sqs.example/cpu"})},
         "LANE_QUEUE_URLS"),
        (RouterSettings.from_env, without(router_env(PipelineConfig()), "JOBS_TABLE"), "JOBS_TABLE"),
        (WorkerSettings.from_env, without(worker_env(PipelineConfig(), "cpu"), "LANES"), "LANES is required"),
        # a worker for the GPU lane of a deployment whose GPU lane is off
        (WorkerSettings.from_env, {**worker_env(PipelineConfig(), "cpu"), "LANE": "gpu"}, "LANE='gpu'"),
        (WorkerSettings.from_env, {**worker_env(PipelineConfig(), "cpu"), "LANE": "inline"}, "LANE='inline'"),
        (WorkerSettings.from_env, without(worker_env(PipelineConfig(), "cpu"), "WEBHOOK_QUEUE_URL"), "WEBHOOK_QUEUE_URL"),
        (RouterSettings.from_env, without(router_env(PipelineConfig()), "WEBHOOK_QUEUE_URL"), "WEBHOOK_QUEUE_URL"),
        (DispatcherSettings.from_env, without(dispatcher_env(PipelineConfig()), "WEBHOOK_QUEUE_URL"), "WEBHOOK_QUEUE_URL"),
        (DispatcherSettings.from_env, {**dispatcher_env(PipelineConfig()), "WEBHOOK_RETRY_SCHEDULE_S": "5,soon"},
         "WEBHOOK_RETRY_SCHEDULE_S"),
        (DispatcherSettings.from_env, {**dispatcher_env(PipelineConfig()), "WEBHOOK_SWEEP_EVERY_S": "3600"},
         "WEBHOOK_SWEEP_EVERY_S"),
        (RouterSettings.from_env, {**router_env(PipelineConfig()), "RESULT_RETENTION_DAYS": "0"}, "RESULT_RETENTION_DAYS"),
        (WorkerSettings.from_env, {**worker_env(PipelineConfig(), "cpu"), "RESULT_RETENTION_DAYS": "a month"},
         "RESULT_RETENTION_DAYS"),
        # the GPU lane is on, but the sweeper was given no dead-letter queue for it
        (SweeperSettings.from_env, {**sweeper_env(PipelineConfig(gpu_enabled=True)),
                                    "LANE_DLQ_URLS": compact_json({"cpu": "https://sqs.example/cpu-dlq"})},
         "LANE_DLQ_URLS"),
        (SweeperSettings.from_env, without(sweeper_env(PipelineConfig()), "LANE_DLQ_URLS"), "LANE_DLQ_URLS is required"),
        (SweeperSettings.from_env, without(sweeper_env(PipelineConfig()), "WEBHOOK_QUEUE_URL"), "WEBHOOK_QUEUE_URL"),
        (SweeperSettings.from_env, {**sweeper_env(PipelineConfig()), "MAX_RECEIVES": "0"}, "MAX_RECEIVES"),
    ], ids=["router-no-lanes", "router-lanes-not-json", "router-no-inline-lane", "router-lane-incomplete",
            "router-bad-price-override", "router-unknown-task-rate", "router-no-gpu-queue", "router-no-table",
            "worker-no-lanes", "worker-disabled-lane", "worker-inline-lane", "worker-no-webhook-queue",
            "router-no-webhook-queue", "dispatcher-no-queue", "dispatcher-bad-schedule", "dispatcher-sweep-too-rare",
            "router-bad-retention", "worker-bad-retention", "sweeper-no-gpu-dlq", "sweeper-no-dlqs",
            "sweeper-no-webhook-queue", "sweeper-no-receives"])
    def test_a_bad_environment_fails_naming_the_construct_and_the_reason(
            self, parse: Callable[[Mapping[str, str]], Any], env: dict[str, str], detail: str):
        with pytest.raises(ValueError) as raised:
            runtime_env.check(parse, env, where=WHERE)
        message = str(raised.value)
        assert message.startswith(f"{WHERE}: the runtime would refuse this environment: ")
        assert detail in message

    def test_deploy_time_tokens_stand_in_as_placeholders(self):
        env = {**router_env(PipelineConfig()), "JOBS_TABLE": cdk.Aws.STACK_NAME, "RESULTS_BUCKET": cdk.Aws.ACCOUNT_ID}
        assert cdk.Token.is_unresolved(env["JOBS_TABLE"])
        runtime_env.check(RouterSettings.from_env, env, where=WHERE)
        # A token whose value the runtime parses needs a placeholder of the right shape ...
        env["LANE_QUEUE_URLS"] = cdk.Aws.URL_SUFFIX
        with pytest.raises(ValueError, match=f"^{WHERE}: .*LANE_QUEUE_URLS"):
            runtime_env.check(RouterSettings.from_env, env, where=WHERE)
        # ... and that placeholder is checked too: it must name the queued lanes.
        runtime_env.check(RouterSettings.from_env, env, where=WHERE,
                          placeholders={"LANE_QUEUE_URLS": compact_json({"cpu": "https://queue/cpu", "batch": "https://queue/batch"})})
        with pytest.raises(ValueError, match="LANE_QUEUE_URLS"):
            runtime_env.check(RouterSettings.from_env, env, where=WHERE,
                              placeholders={"LANE_QUEUE_URLS": compact_json({"gpu": "https://queue/gpu"})})

    def test_a_placeholder_replaces_only_a_token(self):
        # A plain (resolved) value is parsed as given, even where a placeholder is offered for its key.
        env = {**router_env(PipelineConfig()), "LANE_QUEUE_URLS": "{}"}
        with pytest.raises(ValueError, match="LANE_QUEUE_URLS"):
            runtime_env.check(RouterSettings.from_env, env, where=WHERE,
                              placeholders={"LANE_QUEUE_URLS": compact_json({"cpu": "https://queue/cpu"})})


class TestConstructsCheckTheirEnvironment:
    """The constructs call the backstop themselves: one built with an environment the runtime refuses
    fails synth naming its own path (cases PipelineConfig cannot produce, so built by hand)."""

    @pytest.fixture
    def stack(self) -> cdk.Stack:
        return cdk.Stack(cdk.App(context=context()), "Stack")  # cdk.json's feature flags, no bundling

    @staticmethod
    def webhook_queue(stack: cdk.Stack) -> JobQueue:
        return JobQueue(stack, "Webhooks", visibility_timeout=cdk.Duration.seconds(360), max_receive_count=5)

    def test_a_router_without_a_queue_for_an_enabled_lane(self, stack):
        config = PipelineConfig(gpu_enabled=True)
        secrets = PipelineSecrets(stack, "Secrets")
        cpu_queue = JobQueue(stack, "CpuLane", visibility_timeout=cdk.Duration.seconds(900), max_receive_count=5)
        with pytest.raises(ValueError) as raised:
            RouterFunction(
                stack, "Router", code=source_code(config.lanes()), storage=JobStorage(stack, "Storage", object_retention_days=30),
                lanes=config.lanes(), queues={"cpu": cpu_queue}, webhook_queue=self.webhook_queue(stack),
                anthropic_secret=secrets.anthropic_api_key,
                stage="dev", model_id="claude-sonnet-4-5", timeout=cdk.Duration.seconds(28), reserved_concurrency=None,
                job_ttl_days=30, result_retention_days=30, task_rates_per_min={}, price_overrides={},
                log_retention=logs.RetentionDays.ONE_DAY)
        assert str(raised.value).startswith("Stack/Router: the runtime would refuse this environment: ")
        assert "LANE_QUEUE_URLS" in str(raised.value)

    def test_a_router_with_price_overrides_the_runtime_refuses(self, stack):
        config = PipelineConfig()
        secrets = PipelineSecrets(stack, "Secrets")
        cpu_queue = JobQueue(stack, "CpuLane", visibility_timeout=cdk.Duration.seconds(900), max_receive_count=5)
        with pytest.raises(ValueError, match="^Stack/Router: .*PRICE_OVERRIDES.*'fargate.spot_discountt'"):
            RouterFunction(
                stack, "Router", code=source_code(config.lanes()), storage=JobStorage(stack, "Storage", object_retention_days=30),
                lanes=config.lanes(), queues={"cpu": cpu_queue}, webhook_queue=self.webhook_queue(stack),
                anthropic_secret=secrets.anthropic_api_key,
                stage="dev", model_id="claude-sonnet-4-5", timeout=cdk.Duration.seconds(28), reserved_concurrency=None,
                job_ttl_days=30, result_retention_days=30, task_rates_per_min={},
                price_overrides={"fargate": {"spot_discountt": 0.5}},
                log_retention=logs.RetentionDays.ONE_DAY)

    def test_a_worker_for_a_lane_that_is_not_enabled(self, stack):
        config = PipelineConfig()  # the GPU lane is off
        secrets = PipelineSecrets(stack, "Secrets")
        with pytest.raises(ValueError) as raised:
            WorkerService(
                stack, "GpuWorker", cluster=WorkerCluster(stack, "Workers", log_retention=logs.RetentionDays.ONE_DAY),
                compute=FargateSpot(cpu=1024, memory_mb=2048), image=ecs.ContainerImage.from_registry("worker"),
                lane=config.lanes().get("gpu"), lanes=config.lanes(),
                job_queue=JobQueue(stack, "GpuLane", visibility_timeout=cdk.Duration.seconds(1800), max_receive_count=5),
                webhook_queue=self.webhook_queue(stack), storage=JobStorage(stack, "Storage", object_retention_days=30),
                anthropic_secret=secrets.anthropic_api_key,
                stage="dev", model_id="claude-sonnet-4-5", min_tasks=0, max_tasks=1, result_retention_days=30,
                price_overrides={}, log_retention=logs.RetentionDays.ONE_DAY)
        assert str(raised.value).startswith("Stack/GpuWorker: the runtime would refuse this environment: ")
        assert "LANE='gpu'" in str(raised.value)

    def test_a_dispatcher_with_a_retry_schedule_the_runtime_refuses(self, stack):
        # PipelineConfig refuses this value itself; the construct is the backstop for any other caller.
        with pytest.raises(ValueError, match="^Stack/Webhooks: the runtime would refuse .*WEBHOOK_RETRY_SCHEDULE_S"):
            WebhookDispatcher(
                stack, "Webhooks", code=source_code(PipelineConfig().lanes()),
                storage=JobStorage(stack, "Storage", object_retention_days=30),
                webhook_secret=PipelineSecrets(stack, "Secrets").webhook_signing_secret, stage="dev",
                retry_schedule_s="5,-300", log_retention=logs.RetentionDays.ONE_DAY, max_concurrency=5)

    def test_a_sweeper_without_a_queue_for_an_enabled_lane(self, stack):
        config = PipelineConfig(gpu_enabled=True)
        cpu_queue = JobQueue(stack, "CpuLane", visibility_timeout=cdk.Duration.seconds(900), max_receive_count=5)
        with pytest.raises(ValueError, match="^Stack/Sweeper: the runtime would refuse this environment: .*LANE_QUEUE_URLS"):
            JobSweeper(
                stack, "Sweeper", code=source_code(config.lanes()), storage=JobStorage(stack, "Storage", object_retention_days=30),
                lanes=config.lanes(), queues={"cpu": cpu_queue}, webhook_queue=self.webhook_queue(stack), stage="dev",
                max_receives=5, price_overrides={}, log_retention=logs.RetentionDays.ONE_DAY)


class TestTheSynthesizedEnvironmentParses:
    """What was synthesized from cdk.json's default context (and with the GPU lane and the other options
    on), with CloudFormation's values as placeholders, parsed by the deployed code's own settings classes."""

    @pytest.fixture(params=["default_app", "gpu_app"])
    def app(self, request):
        return request.getfixturevalue(request.param)

    def test_the_router_environment(self, app):
        config = app.config
        settings = RouterSettings.from_env(deployed_environment(router_variables(app), app))
        assert {lane.name: lane for lane in settings.lanes.lanes} == {lane.name: lane for lane in config.lanes()}
        assert settings.lanes.prices == config.prices()
        assert settings.queue_urls == {lane.name: f"ref:{lane_queue_id(app, lane.name)}" for lane in config.lanes().queued()}
        assert settings.task_rates_per_min == {task: float(rate) for task, rate in config.task_rates_per_min.items()}
        assert (settings.stage, settings.job_ttl_days, settings.claude.model_id) == (
            config.stage, config.job_ttl_days, config.model_id)
        assert settings.result_retention_days == config.result_retention_days
        assert settings.jobs_table.startswith("Fn::GetStackOutput:")  # the data stack's table, resolved at deploy
        assert settings.lanes.cost_model() is not None
        # Each worker lane's service, to wake when a job is queued on it while it has no task (jobcore.wake).
        assert set(settings.lane_services) == {lane.name for lane in config.lanes().worker_lanes()}

    def test_the_local_router_gets_what_a_deploy_of_its_configuration_gives_the_router(self, app):
        """The local runtime's router (local.pipeline) is given the deployed router's settings for the same
        configuration: the same index shards, inline budget, model budget and the rest, all but the stage."""
        pipeline = LocalPipeline(Options(config=app.config.to_context()))
        local = pipeline._router_env(LOCAL_RESOURCES, None)
        deployed = router_variables(app)
        shared = set(local_service_settings(pipeline.config)) - {"STAGE"}
        assert {"INDEX_SHARDS", "INLINE_CONCURRENCY", "MODEL_PROVIDERS", "MODEL_ADMISSION"} <= shared
        assert {key: local[key] for key in shared} == {key: deployed[key] for key in shared}
        assert (local["INDEX_SHARDS"], local["INLINE_CONCURRENCY"]) == (
            app.config.index_shards().to_env(), str(app.config.inline_concurrency()))
        assert local["STAGE"] == "local"

    def test_each_worker_environment(self, app):
        config = app.config
        for lane in config.lanes().worker_lanes():
            settings = WorkerSettings.from_env(deployed_environment(worker_variables(app, lane.name)))
            assert settings.lane == lane.name
            assert settings.queue_url == f"ref:{lane_queue_id(app, lane.name)}"
            assert settings.concurrency == lane.concurrency
            assert settings.visibility_timeout_s == lane.time_limit_s
            assert settings.max_receives == config.max_receives
            assert settings.result_retention_days == config.result_retention_days
            assert settings.claude.model_id == config.worker_model_id
            assert {spec.name: spec for spec in settings.lanes.lanes} == {spec.name: spec for spec in config.lanes()}
            assert settings.lanes.prices == config.prices()

    def test_each_dispatcher_environment(self, app):
        for function in ("Dispatcher", "Sweep"):
            settings = DispatcherSettings.from_env(deployed_environment(dispatcher_variables(app, function)))
            assert settings.queue_url == f"ref:{WEBHOOK_QUEUE}"
            assert settings.schedule == RetrySchedule.parse(app.config.webhook_retry_schedule_s) == RetrySchedule()
            assert settings.sweep_every_s == 60
            assert settings.stage == app.config.stage
            assert settings.jobs_table.startswith("Fn::GetStackOutput:")
            assert settings.secret_arn is not None and "SecretsWebhookSigningSecret" in settings.secret_arn
            assert (settings.secret, settings.allow_loopback) == (None, False)  # the local runtime's only

    def test_the_sweeper_environment(self, app):
        config = app.config
        settings = SweeperSettings.from_env(deployed_environment(sweeper_variables(app), app))
        assert settings.queue_urls == RouterSettings.from_env(deployed_environment(router_variables(app), app)).queue_urls
        assert set(settings.dlq_urls) == {lane.name for lane in config.lanes().queued()}
        assert settings.max_receives == config.max_receives
        assert {lane.name: lane for lane in settings.lanes.lanes} == {lane.name: lane for lane in config.lanes()}
        assert settings.lanes.prices == config.prices()
        assert settings.stage == config.stage
        assert settings.jobs_table.startswith("Fn::GetStackOutput:")

    def test_the_router_workers_and_sweeper_hand_over_to_the_dispatchers_queue(self, app):
        router = RouterSettings.from_env(deployed_environment(router_variables(app), app))
        dispatcher = DispatcherSettings.from_env(deployed_environment(dispatcher_variables(app, "Dispatcher")))
        assert router.webhook_queue_url == dispatcher.queue_url
        assert SweeperSettings.from_env(deployed_environment(sweeper_variables(app), app)).webhook_queue_url == dispatcher.queue_url
        for lane in app.config.lanes().worker_lanes():
            worker = WorkerSettings.from_env(deployed_environment(worker_variables(app, lane.name)))
            assert worker.webhook_queue_url == dispatcher.queue_url

    def test_the_gpu_synth_carries_the_non_default_cost_inputs(self, gpu_app):
        settings = RouterSettings.from_env(deployed_environment(router_variables(gpu_app), gpu_app))
        assert settings.lanes.prices.fargate.spot_discount == 0.6
        assert settings.task_rates_per_min == {"documents.summarize": 30.0}
        assert [lane.name for lane in settings.lanes.lanes.gpu_lanes()] == ["gpu"]


def test_an_environment_over_lambdas_4_kb_fails_synth_naming_the_function():
    big = {"claude": {"models": {f"claude-model-{i:03d}": {"input_per_million": 1, "output_per_million": 2}
                                 for i in range(80)}}}
    with pytest.raises(ValueError, match=r"Router: the environment is [\d,]+ bytes, over Lambda's 4,096"):
        synth(price_overrides=big)


def test_a_worker_takes_fair_extra_slots_on_a_cpu_lane_and_none_on_a_gpu_lane(monkeypatch):
    """A GPU's memory holds exactly the lane's slots; a CPU lane's jobs wait on the model, so a quiet tenant's job
    may start beyond them (container_src/worker/fairness.py)."""
    from moto import mock_aws

    from jobadapters.wiring import AwsClients
    from worker.main import build_poller

    config = PipelineConfig(gpu_enabled=True, embedding_model_repo="sentence-transformers/all-MiniLM-L6-v2")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    extra = {}
    with mock_aws():
        for lane in ("cpu", "gpu"):
            settings = WorkerSettings.from_env(worker_env(config, lane))
            poller = build_poller(settings, AwsClients.create(settings.jobs_table, shards=settings.index_shards))
            extra[lane] = poller.fair_extra_slots
    assert extra == {"cpu": max(1, config.worker_concurrency // 4), "gpu": 0}


def test_a_workers_lease_hiding_and_back_off_are_the_cores_unless_shortened(monkeypatch):
    """LEASE_S, MALFORMED_RETRY_S and BACKOFF_BASE_S: not set by the stack (jobcore.limits' 60 s, 60 s, 15 s), set by
    the fault tests."""
    from moto import mock_aws

    from jobadapters.wiring import AwsClients, build_service
    from jobcore.limits import BACKOFF_BASE_S, LEASE_S, MALFORMED_RETRY_S
    from worker.main import build_poller

    env = worker_env(PipelineConfig(), "cpu")
    assert not {"LEASE_S", "MALFORMED_RETRY_S", "BACKOFF_BASE_S"} & set(env)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        for given, (lease_s, hidden_s, backoff_s) in [
            ({}, (LEASE_S, MALFORMED_RETRY_S, BACKOFF_BASE_S)),
            ({"LEASE_S": "15", "MALFORMED_RETRY_S": "10", "BACKOFF_BASE_S": "2"}, (15, 10, 2)),
        ]:
            settings = WorkerSettings.from_env({**env, **given})
            poller = build_poller(settings, AwsClients.create(settings.jobs_table, shards=settings.index_shards))
            assert (poller.runner.lease_ms, poller.hold_s, poller.malformed_retry_s) == (lease_s * 1000, lease_s, hidden_s)
            assert poller.runner.backoff.base_s == backoff_s
        for given, backoff_s in [({}, BACKOFF_BASE_S), ({"BACKOFF_BASE_S": "2"}, 2)]:  # the router's: an inline fallback's
            router = RouterSettings.from_env({**router_env(PipelineConfig()), **given})
            assert build_service(router, AwsClients.create(router.jobs_table)).runner.backoff.base_s == backoff_s
