"""Acknowledging a cdk-nag finding, always with the reason it does not apply (cdk-nag 3.x API).

cdk-nag 3 matches an acknowledgement by the finding's exact id, so a finding about one wildcard is
acknowledged as e.g. ``AwsSolutions-IAM5[Resource::<BucketLogicalId.Arn>/results/*]``: :func:`ref` writes
the ``<...>`` part the way cdk-nag does for a reference within the same stack.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledges ``rule_id`` on ``scope`` and everything below it."""
    if len(reason) < 40:
        raise ValueError(f"the acknowledgement of {rule_id} needs a specific reason, got {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def ref(resource: IConstruct, attribute: str | None = None) -> str:
    """``<LogicalId>`` or ``<LogicalId.Attribute>`` of ``resource`` (an L2 or its CfnResource)."""
    element = resource if isinstance(resource, CfnElement) else resource.node.default_child
    if not isinstance(element, CfnElement):
        raise TypeError(f"{resource.node.path} has no CloudFormation resource to name")
    stack = Stack.of(element)
    logical_id = stack.resolve(stack.get_logical_id(element))
    return f"<{logical_id}.{attribute}>" if attribute else f"<{logical_id}>"
