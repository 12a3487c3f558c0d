"""WebhookDispatcher: the webhook queue, the dispatcher and sweep Lambdas, their exact environment and
least privilege; the router and the workers only hand over to its queue."""

from __future__ import annotations

import json

import pytest
from infra_support import (
    actions,
    attached_managed_policies,
    dispatcher_variables,
    env_names,
    inline_statements,
    is_job_data_policy,
    one,
    resources,
    statements_on,
)

from jobadapters import schema
from jobadapters.settings import DispatcherSettings
from jobcore.dispatch import WEBHOOK_TIMEOUT_S
from stacks.constructs import webhook_dispatcher
from stacks.names import construct_id

# A renamed queue is a replaced one: the hand-overs in it would be lost (the sweep would find their
# deliveries again, up to a minute late). The functions, roles and schedule are pinned alike.
PINNED_WEBHOOK_IDS = {
    "WebhooksDeliveryQueueAF018C07": "AWS::SQS::Queue",
    "WebhooksDeliveryQueuePolicy6AFAC29D": "AWS::SQS::QueuePolicy",
    "WebhooksDeliveryDeadLetterQueue5577D6B7": "AWS::SQS::Queue",
    "WebhooksDeliveryDeadLetterQueuePolicy3938E1B5": "AWS::SQS::QueuePolicy",
    "WebhooksDispatcherFunction3FFDE347": "AWS::Lambda::Function",
    "WebhooksDispatcherFunctionSqsEventSourceJobPipelinedevServiceWebhooksDeliveryQueueEB1953D44FE030B6":
        "AWS::Lambda::EventSourceMapping",
    "WebhooksDispatcherLogGroupF9C889BD": "AWS::Logs::LogGroup",
    "WebhooksDispatcherRole0FAFD89C": "AWS::IAM::Role",
    "WebhooksDispatcherRoleDefaultPolicy573C4DD0": "AWS::IAM::Policy",
    "WebhooksSweepFunction1604C7CD": "AWS::Lambda::Function",
    "WebhooksSweepFunctionEventInvokeConfig3E6E675D": "AWS::Lambda::EventInvokeConfig",
    "WebhooksSweepLogGroup3C38A94A": "AWS::Logs::LogGroup",
    "WebhooksSweepRole0F0B6BCB": "AWS::IAM::Role",
    "WebhooksSweepRoleDefaultPolicyA0A48394": "AWS::IAM::Policy",
    "WebhooksSweepScheduleFA4A9756": "AWS::Events::Rule",
    "WebhooksSweepScheduleAllowEventRuleJobPipelinedevServiceWebhooksSweepFunction0FDB49D7E53E73D5":
        "AWS::Lambda::Permission",
}
QUEUE, DLQ = "WebhooksDeliveryQueueAF018C07", "WebhooksDeliveryDeadLetterQueue5577D6B7"
FUNCTIONS = {"Dispatcher": "dispatcher.handler.handler", "Sweep": "dispatcher.handler.sweep"}
SEND = {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}


@pytest.fixture(params=["default_app", "gpu_app"])
def app(request):
    return request.getfixturevalue(request.param)


def function(app, name):
    return one(app.service_json, "AWS::Lambda::Function", f"Webhooks{name}Function")


def role_statements(app, name):
    role_id = function(app, name)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    return role_id, inline_statements(app.service_json, role_id)


def test_webhook_resources_keep_their_logical_ids(app):
    template = app.service_json["Resources"]
    found = {k: v["Type"] for k, v in template.items() if k.startswith("Webhooks")}
    assert found == PINNED_WEBHOOK_IDS


def test_queue_is_sized_to_six_dispatcher_timeouts_and_redrives_to_its_dlq(default_app):
    queue = default_app.service_json["Resources"][QUEUE]["Properties"]
    assert queue["VisibilityTimeout"] == schema.WEBHOOK_VISIBILITY_S == 6 * function(default_app, "Dispatcher")[1][
        "Properties"]["Timeout"]
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [DLQ, "Arn"]},
                                      "maxReceiveCount": schema.WEBHOOK_MAX_RECEIVES}
    assert queue["SqsManagedSseEnabled"] is True
    policies = [p["Properties"] for p in resources(default_app.service_json, "AWS::SQS::QueuePolicy").values()
                if p["Properties"]["Queues"][0]["Ref"] in (QUEUE, DLQ)]
    assert len(policies) == 2  # both SSL-only (JobQueue: test_job_queue.py)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_are_arm64_python_313_json_logs_on_their_own_log_group(default_app, name):
    _, fn = function(default_app, name)
    props = fn["Properties"]
    assert props["Handler"] == FUNCTIONS[name]
    assert (props["Architectures"], props["Runtime"], props["Timeout"]) == (["arm64"], "python3.13", 60)
    log_group_id, log_group = one(default_app.service_json, "AWS::Logs::LogGroup", f"Webhooks{name}LogGroup")
    assert log_group["Properties"]["RetentionInDays"] == default_app.config.log_retention_days
    assert props["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": log_group_id}}


def test_functions_run_the_routers_code_asset(default_app):
    router = one(default_app.service_json, "AWS::Lambda::Function", "RouterFunction")[1]["Properties"]["Code"]
    for name in FUNCTIONS:
        assert function(default_app, name)[1]["Properties"]["Code"] == router


def test_a_batch_of_attempts_fits_in_the_timeout():
    timeout_s = webhook_dispatcher.FUNCTION_TIMEOUT.to_seconds()
    assert webhook_dispatcher.BATCH_SIZE * WEBHOOK_TIMEOUT_S < timeout_s
    assert 6 * timeout_s == schema.WEBHOOK_VISIBILITY_S


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_env_is_exactly_what_dispatcher_settings_read_and_parses(app, name):
    variables = dispatcher_variables(app, name)
    assert env_names(variables) == DispatcherSettings.ENV
    assert not env_names(variables) & DispatcherSettings.LOCAL_ENV  # no inline secret, no loopback in AWS
    assert variables["WEBHOOK_QUEUE_URL"] == {"Ref": QUEUE}
    assert "SecretsWebhookSigningSecret" in json.dumps(variables["WEBHOOK_SECRET_ARN"])  # the ARN, never the value
    assert variables["WEBHOOK_RETRY_SCHEDULE_S"] == app.config.webhook_retry_schedule_s
    assert variables["STAGE"] == app.config.stage
    # (parsed with DispatcherSettings: test_runtime_env.py)


def test_the_sweep_runs_as_often_as_the_dispatcher_is_told(default_app):
    sweep_id, _ = function(default_app, "Sweep")
    _, rule = one(default_app.service_json, "AWS::Events::Rule", "WebhooksSweepSchedule")
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert dispatcher_variables(default_app, "Sweep")["WEBHOOK_SWEEP_EVERY_S"] == "60"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [sweep_id, "Arn"]}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 60}  # a late run is superseded by the next
    _, permission = one(default_app.service_json, "AWS::Lambda::Permission", "WebhooksSweepSchedule")
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"
    assert permission["Properties"]["FunctionName"] == {"Fn::GetAtt": [sweep_id, "Arn"]}
    _, invoke = one(default_app.service_json, "AWS::Lambda::EventInvokeConfig", "WebhooksSweepFunction")
    assert (invoke["Properties"]["FunctionName"], invoke["Properties"]["MaximumRetryAttempts"]) == ({"Ref": sweep_id}, 0)


def test_the_dispatcher_consumes_the_queue_in_batches_with_partial_failures(default_app):
    dispatcher_id, _ = function(default_app, "Dispatcher")
    _, mapping = one(default_app.service_json, "AWS::Lambda::EventSourceMapping", "WebhooksDispatcher")
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": dispatcher_id}
    assert props["EventSourceArn"] == {"Fn::GetAtt": [QUEUE, "Arn"]}
    assert props["BatchSize"] == webhook_dispatcher.BATCH_SIZE == 3
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # A burst of webhooks may not take the account's concurrency from the router.
    assert props["ScalingConfig"] == {"MaximumConcurrency": default_app.config.webhook_max_concurrency} == {
        "MaximumConcurrency": 5}


def test_the_dispatchers_maximum_concurrency_comes_from_config(gpu_app):
    _, mapping = one(gpu_app.service_json, "AWS::Lambda::EventSourceMapping", "WebhooksDispatcher")
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 20}


def test_dispatcher_role_uses_job_data_the_queue_and_the_signing_secret_only(default_app):
    role_id, statements = role_statements(default_app, "Dispatcher")
    assert actions(statements) == SEND | CONSUME | {
        "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert actions(statements_on(statements, {"Fn::GetAtt": [QUEUE, "Arn"]})) == SEND | CONSUME
    (secret,) = [s for s in statements if "secretsmanager:GetSecretValue" in s["Action"]]
    assert "SecretsWebhookSigningSecret" in json.dumps(secret["Resource"])
    assert "SecretsAnthropicApiKey" not in json.dumps(statements)
    (log,) = [s for s in statements if "logs:PutLogEvents" in s["Action"]]
    assert log["Resource"] == {"Fn::GetAtt": [one(default_app.service_json, "AWS::Logs::LogGroup",
                                                  "WebhooksDispatcherLogGroup")[0], "Arn"]}
    assert not any(DLQ in json.dumps(s["Resource"]) for s in statements)
    assert not any("*" in json.dumps(s["Resource"]) for s in statements)
    # items, the delivery index, results to presign and event bodies: the data stack's policy (test_storage.py)
    (managed,) = attached_managed_policies(default_app.service_json, role_id)
    assert is_job_data_policy(managed)


def test_sweep_role_queries_the_delivery_index_and_sends_to_the_queue_only(default_app):
    role_id, statements = role_statements(default_app, "Sweep")
    assert actions(statements) == SEND | {"dynamodb:Query", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert actions(statements_on(statements, {"Fn::GetAtt": [QUEUE, "Arn"]})) == SEND
    (query,) = [s for s in statements if s["Action"] == "dynamodb:Query"]
    table_arn, index = query["Resource"]["Fn::Join"][1]
    assert "StorageTableB43FDCE7Arn" in json.dumps(table_arn)  # the data stack's table
    assert index == f"/index/{schema.DELIVERY_INDEX}"
    assert "Secret" not in json.dumps(statements)
    assert not any("*" in json.dumps(s["Resource"]) for s in statements)
    assert attached_managed_policies(default_app.service_json, role_id) == []


def test_each_function_has_its_own_role(default_app):
    roles = {function(default_app, name)[1]["Properties"]["Role"]["Fn::GetAtt"][0] for name in FUNCTIONS}
    router_role = one(default_app.service_json, "AWS::Lambda::Function", "RouterFunction")[1]["Properties"]["Role"]
    assert len(roles) == 2 and router_role["Fn::GetAtt"][0] not in roles


def test_only_the_dispatcher_reads_the_webhook_signing_secret(app):
    readers = {
        role_id for role_id in resources(app.service_json, "AWS::IAM::Role")
        if "WebhookSigningSecret" in json.dumps(inline_statements(app.service_json, role_id))
    }
    assert readers == {role_statements(app, "Dispatcher")[0]}


def test_only_the_router_workers_sweeper_and_dispatcher_functions_may_send_hand_overs(app):
    senders = {
        role_id for role_id in resources(app.service_json, "AWS::IAM::Role")
        if "sqs:SendMessage" in actions(statements_on(inline_statements(app.service_json, role_id),
                                                      {"Fn::GetAtt": [QUEUE, "Arn"]}))
    }
    # The job sweeper hands over the webhook of a job it settles (test_job_sweeper.py); the S3 intake, that of a
    # job it rejects (test_intake_infra.py).
    expected = {"RouterRole", "WebhooksDispatcherRole", "WebhooksSweepRole", "SweeperRole", "CollectorRole", "IntakeRole"} | {
        f"{construct_id(lane.name)}WorkerTaskDefinitionTaskRole" for lane in app.config.lanes().worker_lanes()}
    assert {next(prefix for prefix in expected if role.startswith(prefix)) for role in senders} == expected
    assert len(senders) == len(expected)
