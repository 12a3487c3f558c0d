"""Waking an idle lane in the templates: the router and the S3 intake name each worker lane's ECS service
(LANE_SERVICES) and may DescribeServices and UpdateService on exactly those services, nothing else of ECS."""

from __future__ import annotations

import json

import pytest
from infra_support import deployed_environment, inline_statements, one, placeholder, resources, variables

from jobadapters.ecs import LaneService
from jobadapters.settings import IntakeSettings, RouterSettings
from stacks.names import construct_id

WAKE = {"ecs:DescribeServices", "ecs:UpdateService"}


@pytest.fixture(params=["default_app", "gpu_app"])
def app(request):
    return request.getfixturevalue(request.param)


def function(app, prefix: str) -> dict:
    return one(app.service_json, "AWS::Lambda::Function", prefix)[1]["Properties"]


def worker_service(app, lane: str) -> str:
    """The logical id of the lane's (Spot) worker service: the one the backlog policy scales, not the on-demand fallback."""
    (found,) = [name for name in resources(app.service_json, "AWS::ECS::Service") if name.startswith(f"{construct_id(lane)}WorkerService")]
    return found


def ecs_statements(app, prefix: str) -> list[dict]:
    role = function(app, prefix)["Role"]["Fn::GetAtt"][0]
    return [s for s in inline_statements(app.service_json, role) if any(a.startswith("ecs:") for a in _list(s["Action"]))]


def _list(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("prefix", ["RouterFunction", "IntakeFunction"])
def test_lane_services_name_each_worker_lane_s_service(app, prefix):
    lanes = [lane.name for lane in app.config.lanes().worker_lanes()]
    raw = variables(function(app, prefix)["Environment"]["Variables"])["LANE_SERVICES"]

    named = json.loads(placeholder(raw))

    assert set(named) == set(lanes)
    for lane in lanes:
        assert named[lane] == f"ref:{worker_service(app, lane)}"  # its ARN (Ref of AWS::ECS::Service), naming the cluster


@pytest.mark.parametrize(("prefix", "parse"), [("RouterFunction", RouterSettings.from_env),
                                              ("IntakeFunction", lambda env: IntakeSettings.from_env(env).router)])
def test_the_deployed_code_reads_the_lane_services(app, prefix, parse):
    settings = parse(deployed_environment(variables(function(app, prefix)["Environment"]["Variables"]), app))

    assert set(settings.lane_services) == {lane.name for lane in app.config.lanes().worker_lanes()}
    assert all(isinstance(where, LaneService) for where in settings.lane_services.values())


@pytest.mark.parametrize("prefix", ["RouterFunction", "IntakeFunction"])
def test_the_role_may_wake_exactly_the_lanes_services(app, prefix):
    statements = ecs_statements(app, prefix)

    assert {a for s in statements for a in _list(s["Action"])} == WAKE
    resources_named = [r for s in statements for r in _list(s["Resource"])]
    expected = [{"Ref": worker_service(app, lane.name)} for lane in app.config.lanes().worker_lanes()]
    assert sorted(map(json.dumps, resources_named)) == sorted(map(json.dumps, expected))
    assert "*" not in json.dumps(resources_named)
    assert not any("OnDemand" in json.dumps(r) for r in resources_named)  # the fallback service is the alarm's alone


def test_no_other_function_may_touch_the_ecs_services(default_app):
    allowed = {function(default_app, p)["Role"]["Fn::GetAtt"][0] for p in ("RouterFunction", "IntakeFunction")}
    for name, policy in resources(default_app.service_json, "AWS::IAM::Policy").items():
        document = json.dumps(policy["Properties"]["PolicyDocument"])
        if "ecs:UpdateService" in document:
            roles = {role["Ref"] for role in policy["Properties"]["Roles"]}
            assert roles <= allowed, name
