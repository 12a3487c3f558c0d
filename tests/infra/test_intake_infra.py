"""The S3 intake in the templates: the bucket's notification (objects created under intake/ only) into the intake
queue and its DLQ (data stack), the intake function consuming it with partial batch responses, its exact
environment, the DLQ's alarm, and IAM limited to reading intake/* (service stack)."""

from __future__ import annotations

import json

from infra_support import (
    actions,
    attached_managed_policies,
    deployed_environment,
    inline_statements,
    is_job_data_policy,
    one,
    resources,
    variables,
)

from jobadapters.settings import IntakeSettings
from jobcore import intake as intake_core
from stacks.constructs import intake

# Renaming the queue would replace it (messages in flight lost): pinned.
QUEUE, DLQ, QUEUE_POLICY = "IntakeQueue91D2A3BB", "IntakeQueueDeadLetterQueue6006B161", "IntakeQueuePolicy1B275769"


def intake_function(app) -> tuple[str, dict]:
    return one(app.service_json, "AWS::Lambda::Function", "IntakeFunction")


def test_the_bucket_notifies_objects_created_under_intake_to_the_intake_queue(default_app):
    data = default_app.data_json
    _, notification = one(data, "Custom::S3BucketNotifications")
    (config,) = notification["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"] == {"Key": {"FilterRules": [{"Name": "prefix", "Value": "intake/"}]}}
    assert config["QueueArn"] == {"Fn::GetAtt": [QUEUE, "Arn"]}
    text = json.dumps(data["Resources"][QUEUE_POLICY]["Properties"]["PolicyDocument"])
    assert "s3.amazonaws.com" in text and "aws:SourceArn" in text  # only this bucket may send


def test_the_intake_queue_has_a_dead_letter_queue_after_max_receives(default_app):
    data = default_app.data_json
    props = data["Resources"][QUEUE]["Properties"]
    assert data["Resources"][DLQ]["Type"] == "AWS::SQS::Queue"
    assert props["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [DLQ, "Arn"]},
                                      "maxReceiveCount": intake_core.MAX_RECEIVES}
    assert props["VisibilityTimeout"] == intake_core.QUEUE_VISIBILITY_S >= 6 * intake_core.FUNCTION_TIMEOUT_S
    assert props["SqsManagedSseEnabled"] is True


def test_the_intake_function_consumes_the_queue_in_batches_with_partial_failures(default_app):
    function_id, function = intake_function(default_app)
    props = function["Properties"]
    assert props["Handler"] == intake.HANDLER == "intake.handler.handler"
    assert (props["Architectures"], props["Runtime"], props["Timeout"]) == (["arm64"], "python3.13", 30)
    _, mapping = one(default_app.service_json, "AWS::Lambda::EventSourceMapping", "IntakeFunction")
    assert mapping["Properties"]["BatchSize"] == intake.BATCH_SIZE <= 10
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert QUEUE in json.dumps(mapping["Properties"]["EventSourceArn"])
    # A bulk drop of objects may not take the account's concurrency from the router.
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": default_app.config.intake_max_concurrency} == {
        "MaximumConcurrency": 2}


def test_the_intakes_maximum_concurrency_comes_from_config(gpu_app):
    _, mapping = one(gpu_app.service_json, "AWS::Lambda::EventSourceMapping", "IntakeFunction")
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 10}


def test_the_intake_function_gets_exactly_what_intake_settings_read(default_app):
    _, function = intake_function(default_app)
    env = variables(function["Properties"]["Environment"]["Variables"])
    assert env["INTAKE_TENANT"] == default_app.config.intake_tenant == "intake"
    assert env["INTAKE_WEBHOOK_URL"] == ""
    assert "ANTHROPIC_SECRET_ARN" not in env  # intake jobs are async: it never calls Claude
    assert set(env) <= IntakeSettings.ENV
    IntakeSettings.from_env(deployed_environment(env, default_app))


def test_the_intake_dead_letter_queue_is_alarmed(default_app):
    alarms = resources(default_app.service_json, "AWS::CloudWatch::Alarm")
    (alarm,) = [a for name, a in alarms.items() if name.startswith("MonitoringIntakeDeadLetters")]
    props = alarm["Properties"]
    assert props["Threshold"] == 0 and props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert DLQ in json.dumps(props["Dimensions"])
    assert props["AlarmActions"]


def test_the_intake_role_reads_only_intake_objects(default_app):
    _, function = intake_function(default_app)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = inline_statements(default_app.service_json, role_id)
    assert not any(a.startswith("s3:") for a in actions(statements))  # S3: only through the managed policies
    assert not any("secretsmanager" in a for a in actions(statements))
    sent = {a for a in actions(statements) if a.startswith("sqs:")}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage"} <= sent
    attached = attached_managed_policies(default_app.service_json, role_id)
    assert any(is_job_data_policy(arn) for arn in attached)
    read = [arn for arn in attached if "IntakeReadIntakeObjects" in json.dumps(arn)]
    assert len(read) == 1 and len(attached) == 2
    _, policy = one(default_app.data_json, "AWS::IAM::ManagedPolicy", "IntakeReadIntakeObjects")
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "s3:GetObject"
    assert json.dumps(statement["Resource"]).endswith('"/intake/*"]]}')
