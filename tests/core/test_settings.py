"""Settings read once from the environment, with errors that name the variable."""

import json

import pytest

from jobadapters.settings import ConfigError, DispatcherSettings, IntakeSettings, RouterSettings, WorkerSettings, capacity_from_env
from jobcore.capacity import BedrockLimits, RateLimits, TenantShare
from jobcore.deliveries import RetrySchedule
from tests.fakes import make_lanes

LANES = json.dumps(make_lanes(gpu_enabled=False).to_dict())
ROUTER = {"JOBS_TABLE": "t", "RESULTS_BUCKET": "b", "LANES": LANES, "LANE_QUEUE_URLS": json.dumps({"cpu": "q"}),
          "WEBHOOK_QUEUE_URL": "w"}
WORKER = {"JOBS_TABLE": "t", "RESULTS_BUCKET": "b", "QUEUE_URL": "q", "LANES": LANES, "LANE": "cpu", "WEBHOOK_QUEUE_URL": "w"}
DISPATCHER = {"JOBS_TABLE": "t", "RESULTS_BUCKET": "b", "WEBHOOK_QUEUE_URL": "w", "WEBHOOK_SECRET_ARN": "arn:secret"}


def test_router_settings_carry_the_lanes_and_their_queues():
    settings = RouterSettings.from_env(ROUTER)
    assert settings.lanes.lanes.inline.time_limit_s == 20 and settings.queue_urls == {"cpu": "q"}
    assert settings.claude.base_url is None and settings.task_rates_per_min == {}


@pytest.mark.parametrize("missing", sorted(ROUTER))
def test_router_requires_its_resources(missing):
    env = {k: v for k, v in ROUTER.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        RouterSettings.from_env(env)


@pytest.mark.parametrize("budget", [0, 26, 29])
def test_inline_budget_must_stay_under_the_gateway_timeout(budget):
    lanes = json.loads(LANES)
    lanes["inline"]["time_limit_s"] = budget
    with pytest.raises(ConfigError, match=r"LANES: lanes\.inline\.time_limit_s"):
        RouterSettings.from_env({**ROUTER, "LANES": json.dumps(lanes)})


@pytest.mark.parametrize(("urls", "why"), [
    ({}, "it has none"),
    ({"cpu": "q", "gpu": "q2"}, "it has cpu, gpu"),  # gpu is disabled in these lanes
    ({"cpu": ""}, "for no other"),
])
def test_every_enabled_queued_lane_needs_a_queue_and_no_other_lane_has_one(urls, why):
    with pytest.raises(ConfigError, match=f"LANE_QUEUE_URLS.*{why}"):
        RouterSettings.from_env({**ROUTER, "LANE_QUEUE_URLS": json.dumps(urls)})


@pytest.mark.parametrize(("env", "message"), [
    ({"PRICE_OVERRIDES": '{"fargate_spot_discount": 0.6}'}, "PRICE_OVERRIDES: price overrides: unknown key 'fargate_spot_discount'"),
    ({"PRICE_OVERRIDES": "[1]"}, "PRICE_OVERRIDES must be a JSON object"),
    ({"TASK_RATES_PER_MIN": '{"summarize": 3}'}, "TASK_RATES_PER_MIN: 'summarize' is not a task"),
    ({"TASK_RATES_PER_MIN": '{"invoice.extract": -1}'}, "TASK_RATES_PER_MIN: the rate of 'invoice.extract'"),
    ({"LANES": '{"inline": {}}'}, r"LANES: lanes\.inline\.queued: missing"),
    ({"LANES": "not json"}, "LANES is not valid JSON"),
    ({"JOB_TTL_DAYS": "lots"}, "JOB_TTL_DAYS='lots' is not a number"),
])
def test_every_value_the_runtime_reads_is_checked_and_named(env, message):
    with pytest.raises(ConfigError, match=message):
        RouterSettings.from_env({**ROUTER, **env})


def test_a_lane_the_price_file_cannot_price_is_refused_at_start():
    lanes = json.dumps(make_lanes(gpu_instance="g4dn.xlarge").to_dict())
    with pytest.raises(ConfigError, match="g4dn.xlarge' is not in the price file"):
        RouterSettings.from_env({**ROUTER, "LANES": lanes, "LANE_QUEUE_URLS": json.dumps({"cpu": "q", "gpu": "g"})})
    overrides = {"ec2": {"instances": {"g4dn.xlarge": {"hour": 0.526, "vcpu": 4, "memory_gib": 16, "gpus": 1}}}}
    settings = RouterSettings.from_env({**ROUTER, "LANES": lanes, "LANE_QUEUE_URLS": json.dumps({"cpu": "q", "gpu": "g"}),
                                        "PRICE_OVERRIDES": json.dumps(overrides)})
    assert settings.lanes.prices.ec2.instances["g4dn.xlarge"].hour == 0.526


def test_worker_settings_take_the_concurrency_of_their_lane():
    settings = WorkerSettings.from_env({**WORKER, "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"})
    assert (settings.lane, settings.concurrency, settings.claude.base_url) == ("cpu", 8, "http://127.0.0.1:1")


@pytest.mark.parametrize("lane", ["tpu", "gpu", "inline", ""])
def test_a_worker_serves_an_enabled_queued_lane_only(lane):
    with pytest.raises(ConfigError, match="LANE"):
        WorkerSettings.from_env({**WORKER, "LANE": lane})


class RecordingEnv(dict):
    """An environment that remembers every key asked for."""

    def __init__(self, values):
        super().__init__(values)
        self.read = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)


def test_dispatcher_settings_default_to_the_standard_webhooks_schedule():
    settings = DispatcherSettings.from_env(DISPATCHER)
    assert settings.schedule == RetrySchedule() and settings.sweep_every_s == 60 and not settings.allow_loopback
    local = DispatcherSettings.from_env({**DISPATCHER, "WEBHOOK_RETRY_SCHEDULE_S": "1,2,4", "WEBHOOK_ALLOW_LOOPBACK": "true",
                                         "WEBHOOK_SWEEP_EVERY_S": "0.5"})
    assert local.schedule.gaps_s == (1, 2, 4) and local.allow_loopback and local.sweep_every_s == 0.5


@pytest.mark.parametrize(("env", "message"), [
    ({"WEBHOOK_RETRY_SCHEDULE_S": "5,soon"}, "WEBHOOK_RETRY_SCHEDULE_S: retry schedule"),
    ({"WEBHOOK_SWEEP_EVERY_S": "0"}, "WEBHOOK_SWEEP_EVERY_S='0' must be from"),
    ({"WEBHOOK_QUEUE_URL": ""}, "WEBHOOK_QUEUE_URL is required"),
    ({"WEBHOOK_SECRET_ARN": ""}, "WEBHOOK_SECRET_ARN .or WEBHOOK_SECRET. is required: webhooks are signed"),
])
def test_dispatcher_settings_are_checked(env, message):
    with pytest.raises(ConfigError, match=message):
        DispatcherSettings.from_env({**DISPATCHER, **env})


INTAKE = {**ROUTER, "INTAKE_TENANT": "key-abc", "INTAKE_WEBHOOK_URL": "https://hooks.example.com/intake"}


@pytest.mark.parametrize(("settings", "env"), [(RouterSettings, ROUTER), (WorkerSettings, WORKER), (DispatcherSettings, DISPATCHER),
                                               (IntakeSettings, INTAKE)])
def test_every_variable_read_is_declared(settings, env):
    # The CDK constructs set exactly ENV (and SECRETS); a variable read but not declared would
    # silently keep its default in AWS.
    recording = RecordingEnv(env)
    settings.from_env(recording)
    declared = settings.ENV | settings.LOCAL_ENV | getattr(settings, "SECRETS", frozenset()) | getattr(settings, "MODEL_ENV", frozenset())
    assert recording.read - declared == set()
    assert set(env) <= recording.read


def test_intake_settings_need_a_tenant_and_a_public_webhook():
    assert IntakeSettings.from_env(INTAKE).tenant_id == "key-abc"
    assert IntakeSettings.from_env({**INTAKE, "INTAKE_WEBHOOK_URL": ""}).webhook_url == ""
    with pytest.raises(ConfigError, match="INTAKE_TENANT is required"):
        IntakeSettings.from_env({**INTAKE, "INTAKE_TENANT": ""})
    with pytest.raises(ConfigError, match="INTAKE_WEBHOOK_URL"):
        IntakeSettings.from_env({**INTAKE, "INTAKE_WEBHOOK_URL": "http://127.0.0.1:9/h"})


@pytest.mark.parametrize(("settings", "env", "key", "value"), [
    (RouterSettings, ROUTER, "JOB_TTL_DAYS", "-1"),
    (RouterSettings, ROUTER, "JOB_TTL_DAYS", "0"),
    (WorkerSettings, WORKER, "MAX_RECEIVES", "0"),
    (WorkerSettings, WORKER, "VISIBILITY_TIMEOUT_S", "43201"),
    (WorkerSettings, WORKER, "POLL_WAIT_S", "21"),
    (WorkerSettings, WORKER, "LEASE_S", "5"),  # under three heartbeats (2 s each): a live worker would lose it
    (WorkerSettings, WORKER, "MALFORMED_RETRY_S", "-1"),
    (WorkerSettings, WORKER, "BACKOFF_BASE_S", "0"),
    (RouterSettings, ROUTER, "BACKOFF_BASE_S", "901"),  # over the back-off's cap
])
def test_numbers_out_of_range_are_refused(settings, env, key, value):
    with pytest.raises(ConfigError, match=f"{key}='{value}' must be from"):
        settings.from_env({**env, key: value})


def test_the_models_budget_is_read_once_from_the_environment_by_the_cores_parsers():
    capacity = capacity_from_env({"MODEL_RATE_LIMITS": '{"sonnet-4": {"rpm": 120, "itpm": 40000, "otpm": 16000}}',
                                  "TENANT_SHARES": '{"b": {"weight": 3}}', "INLINE_RESERVED_SHARE": "0.2"})
    assert capacity.active and capacity.limits == {"sonnet-4": RateLimits(120, 40_000, 16_000)}
    assert capacity.tenants == {"b": TenantShare(3.0)} and capacity.inline_reserved_share == 0.2
    assert not capacity_from_env({"MODEL_ADMISSION": "off", "MODEL_RATE_LIMITS": '{"*": {"rpm": 1, "itpm": 1, "otpm": 1}}'}).active
    assert not capacity_from_env({}).active  # no limits configured: nothing is paced
    bedrock_only = capacity_from_env({"BEDROCK_RATE_LIMITS": '{"*": {"tpm": 200000, "rpm": 100}}'})
    assert bedrock_only.active and bedrock_only.bedrock == {"*": BedrockLimits(200_000, 100)} and not bedrock_only.limits
    for env, names in [({"MODEL_ADMISSION": "maybe"}, "MODEL_ADMISSION"),
                       ({"MODEL_RATE_LIMITS": '{"sonnet-4": {"rpm": 0, "itpm": 1, "otpm": 1}}'}, "MODEL_RATE_LIMITS.sonnet-4.rpm"),
                       ({"BEDROCK_RATE_LIMITS": '{"*": {"tpm": 0}}'}, r"BEDROCK_RATE_LIMITS\.\*\.tpm"),
                       ({"INLINE_RESERVED_SHARE": "0.9"}, "INLINE_RESERVED_SHARE")]:
        with pytest.raises(ConfigError, match=names):
            capacity_from_env(env)
