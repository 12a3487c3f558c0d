"""RouterFunction: runtime, sizing, the exact environment RouterSettings reads, and least privilege."""

from __future__ import annotations

import json

import pytest
from infra_support import (
    actions,
    attached_managed_policies,
    env_names,
    inline_statements,
    is_job_data_policy,
    lane_queue_id,
    one,
    placeholder,
    router_variables,
    statements_on,
)

from jobadapters.settings import RouterSettings

WEBHOOK_QUEUE = "WebhooksDeliveryQueueAF018C07"
# Lambda refuses a function whose environment (names and values) exceeds 4 KB, at deploy, not at synth.
LAMBDA_MAX_ENVIRONMENT_BYTES = 4096
LONGEST_DEPLOYED_VALUE = 128  # an ARN, a queue URL or a resource name that CloudFormation fills in
CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:PurgeQueue"}


def router(app):
    return one(app.service_json, "AWS::Lambda::Function", "RouterFunction")[1]["Properties"]


def test_router_is_arm64_python_313_sized_from_config(default_app):
    props, config = router(default_app), default_app.config
    assert props["Architectures"] == ["arm64"]
    assert props["Runtime"] == "python3.13"
    assert props["Handler"] == "router.handler.handler"
    assert props["MemorySize"] == config.router_memory_mb == config.lanes().inline.memory_mb
    assert props["Timeout"] == config.router_timeout_s
    assert "ReservedConcurrentExecutions" not in props


def test_reserved_concurrency_comes_from_config(gpu_app):
    assert router(gpu_app)["ReservedConcurrentExecutions"] == 50


def test_env_is_exactly_what_router_settings_read(default_app, gpu_app):
    for app in (default_app, gpu_app):
        assert env_names(router(app)["Environment"]["Variables"]) == RouterSettings.ENV


@pytest.mark.parametrize("app_name", ["default_app", "gpu_app"])
def test_lane_queue_urls_name_exactly_the_queued_lanes_queues(request, app_name):
    app = request.getfixturevalue(app_name)
    queued = [lane.name for lane in app.config.lanes().queued()]
    urls = router_variables(app)["LANE_QUEUE_URLS"]
    assert "Fn::Join" in urls  # a JSON object with the queue URLs filled in by CloudFormation
    assert json.loads(placeholder(urls)) == {lane: f"ref:{lane_queue_id(app, lane)}" for lane in queued}


def test_env_values_carry_the_config(default_app):
    variables, config = router_variables(default_app), default_app.config
    lanes = json.loads(default_app.service.code_files[variables["LANES_FILE"]])  # the lane document in its code
    assert lanes == config.lanes().to_dict()
    assert lanes["inline"]["time_limit_s"] == config.inline_budget_s
    assert variables["MODEL_ID"] == config.model_id
    assert variables["STAGE"] == config.stage
    assert variables["JOB_TTL_DAYS"] == str(config.job_ttl_days)
    # How long the bucket keeps a result (the data stack's lifecycle rules), for the job's result_expires_at.
    assert variables["RESULT_RETENTION_DAYS"] == str(config.result_retention_days)
    assert (variables["TASK_RATES_PER_MIN"], variables["PRICE_OVERRIDES"]) == ("{}", "{}")
    # The key travels as a secret ARN, fetched (and cached) by the function itself: never its value.
    assert "SecretsAnthropicApiKey" in json.dumps(variables["ANTHROPIC_SECRET_ARN"])
    # A finished job's webhook is handed over to the dispatcher's queue; the router never signs or sends one.
    assert variables["WEBHOOK_QUEUE_URL"] == {"Ref": WEBHOOK_QUEUE}


def test_the_router_is_the_inline_lane_it_describes(default_app, gpu_app):
    for app in (default_app, gpu_app):
        inline = app.config.lanes().inline
        assert router(app)["MemorySize"] == inline.memory_mb == app.config.router_memory_mb
        assert json.loads(app.service.code_files[router_variables(app)["LANES_FILE"]])["inline"]["compute"] == {
            "kind": "lambda", "memory_mb": router(app)["MemorySize"], "arch": router(app)["Architectures"][0]}


def _deployed_length(value):
    if isinstance(value, str):
        return len(value.encode())
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return len(separator) * (len(parts) - 1) + sum(_deployed_length(part) for part in parts)
    return LONGEST_DEPLOYED_VALUE


def test_the_environment_fits_lambdas_4_kb_with_room_to_spare(gpu_app):
    variables = router_variables(gpu_app)
    size = sum(len(name) + _deployed_length(value) for name, value in variables.items())
    # Room to spare: at most 60 % of the limit (LANE_QUEUE_URLS and LANE_SERVICES grow with the lanes; each
    # deploy-time value is counted at its longest).
    assert size <= LAMBDA_MAX_ENVIRONMENT_BYTES * 6 // 10, f"{size} bytes of the router's environment, LANES is the bulk"


def test_cost_model_inputs_travel_as_json(gpu_app):
    variables = router_variables(gpu_app)
    assert json.loads(variables["TASK_RATES_PER_MIN"]) == {"documents.summarize": 30}
    assert json.loads(variables["PRICE_OVERRIDES"]) == {"fargate": {"spot_discount": 0.6}}
    lanes = json.loads(gpu_app.service.code_files[variables["LANES_FILE"]])
    assert lanes == gpu_app.config.lanes().to_dict()
    assert lanes["gpu"]["enabled"] is True
    assert lanes["cpu"]["compute"] == {
        "kind": "fargate", "vcpu": 1.0, "memory_mb": gpu_app.config.worker_memory_mb, "arch": "x86_64",
        # one task of the base runs on regular Fargate, so the lane is priced as on-demand
        "spot": False}


def test_router_may_send_to_every_lane_queue_and_the_webhook_queue_but_never_consume(gpu_app):
    role_id = router(gpu_app)["Role"]["Fn::GetAtt"][0]
    statements = inline_statements(gpu_app.service_json, role_id)
    for queue in (*(lane_queue_id(gpu_app, lane.name) for lane in gpu_app.config.lanes().queued()), WEBHOOK_QUEUE):
        on_queue = actions(statements_on(statements, {"Fn::GetAtt": [queue, "Arn"]}))
        assert "sqs:SendMessage" in on_queue
        assert not on_queue & CONSUME
    assert not actions(statements) & CONSUME
    assert not any("DeadLetterQueue" in json.dumps(s["Resource"]) for s in statements)


def test_router_role_reads_secrets_and_job_data_and_nothing_else(default_app):
    role_id = router(default_app)["Role"]["Fn::GetAtt"][0]
    statements = inline_statements(default_app.service_json, role_id)
    assert actions(statements) == {
        "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
        "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
        "logs:CreateLogStream", "logs:PutLogEvents",
        "ecs:DescribeServices", "ecs:UpdateService",  # waking an idle lane: on the lanes' services only (test_lane_wake)
    }
    (managed,) = attached_managed_policies(default_app.service_json, role_id)
    assert is_job_data_policy(managed)  # no AWS-managed policy, no table or bucket deletion (test_storage)
    (secrets,) = [s for s in statements if s["Action"][0].startswith("secretsmanager:")]
    assert "SecretsAnthropicApiKey" in json.dumps(secrets["Resource"])


def test_router_no_longer_sees_the_webhook_signing_secret(default_app, gpu_app):
    # Only the webhook dispatcher signs webhooks: neither the router's environment nor its role names the secret.
    for app in (default_app, gpu_app):
        role_id = router(app)["Role"]["Fn::GetAtt"][0]
        assert "WEBHOOK_SECRET_ARN" not in router_variables(app)
        assert "WebhookSigningSecret" not in json.dumps(router(app))
        assert "WebhookSigningSecret" not in json.dumps(inline_statements(app.service_json, role_id))


def test_router_logs_to_its_own_log_group_with_the_configured_retention(default_app):
    log_group_id, log_group = one(default_app.service_json, "AWS::Logs::LogGroup", "RouterLogGroup")
    assert log_group["Properties"]["RetentionInDays"] == default_app.config.log_retention_days
    assert router(default_app)["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": log_group_id}}
