"""JobSweeper: the sweeper Lambda and its schedule, the exact environment SweeperSettings reads, and least
privilege (send to the lane queues, drain their dead-letter queues, hand webhooks over, job data)."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_logs as logs
from infra_support import (
    actions,
    attached_managed_policies,
    context,
    deployed_environment,
    env_names,
    inline_statements,
    is_job_data_policy,
    lane_dlq_id,
    lane_queue_id,
    one,
    placeholder,
    resources,
    statements_on,
    sweeper_variables,
)

from jobadapters.settings import SweeperSettings
from stacks.config import PipelineConfig
from stacks.constructs import job_sweeper
from stacks.constructs.job_queue import JobQueue
from stacks.constructs.python_lambda import source_code
from stacks.constructs.storage import JobStorage

# A renamed function or rule is a replaced one (a minute without a sweep, nothing lost); pinned all the same.
PINNED_SWEEPER_IDS = {
    "SweeperFunction15FDF226": "AWS::Lambda::Function",
    "SweeperFunctionEventInvokeConfig6F124492": "AWS::Lambda::EventInvokeConfig",
    "SweeperLogGroupD101B90E": "AWS::Logs::LogGroup",
    "SweeperRole6226D845": "AWS::IAM::Role",
    "SweeperRoleDefaultPolicyA7914683": "AWS::IAM::Policy",
    "SweeperSchedule37615569": "AWS::Events::Rule",
    "SweeperScheduleAllowEventRuleJobPipelinedevServiceSweeperFunctionCB2EBF24E82EB585": "AWS::Lambda::Permission",
}
FUNCTION, ROLE = "SweeperFunction15FDF226", "SweeperRole6226D845"
WEBHOOK_QUEUE, WEBHOOK_DLQ = "WebhooksDeliveryQueueAF018C07", "WebhooksDeliveryDeadLetterQueue5577D6B7"
SEND = {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
DRAIN = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}


@pytest.fixture(params=["default_app", "gpu_app"])
def app(request):
    return request.getfixturevalue(request.param)


def queued(app) -> list[str]:
    return [lane.name for lane in app.config.lanes().queued()]


def arn(logical_id: str) -> dict:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def sweeper(app) -> dict:
    return app.service_json["Resources"][FUNCTION]["Properties"]


def test_sweeper_resources_keep_their_logical_ids(app):
    template = app.service_json["Resources"]
    assert {k: v["Type"] for k, v in template.items() if k.startswith("Sweeper")} == PINNED_SWEEPER_IDS


def test_sweeper_is_arm64_python_313_json_logs_on_its_own_log_group(default_app):
    props = sweeper(default_app)
    assert props["Handler"] == job_sweeper.HANDLER == "sweeper.handler.handler"
    assert (props["Architectures"], props["Runtime"], props["Timeout"]) == (["arm64"], "python3.13", 60)
    assert props["Role"] == arn(ROLE)
    _, log_group = one(default_app.service_json, "AWS::Logs::LogGroup", "SweeperLogGroup")
    assert log_group["Properties"]["RetentionInDays"] == default_app.config.log_retention_days
    assert props["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": "SweeperLogGroupD101B90E"}}


def test_sweeper_runs_the_routers_code_asset(default_app):
    router = one(default_app.service_json, "AWS::Lambda::Function", "RouterFunction")[1]["Properties"]["Code"]
    assert sweeper(default_app)["Code"] == router


def test_the_rule_runs_the_sweeper_every_minute_without_retries(default_app):
    _, rule = one(default_app.service_json, "AWS::Events::Rule", "SweeperSchedule")
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert rule["Properties"]["State"] == "ENABLED"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == arn(FUNCTION)
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 60}  # a late run is superseded by the next
    _, permission = one(default_app.service_json, "AWS::Lambda::Permission", "SweeperSchedule")
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"
    assert permission["Properties"]["FunctionName"] == arn(FUNCTION)
    assert permission["Properties"]["SourceArn"] == arn("SweeperSchedule37615569")
    _, invoke = one(default_app.service_json, "AWS::Lambda::EventInvokeConfig", "SweeperFunction")
    assert (invoke["Properties"]["FunctionName"], invoke["Properties"]["MaximumRetryAttempts"]) == ({"Ref": FUNCTION}, 0)


def test_env_is_exactly_what_sweeper_settings_read(app):
    variables = sweeper_variables(app)
    assert env_names(variables) == SweeperSettings.ENV
    assert not env_names(variables) & SweeperSettings.LOCAL_ENV


def test_env_names_each_queued_lanes_queue_and_dlq_and_carries_the_config(app):
    variables, config = sweeper_variables(app), app.config
    assert "Fn::Join" in variables["LANE_QUEUE_URLS"] and "Fn::Join" in variables["LANE_DLQ_URLS"]
    assert json.loads(placeholder(variables["LANE_QUEUE_URLS"])) == {lane: f"ref:{lane_queue_id(app, lane)}" for lane in queued(app)}
    assert json.loads(placeholder(variables["LANE_DLQ_URLS"])) == {lane: f"ref:{lane_dlq_id(app, lane)}" for lane in queued(app)}
    assert variables["WEBHOOK_QUEUE_URL"] == {"Ref": WEBHOOK_QUEUE}
    assert variables["MAX_RECEIVES"] == str(config.max_receives)
    for lane in queued(app):  # a stale job has used its attempts when the lane queue would dead-letter it
        redrive = app.service_json["Resources"][lane_queue_id(app, lane)]["Properties"]["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == config.max_receives
    assert variables["STAGE"] == config.stage
    router = one(app.service_json, "AWS::Lambda::Function", "RouterFunction")[1]["Properties"]
    router_variables = router["Environment"]["Variables"]
    assert (variables["LANES_FILE"], variables["PRICE_OVERRIDES"]) == (router_variables["LANES_FILE"], router_variables["PRICE_OVERRIDES"])
    assert (variables["JOBS_TABLE"], variables["RESULTS_BUCKET"]) == (
        router_variables["JOBS_TABLE"], router_variables["RESULTS_BUCKET"])


def test_the_synthesized_env_parses_with_sweeper_settings(app):
    settings = SweeperSettings.from_env(deployed_environment(sweeper_variables(app), app))
    assert settings.queue_urls == {lane: f"ref:{lane_queue_id(app, lane)}" for lane in queued(app)}
    assert settings.dlq_urls == {lane: f"ref:{lane_dlq_id(app, lane)}" for lane in queued(app)}
    assert settings.webhook_queue_url == f"ref:{WEBHOOK_QUEUE}"
    assert settings.max_receives == app.config.max_receives
    assert {lane.name: lane for lane in settings.lanes.lanes} == {lane.name: lane for lane in app.config.lanes()}
    assert settings.lanes.prices == app.config.prices()
    assert settings.jobs_table.startswith("Fn::GetStackOutput:")  # the data stack's table, resolved at deploy
    assert settings.sweep_every_s == job_sweeper.SWEEP_EVERY.to_seconds()  # the default; the rule sets the pace


def _sqs_statements(app) -> list[dict]:
    return [s for s in inline_statements(app.service_json, ROLE) if any(a.startswith("sqs:") for a in actions([s]))]


def _resources(statement: dict) -> list:
    return statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]


def test_role_sends_to_the_lane_queues_and_the_webhook_queue_only(app):
    (send,) = [s for s in _sqs_statements(app) if "sqs:SendMessage" in actions([s])]
    assert set(send["Action"]) == SEND
    assert sorted(map(json.dumps, _resources(send))) == sorted(
        json.dumps(arn(q)) for q in [*(lane_queue_id(app, lane) for lane in queued(app)), WEBHOOK_QUEUE])


def test_role_receives_and_deletes_on_each_lane_dlq_only(app):
    (drain,) = [s for s in _sqs_statements(app) if "sqs:ReceiveMessage" in actions([s])]
    assert set(drain["Action"]) == DRAIN
    assert sorted(map(json.dumps, _resources(drain))) == sorted(json.dumps(arn(lane_dlq_id(app, lane))) for lane in queued(app))


def test_role_never_consumes_a_lane_queue_nor_touches_the_webhook_dlq(app):
    statements = inline_statements(app.service_json, ROLE)
    for lane in queued(app):
        assert actions(statements_on(statements, arn(lane_queue_id(app, lane)))) == SEND  # never receive a live job
        assert actions(statements_on(statements, arn(lane_dlq_id(app, lane)))) == DRAIN  # never send to a DLQ
    assert actions(statements_on(statements, arn(WEBHOOK_QUEUE))) == SEND
    assert WEBHOOK_DLQ not in json.dumps(statements)
    assert not actions(statements) & {"sqs:ChangeMessageVisibility", "sqs:PurgeQueue", "sqs:DeleteQueue"}


def test_role_has_job_data_and_nothing_else(app):
    statements = inline_statements(app.service_json, ROLE)
    assert actions(statements) == SEND | DRAIN | LOGS
    (log,) = [s for s in statements if "logs:PutLogEvents" in s["Action"]]
    assert log["Resource"] == arn("SweeperLogGroupD101B90E")
    assert not any("*" in json.dumps(s["Resource"]) for s in statements)  # exact ARNs, no wildcard
    assert "Secret" not in json.dumps(statements)  # it never calls Claude nor signs a webhook
    # items and the watch index: the data stack's job-data policy (test_storage.py), nothing AWS-managed
    (managed,) = attached_managed_policies(app.service_json, ROLE)
    assert is_job_data_policy(managed)


def test_the_sweeper_has_its_own_role(app):
    roles = [fn["Properties"]["Role"]["Fn::GetAtt"][0] for fn in resources(app.service_json, "AWS::Lambda::Function").values()
             if "Role" in fn["Properties"]]
    assert roles.count(ROLE) == 1


def test_only_the_sweeper_drains_the_lane_dlqs(app):
    # The workers consume their lane queue, never its DLQ; the router only sends.
    for role_id in resources(app.service_json, "AWS::IAM::Role"):
        on_dlqs = {a for lane in queued(app)
                   for a in actions(statements_on(inline_statements(app.service_json, role_id), arn(lane_dlq_id(app, lane))))}
        assert not on_dlqs or role_id == ROLE, f"{role_id} may {sorted(on_dlqs)} on a lane DLQ"


def test_a_max_receives_other_than_the_queues_redrive_fails_synth():
    stack = cdk.Stack(cdk.App(context=context()), "Stack")
    queue = JobQueue(stack, "CpuLane", visibility_timeout=cdk.Duration.seconds(900), max_receive_count=3)
    with pytest.raises(ValueError, match="^Stack/Sweeper: MAX_RECEIVES=5 .* not of cpu"):
        job_sweeper.JobSweeper(
            stack, "Sweeper", code=source_code(PipelineConfig().lanes()), storage=JobStorage(stack, "Storage", object_retention_days=30),
            lanes=PipelineConfig().lanes(), queues={"cpu": queue},
            webhook_queue=JobQueue(stack, "Webhooks", visibility_timeout=cdk.Duration.seconds(360), max_receive_count=5),
            stage="dev", max_receives=5, price_overrides={}, log_retention=logs.RetentionDays.ONE_DAY)
