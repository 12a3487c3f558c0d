"""RouterFunction: runtime, sizing, the exact environment RouterSettings reads, and least privilege."""

from __future__ import annotations

import json

from infra_support import (
    actions,
    attached_managed_policies,
    env_names,
    inline_statements,
    is_job_data_policy,
    one,
    statements_on,
)
from jobadapters.settings import RouterSettings

CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:PurgeQueue"}


def router(app):
    return one(app.service_json, "AWS::Lambda::Function", "RouterFunction")[1]["Properties"]


def test_router_is_arm64_python_313_sized_from_config(default_app):
    props, config = router(default_app), default_app.config
    assert props["Architectures"] == ["arm64"]
    assert props["Runtime"] == "python3.13"
    assert props["Handler"] == "router.handler.handler"
    assert props["MemorySize"] == config.router_memory_mb
    assert props["Timeout"] == config.router_timeout_s
    assert "ReservedConcurrentExecutions" not in props


def test_reserved_concurrency_comes_from_config(gpu_app):
    assert router(gpu_app)["ReservedConcurrentExecutions"] == 50


def test_env_is_exactly_what_router_settings_read_without_a_gpu_queue_when_the_lane_is_off(default_app):
    assert env_names(router(default_app)["Environment"]["Variables"]) == RouterSettings.ENV - {"GPU_QUEUE_URL"}


def test_env_is_exactly_what_router_settings_read_with_the_gpu_lane(gpu_app):
    variables = router(gpu_app)["Environment"]["Variables"]
    assert env_names(variables) == RouterSettings.ENV
    assert variables["CPU_QUEUE_URL"] == {"Ref": "CpuLaneQueueD39CD4BF"}
    assert variables["GPU_QUEUE_URL"] == {"Ref": "GpuLaneQueue4B038172"}


def test_env_values_carry_the_config(default_app):
    variables, config = router(default_app)["Environment"]["Variables"], default_app.config
    assert variables["INLINE_BUDGET_S"] == str(config.inline_budget_s)
    assert variables["MODEL_ID"] == config.model_id
    assert variables["JOB_TTL_DAYS"] == str(config.job_ttl_days)
    assert variables["WORKER_MEMORY_MB"] == str(config.worker_memory_mb)
    assert variables["ROUTER_MEMORY_MB"] == str(router(default_app)["MemorySize"])
    assert (variables["TASK_RATES_PER_MIN"], variables["PRICE_OVERRIDES"]) == ("{}", "{}")
    # The key travels as a secret ARN, fetched (and cached) by the function itself: never its value.
    assert "SecretsAnthropicApiKey" in json.dumps(variables["ANTHROPIC_SECRET_ARN"])
    assert "SecretsWebhookSigningSecret" in json.dumps(variables["WEBHOOK_SECRET_ARN"])


def test_cost_model_inputs_travel_as_json(gpu_app):
    variables = router(gpu_app)["Environment"]["Variables"]
    assert json.loads(variables["TASK_RATES_PER_MIN"]) == {"summarize": 30}
    assert json.loads(variables["PRICE_OVERRIDES"]) == {"fargate_spot_discount": 0.6}
    assert (variables["WORKER_VCPU"], variables["FARGATE_SPOT"]) == ("1", "true")


def test_router_may_send_to_every_lane_queue_but_never_consume(gpu_app):
    role_id = router(gpu_app)["Role"]["Fn::GetAtt"][0]
    statements = inline_statements(gpu_app.service_json, role_id)
    for queue in ("CpuLaneQueueD39CD4BF", "GpuLaneQueue4B038172"):
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
    }
    (managed,) = attached_managed_policies(default_app.service_json, role_id)
    assert is_job_data_policy(managed)  # no AWS-managed policy, no table or bucket deletion (test_storage)


def test_router_logs_to_its_own_log_group_with_the_configured_retention(default_app):
    log_group_id, log_group = one(default_app.service_json, "AWS::Logs::LogGroup", "RouterLogGroup")
    assert log_group["Properties"]["RetentionInDays"] == default_app.config.log_retention_days
    assert router(default_app)["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": log_group_id}}
