"""What a role needs to export the deployment's traces: with ``traces_endpoint`` "xray", the action AWS authorizes
X-Ray's OTLP endpoint as (``jobadapters.tracing.XRAY_ACTIONS``), on "*" (it has no resource-level permissions);
nothing for a collector's URL (the collector holds its own permissions) or for no tracing."""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from jobadapters.tracing import XRAY, XRAY_ACTIONS
from stacks.constructs.nag import acknowledge


def grant_trace_export(role: iam.IRole, traces_endpoint: str) -> None:
    if traces_endpoint != XRAY:
        return
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(XRAY_ACTIONS), resources=["*"]))
    acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                "xray:PutTraceSegments, which X-Ray's OTLP traces endpoint is authorized as, has no resource-level "
                "permissions: AWS documents it on '*' only.")
