"""cdk-nag's AwsSolutions pack (3.x, a CDK policy-validation plugin) finds nothing unacknowledged, and every
acknowledgement says why. app.py registers the same pack, so `cdk synth` fails on a new finding too."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from cdk_nag import AwsSolutionsChecks
from infra_support import CLI_REGION, GPU_OVERRIDES, GPU_REGION, build, context

from stacks.constructs import nag

# Each acknowledged finding, so that a new one is a decision someone makes in review, not a side effect.
EXPECTED_ACKNOWLEDGEMENTS = {
    "AwsSolutions-SMG4",
    "AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/results/*]",
    "AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/inputs/*]",
    "AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/webhooks/*]",
    "AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/uploads/*]",
    "AwsSolutions-L1",
    "AwsSolutions-APIG3",
    "AwsSolutions-APIG4",
    "AwsSolutions-COG4",
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
    "AwsSolutions-ECS2",
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/<WorkersCluster2E9BA3A7>/*]",
    "AwsSolutions-IAM5[Resource::*]",
    # the S3 intake: reading intake/* of the bucket, and CDK's BucketNotificationsHandler (stacks/constructs/intake.py)
    "AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/intake/*]",
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
    # GPU lane only
    "AwsSolutions-IAM5[Action::ecs:Submit*]",
    "AwsSolutions-AS3",
    # the GPU lane reading its embedding model from S3 (GPU_OVERRIDES' embedding_model_s3_uri)
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::my-models/minilm/*]",
}
GPU_ONLY = {"AwsSolutions-IAM5[Action::ecs:Submit*]", "AwsSolutions-AS3",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::my-models/minilm/*]"}


def nag_synth(tmp_path: Path, **overrides) -> tuple[cdk.App, dict | None]:
    app = cdk.App(context=context(**overrides), outdir=str(tmp_path))
    build(app, default_region=GPU_REGION if overrides.get("gpu_enabled") else CLI_REGION)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
    except RuntimeError as error:
        assert "ValidationFailed" in str(error)
    report = tmp_path / "validation-report.json"
    return app, json.loads(report.read_text()) if report.exists() else None


def violations(report: dict | None) -> list[str]:
    if report is None:
        return []
    return [f"{v['ruleName']} ({v['severity']}) at {[c['constructPath'] for c in v['violatingConstructs']]}"
            for plugin in report["pluginReports"] for v in plugin["violations"]]


def acknowledgements(app: cdk.App) -> dict[str, list[str]]:
    """Our cdk-nag acknowledgements by rule id (CDK stores them namespaced, e.g. ``Annotation::AwsSolutions-S1``;
    CDK's own acknowledgements of its built-in CloudFormation checks are not ours and are left out)."""
    found: dict[str, list[str]] = {}
    for construct in app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == "aws:cdk:acknowledged-rules":
                for rule_id, reason in entry.data.items():
                    if "AwsSolutions-" in rule_id:
                        found.setdefault(rule_id.split("::", 1)[-1], []).append(reason)
    return found


@pytest.fixture(scope="module", params=["default", "gpu"])
def nagged(request, tmp_path_factory):
    overrides = GPU_OVERRIDES if request.param == "gpu" else {}
    return request.param, *nag_synth(tmp_path_factory.mktemp(f"nag-{request.param}"), **overrides)


class _IgnoringValidations:
    """Stands in for aws_cdk.Validations inside stacks.constructs.nag: acknowledges nothing."""

    @staticmethod
    def of(_scope):
        return _IgnoringValidations()

    def acknowledge(self, _acknowledgment):
        pass


@pytest.fixture(scope="module")
def raw_findings(tmp_path_factory) -> set[str]:
    """The findings of both configurations with every acknowledgement of ours switched off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nag, "Validations", _IgnoringValidations)
        found = set()
        for name, overrides in (("default", {}), ("gpu", GPU_OVERRIDES)):
            _, report = nag_synth(tmp_path_factory.mktemp(f"raw-{name}"), **overrides)
            found |= {v["ruleName"] for plugin in report["pluginReports"] for v in plugin["violations"]}
    return found


def test_every_acknowledgement_answers_a_real_finding(raw_findings):
    assert raw_findings == EXPECTED_ACKNOWLEDGEMENTS


def test_no_unacknowledged_finding(nagged):
    _, _, report = nagged
    assert violations(report) == []


def test_acknowledgements_are_the_reviewed_set_each_with_a_specific_reason(nagged):
    config, app, _ = nagged
    found = acknowledgements(app)
    expected = EXPECTED_ACKNOWLEDGEMENTS if config == "gpu" else EXPECTED_ACKNOWLEDGEMENTS - GPU_ONLY
    assert set(found) == expected
    rules_by_reason: dict[str, set[str]] = {}
    for rule_id, reasons in found.items():
        for reason in reasons:
            rules_by_reason.setdefault(reason, set()).add(rule_id)
    assert all(len(reason) >= 40 for reason in rules_by_reason)
    copied = {reason: rules for reason, rules in rules_by_reason.items() if len(rules) > 1}
    assert not copied, "each finding is acknowledged with its own reason"
