"""traces_endpoint "xray" in the templates: every role whose function or task exports traces (its TRACES_ENDPOINT is
"xray") may call X-Ray's OTLP endpoint (xray:PutTraceSegments, on "*": the action has no resource-level
permissions), and no other role; without it, no X-Ray grant at all."""

from __future__ import annotations

import json
from typing import Any

from infra_support import inline_statements, resources, variables

from jobadapters.tracing import XRAY_ACTIONS


def exporters(template: dict[str, Any]) -> dict[str, str]:
    """The TRACES_ENDPOINT of each Lambda function's and ECS task's role (logical id), where it is set."""
    found: dict[str, str] = {}
    for function in resources(template, "AWS::Lambda::Function").values():
        env = variables(function["Properties"].get("Environment", {}).get("Variables", {}))
        found[function["Properties"]["Role"]["Fn::GetAtt"][0]] = env.get("TRACES_ENDPOINT", "")
    for task in resources(template, "AWS::ECS::TaskDefinition").values():
        (container,) = task["Properties"]["ContainerDefinitions"]
        found[task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]] = variables(container.get("Environment", [])).get(
            "TRACES_ENDPOINT", "")
    return found


def xray_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [s for s in inline_statements(template, role) if any(str(a).startswith("xray:") for a in
                                                                 (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]


def test_every_role_that_exports_to_xray_may_put_traces_and_no_other(gpu_app):
    roles = exporters(gpu_app.service_json)
    exporting = {role for role, endpoint in roles.items() if endpoint == "xray"}
    # The router, every worker lane, the webhook dispatcher and its sweep, the intake function.
    assert len(exporting) >= 5 and len([r for r in exporting if "Worker" in r]) == 2
    for role in roles:
        statements = xray_statements(gpu_app.service_json, role)
        if role in exporting:
            assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == [("Allow", XRAY_ACTIONS[0], "*")], role
        else:
            assert statements == [], role


def test_without_xray_no_role_gets_an_xray_grant(default_app):
    assert set(exporters(default_app.service_json).values()) == {""}
    assert "xray:" not in json.dumps(default_app.service_json)
