"""BatchCollector: the collector Lambda (reserved concurrency only when configured) and its schedule, the exact environment
CollectorSettings reads, its permissions, the batch lane's queue (held only within a pass, no worker service),
its alarms, and no collector when the batch lane is off."""

from __future__ import annotations

import pytest
from infra_support import (
    actions,
    attached_managed_policies,
    deployed_environment,
    env_names,
    inline_statements,
    is_job_data_policy,
    one,
    resources,
    statements_on,
    synth,
    variables,
)

from jobadapters import schema
from jobadapters.settings import CollectorSettings
from stacks.constructs import batch_collector


@pytest.fixture(params=["default_app", "gpu_app"])
def app(request):
    return request.getfixturevalue(request.param)


def collector(app) -> tuple[str, dict]:
    return one(app.service_json, "AWS::Lambda::Function", "CollectorFunction")


def arn(logical_id: str) -> dict:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def batch_queue(app) -> str:
    return one(app.service_json, "AWS::SQS::Queue", "BatchLaneQueue")[0]


def test_the_collector_is_a_scheduled_lambda_without_reserved_concurrency_by_default(default_app):
    _, function = collector(default_app)
    props = function["Properties"]
    assert props["Handler"] == batch_collector.HANDLER == "collector.handler.handler"
    assert (props["Architectures"], props["Runtime"], props["Timeout"], props["MemorySize"]) == (["arm64"], "python3.13", 300, 1024)
    assert "ReservedConcurrentExecutions" not in props  # a reservation fails the deploy in a new account
    _, rule = one(default_app.service_json, "AWS::Events::Rule", "CollectorSchedule")
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == arn(collector(default_app)[0])


def test_a_configured_reservation_keeps_passes_one_at_a_time(gpu_app):
    assert gpu_app.config.collector_reserved_concurrency == 1
    assert collector(gpu_app)[1]["Properties"]["ReservedConcurrentExecutions"] == 1


def test_env_is_exactly_what_collector_settings_read_and_it_parses(app):
    env = variables(collector(app)[1]["Properties"]["Environment"]["Variables"])
    assert env_names(env) == CollectorSettings.ENV
    assert not env_names(env) & CollectorSettings.LOCAL_ENV
    settings = CollectorSettings.from_env(deployed_environment(env, app))
    assert settings.lane == "batch" and settings.queue_url == f"ref:{batch_queue(app)}"
    assert (settings.window_s, settings.max_attempts) == (app.config.batch_window_s, app.config.batch_max_attempts)


def test_the_batch_lane_has_a_queue_held_only_within_a_pass_and_no_worker_service(app):
    queue = app.service_json["Resources"][batch_queue(app)]["Properties"]
    assert queue["VisibilityTimeout"] == schema.BATCH_QUEUE_VISIBILITY_S == 360
    assert batch_collector.FUNCTION_TIMEOUT.to_seconds() + 60 == 360  # one pass and a minute
    services = resources(app.service_json, "AWS::ECS::Service")
    assert not [name for name in services if name.startswith("Batch")]
    assert not [name for name in resources(app.service_json, "AWS::ECS::TaskDefinition") if name.startswith("Batch")]


def test_the_collector_may_consume_and_send_on_its_queue_read_the_key_and_use_job_data(default_app):
    role = collector(default_app)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = inline_statements(default_app.service_json, role)
    queue = batch_queue(default_app)
    on_queue = actions(list(statements_on(statements, arn(queue))))
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage"} <= on_queue
    assert "secretsmanager:GetSecretValue" in actions(statements)
    assert any(is_job_data_policy(policy) for policy in attached_managed_policies(default_app.service_json, role))
    cpu = one(default_app.service_json, "AWS::SQS::Queue", "CpuLaneQueue")[0]
    assert not list(statements_on(statements, arn(cpu)))


def test_the_router_and_the_sweeper_know_the_batch_queue(default_app):
    for prefix in ("RouterFunction", "SweeperFunction"):
        env = variables(one(default_app.service_json, "AWS::Lambda::Function", prefix)[1]["Properties"]["Environment"]["Variables"])
        assert batch_queue(default_app) in str(env["LANE_QUEUE_URLS"])


def test_alarms_watch_the_collector_the_batch_dlq_and_batches_open_too_long(default_app):
    alarms = resources(default_app.service_json, "AWS::CloudWatch::Alarm")
    names = " ".join(alarms)
    for name in ("BatchCollectorErrors", "BatchDeadLetters", "BatchOpenTooLong"):
        assert f"Monitoring{name}" in names
    (open_too_long,) = [a for name, a in alarms.items() if "BatchOpenTooLong" in name]
    assert "OldestOpenBatchAgeSeconds" in str(open_too_long["Properties"])
    assert open_too_long["Properties"]["Threshold"] == default_app.config.batch_open_alarm_hours * 3600


def test_without_the_batch_lane_there_is_no_collector_and_no_batch_queue():
    app = synth(batch_enabled=False)
    assert not [n for n in resources(app.service_json, "AWS::Lambda::Function") if n.startswith("Collector")]
    assert not [n for n in resources(app.service_json, "AWS::SQS::Queue") if n.startswith("Batch")]
