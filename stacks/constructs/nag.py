"""Acknowledging a cdk-nag finding, always with the reason it does not apply (cdk-nag 3.x API)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledges ``rule_id`` (e.g. ``AwsSolutions-IAM5``) on ``scope`` and everything below it."""
    if len(reason) < 40:
        raise ValueError(f"the acknowledgement of {rule_id} needs a specific reason, got {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
