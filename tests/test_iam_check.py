"""tools.iam_check: the policy evaluator of the permission test (tests/e2e/test_permissions.py), on small templates
and calls: wildcard actions, ARN patterns, intrinsics resolved to the resources created, conditions, the report."""

from __future__ import annotations

import pytest

from tools.iam_check import (
    Account,
    Request,
    Role,
    Statement,
    Templates,
    UnmappedCall,
    UnsupportedPolicy,
    check,
    matches,
    requests_for,
)

HERE = Account(account="123456789012", region="us-east-1")
QUEUE_URL = "http://127.0.0.1:5000/123456789012/local-cpu"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:local-cpu"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/local-jobs"


def call(service: str, operation: str, component: str = "worker", presigned: bool = False, **params) -> dict:
    return {"component": component, "service": service, "operation": operation, "params": params, "presigned": presigned}


def role(*statements: dict) -> Role:
    return Role("test", [Statement.parse(s, f"policy{i}") for i, s in enumerate(statements)])


def allow(action, resource, **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


# --- what a call is authorized as ---


@pytest.mark.parametrize(("made", "expected"), [
    (call("sqs", "SendMessage", QueueUrl=QUEUE_URL), [Request("sqs:SendMessage", QUEUE_ARN)]),
    (call("sqs", "DeleteMessageBatch", QueueUrl=QUEUE_URL), [Request("sqs:DeleteMessage", QUEUE_ARN)]),
    (call("sqs", "ChangeMessageVisibilityBatch", QueueUrl=QUEUE_URL), [Request("sqs:ChangeMessageVisibility", QUEUE_ARN)]),
    (call("sqs", "ReceiveMessage", QueueUrl="https://sqs.eu-west-1.amazonaws.com/111122223333/q"),
     [Request("sqs:ReceiveMessage", "arn:aws:sqs:eu-west-1:111122223333:q")]),
    (call("dynamodb", "PutItem", TableName="local-jobs"), [Request("dynamodb:PutItem", TABLE_ARN)]),
    (call("dynamodb", "Query", TableName="local-jobs", IndexName="by_tenant"),
     [Request("dynamodb:Query", TABLE_ARN + "/index/by_tenant")]),
    (call("dynamodb", "BatchGetItem", RequestItems=["local-jobs"]), [Request("dynamodb:BatchGetItem", TABLE_ARN)]),
    (call("dynamodb", "TransactWriteItems", TransactItems=[{"Put": {"TableName": "local-jobs"}},
                                                           {"ConditionCheck": {"TableName": "local-jobs"}}]),
     [Request("dynamodb:PutItem", TABLE_ARN), Request("dynamodb:ConditionCheckItem", TABLE_ARN)]),
    (call("s3", "HeadObject", Bucket="b", Key="uploads/t/u1"), [Request("s3:GetObject", "arn:aws:s3:::b/uploads/t/u1")]),
    (call("s3", "UploadPart", Bucket="b", Key="results/j"), [Request("s3:PutObject", "arn:aws:s3:::b/results/j")]),
    (call("s3", "ListObjectsV2", Bucket="b", Prefix="model/"), [Request("s3:ListBucket", "arn:aws:s3:::b", (("s3:prefix", "model/"),))]),
    (call("s3", "CopyObject", Bucket="b", Key="results/j", CopySource="b/inputs/j"),
     [Request("s3:GetObject", "arn:aws:s3:::b/inputs/j"), Request("s3:PutObject", "arn:aws:s3:::b/results/j")]),
    (call("ecs", "DescribeServices", cluster="workers", services=["cpu", "arn:aws:ecs:us-east-1:1:service/w/gpu"]),
     [Request("ecs:DescribeServices", "arn:aws:ecs:us-east-1:123456789012:service/workers/cpu"),
      Request("ecs:DescribeServices", "arn:aws:ecs:us-east-1:1:service/w/gpu")]),
    (call("cloudwatch", "PutMetricData", Namespace="Jobs"),
     [Request("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", "Jobs"),))]),
    (call("sts", "GetCallerIdentity"), []),
    (call("bedrock-runtime", "InvokeModel", modelId="us.anthropic.claude-sonnet-4-6"),
     [Request("bedrock:InvokeModel", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6"),
      *(Request("bedrock:InvokeModel", f"arn:aws:bedrock:{region}::foundation-model/anthropic.claude-sonnet-4-6")
        for region in ("us-east-1", "us-east-2", "us-west-1", "us-west-2"))]),
    (call("bedrock-runtime", "InvokeModel", modelId="global.anthropic.claude-sonnet-4-6"),
     [Request("bedrock:InvokeModel", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-sonnet-4-6"),
      Request("bedrock:InvokeModel", "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-6"),
      Request("bedrock:InvokeModel", "arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-6")]),
    (call("bedrock-runtime", "InvokeModelWithResponseStream", modelId="anthropic.claude-haiku-4-5-20251001-v1:0"),
     [Request("bedrock:InvokeModelWithResponseStream",
              "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0")]),
])
def test_a_call_is_authorized_as_its_iam_actions_on_its_resources(made, expected):
    assert requests_for(made, HERE) == expected


@pytest.mark.parametrize("made", [call("sqs", "TagQueue", QueueUrl=QUEUE_URL), call("s3", "PutBucketPolicy", Bucket="b"),
                                  call("kinesis", "PutRecord"), call("bedrock-runtime", "Converse", modelId="x"),
                                  call("bedrock-runtime", "InvokeModel", modelId="us.anthropic.claude-unknown")])
def test_a_call_with_no_mapping_is_an_error_not_a_pass(made):
    with pytest.raises(UnmappedCall, match=made["operation"]):
        requests_for(made, HERE)


# --- statements ---


@pytest.mark.parametrize(("pattern", "value", "ignore_case", "expected"), [
    ("sqs:*", "sqs:SendMessage", True, True),
    ("SQS:send*", "sqs:SendMessage", True, True),
    ("sqs:Receive*", "sqs:SendMessage", True, False),
    ("arn:aws:s3:::b/results/*", "arn:aws:s3:::b/results/j/vectors.npy", False, True),
    ("arn:aws:s3:::b/results/*", "arn:aws:s3:::b/inputs/j", False, False),
    ("arn:aws:s3:::b/results/*", "arn:aws:s3:::B/results/j", False, False),  # resources are case-sensitive
    ("arn:aws:sqs:*:*:q?", "arn:aws:sqs:us-east-1:1:q1", False, True),
    ("arn:aws:sqs:*:*:q?", "arn:aws:sqs:us-east-1:1:q12", False, False),
    ("arn:aws:s3:::b.[x]", "arn:aws:s3:::b.[x]", False, True),  # only * and ? are wildcards
])
def test_wildcards_in_actions_and_resources(pattern, value, ignore_case, expected):
    assert matches(pattern, value, ignore_case=ignore_case) is expected


def test_an_allow_needs_the_action_and_the_resource():
    grants = role(allow(["sqs:ReceiveMessage", "sqs:DeleteMessage"], QUEUE_ARN))

    assert grants.decide(Request("sqs:ReceiveMessage", QUEUE_ARN)).allowed
    assert not grants.decide(Request("sqs:SendMessage", QUEUE_ARN)).allowed
    assert not grants.decide(Request("sqs:ReceiveMessage", QUEUE_ARN + "-dlq")).allowed


def test_an_explicit_deny_wins_over_an_allow():
    grants = role(allow("s3:*", "*"), {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/intake/*"})

    assert grants.decide(Request("s3:PutObject", "arn:aws:s3:::b/results/j")).allowed
    assert not grants.decide(Request("s3:PutObject", "arn:aws:s3:::b/intake/x")).allowed


def test_not_action_and_not_resource():
    grants = role({"Effect": "Allow", "NotAction": "s3:DeleteObject", "NotResource": "arn:aws:s3:::private/*"})

    assert grants.decide(Request("s3:GetObject", "arn:aws:s3:::b/k")).allowed
    assert not grants.decide(Request("s3:DeleteObject", "arn:aws:s3:::b/k")).allowed
    assert not grants.decide(Request("s3:GetObject", "arn:aws:s3:::private/k")).allowed


def test_conditions_on_the_keys_a_call_sets():
    listing = role(allow("s3:ListBucket", "arn:aws:s3:::models", Condition={"StringLike": {"s3:prefix": ["minilm", "minilm/*"]}}))
    bucket = "arn:aws:s3:::models"

    assert listing.decide(Request("s3:ListBucket", bucket, (("s3:prefix", "minilm/model.onnx"),))).allowed
    assert not listing.decide(Request("s3:ListBucket", bucket, (("s3:prefix", "other/"),))).allowed
    assert not listing.decide(Request("s3:ListBucket", bucket)).allowed  # the key absent: a positive operator fails


def test_negated_and_if_exists_conditions_hold_when_the_key_is_absent():
    grants = role(allow("cloudwatch:PutMetricData", "*", Condition={"StringNotEquals": {"cloudwatch:namespace": "AWS/EC2"}}),
                  allow("s3:GetObject", "*", Condition={"StringEqualsIfExists": {"s3:ExistingObjectTag/x": "y"}}))

    assert grants.decide(Request("cloudwatch:PutMetricData", "*")).allowed
    assert not grants.decide(Request("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", "AWS/EC2"),))).allowed
    assert grants.decide(Request("s3:GetObject", "arn:aws:s3:::b/k")).allowed


def test_an_operator_not_modelled_is_an_error():
    with pytest.raises(UnsupportedPolicy, match="ForAnyValue"):
        Statement.parse(allow("s3:*", "*", Condition={"ForAnyValue:StringLike": {"aws:TagKeys": "x*"}}), "p")
    odd = role(allow("s3:*", "*", Condition={"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}}))
    with pytest.raises(UnsupportedPolicy, match="DateGreaterThan"):
        odd.decide(Request("s3:GetObject", "arn:aws:s3:::b/k", (("aws:CurrentTime", "2026-01-01"),)))


# --- templates ---

DATA = {
    "Resources": {
        "Table1": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "Bucket1": {"Type": "AWS::S3::Bucket", "Properties": {}},
        "Access1": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": {"Statement": [
            allow("dynamodb:Query", {"Fn::Join": ["", [{"Fn::GetAtt": ["Table1", "Arn"]}, "/index/by_tenant"]]}),
            allow("s3:GetObject", {"Fn::Sub": "${Bucket1.Arn}/results/*"}),
        ]}}},
    },
    "Outputs": {
        "PublishAccess": {"Value": {"Ref": "Access1"}},
        "TableArn": {"Value": {"Fn::GetAtt": ["Table1", "Arn"]}, "Export": {"Name": "Data:TableArn"}},
    },
}
SERVICE = {
    "Resources": {
        "Queue1": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Cluster1": {"Type": "AWS::ECS::Cluster", "Properties": {}},
        "Service1": {"Type": "AWS::ECS::Service", "Properties": {"Cluster": {"Ref": "Cluster1"}}},
        "Role1": {"Type": "AWS::IAM::Role", "Properties": {"ManagedPolicyArns": [
            {"Fn::GetStackOutput": {"StackName": "Data", "Region": {"Ref": "AWS::Region"}, "OutputName": "PublishAccess"}},
            {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::aws:policy/ReadOnlyAccess"]]},
        ]}},
        "Policy1": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Role1"}], "PolicyDocument": {"Statement": [
            allow(["sqs:ReceiveMessage", "sqs:DeleteMessage"], {"Fn::GetAtt": ["Queue1", "Arn"]}),
            allow("ecs:UpdateService", {"Ref": "Service1"}),
            allow("dynamodb:GetItem", {"Fn::ImportValue": "Data:TableArn"}),
            allow("ecs:UpdateTaskProtection", {"Fn::Sub": ["arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/${C}/*",
                                                           {"C": {"Ref": "Cluster1"}}]}),
        ]}}},
        "Other1": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": ["someone-else"], "PolicyDocument": {"Statement": [
            allow("*", "*")]}}},
    },
}
NAMES = {"Table1": "local-jobs", "Bucket1": "local-bucket", "Queue1": "local-cpu", "Cluster1": "workers", "Service1": "cpu"}


@pytest.fixture
def templates() -> Templates:
    return Templates({"Data": DATA, "Service": SERVICE}, HERE, names=NAMES)


def test_intrinsics_resolve_to_the_resources_created(templates):
    assert templates.resolve({"Ref": "Queue1"}, "Service") == "https://sqs.us-east-1.amazonaws.com/123456789012/local-cpu"
    assert templates.resolve({"Fn::GetAtt": "Queue1.Arn"}, "Service") == QUEUE_ARN
    assert templates.resolve({"Ref": "Service1"}, "Service") == "arn:aws:ecs:us-east-1:123456789012:service/workers/cpu"
    assert templates.resolve({"Fn::Sub": "${Bucket1.Arn}/${!Literal}"}, "Data") == "arn:aws:s3:::local-bucket/${Literal}"
    assert templates.resolve({"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]}, "Data") == "b"
    assert templates.resolve({"Fn::ImportValue": "Data:TableArn"}, "Service") == TABLE_ARN
    with pytest.raises(UnsupportedPolicy, match="Fn::If"):
        templates.resolve({"Fn::If": ["Cond", "a", "b"]}, "Data")


def test_a_role_gathers_its_attached_inline_and_customer_managed_policies(templates):
    worker = templates.role("Service", "Role1")

    assert worker.decide(Request("sqs:DeleteMessage", QUEUE_ARN)).allowed
    assert not worker.decide(Request("sqs:SendMessage", QUEUE_ARN)).allowed  # Other1's allow-all is someone else's
    assert worker.decide(Request("dynamodb:Query", TABLE_ARN + "/index/by_tenant")).allowed  # the other stack's policy
    assert not worker.decide(Request("dynamodb:Query", TABLE_ARN)).allowed
    assert worker.decide(Request("dynamodb:GetItem", TABLE_ARN)).allowed
    assert worker.decide(Request("s3:GetObject", "arn:aws:s3:::local-bucket/results/job_1.json")).allowed
    assert worker.decide(Request("ecs:UpdateService", "arn:aws:ecs:us-east-1:123456789012:service/workers/cpu")).allowed
    assert worker.decide(Request("ecs:UpdateTaskProtection", "arn:aws:ecs:us-east-1:123456789012:task/workers/abc")).allowed
    assert worker.unevaluated == ["arn:aws:iam::aws:policy/ReadOnlyAccess"]


# --- the check ---


def test_the_check_names_each_denied_call_and_lists_unused_grants(templates):
    calls = [call("sqs", "ReceiveMessage", QueueUrl=QUEUE_URL), call("sqs", "SendMessage", QueueUrl=QUEUE_URL),
             call("sqs", "SendMessage", QueueUrl=QUEUE_URL), call("s3", "GetObject", presigned=True, Bucket="local-bucket",
                                                                   Key="results/j"),
             call("sqs", "SendMessage", component="nobody", QueueUrl=QUEUE_URL)]

    report = check(calls, {"worker": templates.role("Service", "Role1")}, HERE, outside={"ecs:*TaskProtection": "the agent"})

    assert report.checked == 4
    assert report.denied == [f"worker: sqs:SendMessage on {QUEUE_ARN} (sqs:SendMessage)",
                             "nobody: no role known for this component (sqs:SendMessage)"]
    assert "worker: sqs:DeleteMessage on any of its resources (Policy1[0])" in report.unused  # Receive was used, Delete not
    assert "worker: ecs:UpdateService on arn:aws:ecs:us-east-1:123456789012:service/workers/cpu (Policy1[1])" in report.unused
    assert not any("sqs:ReceiveMessage" in line for line in report.unused)  # used
    assert not any("s3:GetObject" in line for line in report.unused)  # used by a presigned URL
    assert any(line.startswith("worker: ecs:UpdateTaskProtection") and "not a call of the code: the agent" in line
               for line in report.unused)
    assert "worker: managed policy arn:aws:iam::aws:policy/ReadOnlyAccess (not evaluated)" in report.unused
