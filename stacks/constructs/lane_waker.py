"""Letting a function that queues jobs wake an idle worker lane (``jobcore.wake``, ``jobadapters.ecs``).

The function gets ``LANE_SERVICES`` (each worker lane's service ARN, which names its cluster) and may call
``ecs:DescribeServices`` and ``ecs:UpdateService`` on exactly those services, nothing else of ECS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from jobcore.lanes import Lanes
from stacks.constructs import runtime_env

WAKE_ACTIONS = ("ecs:DescribeServices", "ecs:UpdateService")


def let_wake(function: lambda_.Function, role: iam.IRole, services: Mapping[str, ecs.BaseService], *,
             environment: Mapping[str, str], parse: Callable[[Mapping[str, str]], Any], where: str,
             placeholders: Mapping[str, str], lanes: Lanes) -> dict[str, str]:
    """Adds LANE_SERVICES to ``function`` (``environment`` is the rest of its environment: the whole is parsed with
    ``parse`` at synth, as ``runtime_env.check`` does) and the wake permission to ``role``; the added variables."""
    added = runtime_env.lane_services_environment(function, {lane: service.service_arn for lane, service in services.items()})
    runtime_env.check(parse, {**environment, **added}, where=where,
                      placeholders={**placeholders, **runtime_env.lane_services_placeholders(services)}, lanes=lanes)
    for key, value in added.items():
        function.add_environment(key, value)
    if services:
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=list(WAKE_ACTIONS), resources=[service.service_arn for service in services.values()]))
    return added
