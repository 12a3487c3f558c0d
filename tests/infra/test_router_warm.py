"""The router's cold-start switches in the templates: router_snapstart (SnapStart on published versions) and
router_provisioned_concurrency (on an alias), each putting API Gateway on the alias ``live``; by default neither,
and API Gateway invokes the function as before."""

from __future__ import annotations

import json

import pytest
from infra_support import one, resources, synth
from test_nag import nag_synth, violations

from stacks.constructs.router import LIVE_ALIAS


@pytest.fixture(scope="module")
def snapstart_app():
    return synth(router_snapstart="true")  # as `cdk deploy -c router_snapstart=true` passes it


@pytest.fixture(scope="module")
def provisioned_app():
    return synth(router_provisioned_concurrency="3")


def router(app) -> tuple[str, dict]:
    return one(app.service_json, "AWS::Lambda::Function", "RouterFunction")


def integration_uris(app) -> list[str]:
    methods = resources(app.service_json, "AWS::ApiGateway::Method").values()
    return [json.dumps(m["Properties"]["Integration"]["Uri"]) for m in methods if "Integration" in m["Properties"]]


def invoke_permissions(app) -> list[str]:
    return [json.dumps(p["Properties"]["FunctionName"]) for p in resources(app.service_json, "AWS::Lambda::Permission").values()
            if "apigateway" in json.dumps(p["Properties"]["Principal"])]


def alias(app) -> tuple[str, dict]:
    return one(app.service_json, "AWS::Lambda::Alias", "RouterLive")


def test_by_default_api_gateway_invokes_the_function_with_neither_switch(default_app):
    function_id, props = router(default_app)
    assert "SnapStart" not in props["Properties"]
    assert not resources(default_app.service_json, "AWS::Lambda::Alias")
    assert not resources(default_app.service_json, "AWS::Lambda::Version")
    uris = integration_uris(default_app)
    assert uris and all(f'"{function_id}"' in uri for uri in uris)
    assert (default_app.config.router_snapstart, default_app.config.router_provisioned_concurrency) == (False, 0)


def test_snapstart_applies_to_published_versions_behind_the_live_alias(snapstart_app):
    function_id, props = router(snapstart_app)
    assert props["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    alias_id, live = alias(snapstart_app)
    assert live["Properties"]["Name"] == LIVE_ALIAS
    assert "ProvisionedConcurrencyConfig" not in live["Properties"]  # Lambda refuses both on one function
    (version_id,) = resources(snapstart_app.service_json, "AWS::Lambda::Version")
    assert live["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}


@pytest.mark.parametrize("app_name", ["snapstart_app", "provisioned_app"])
def test_api_gateway_invokes_the_alias(request, app_name):
    app = request.getfixturevalue(app_name)
    alias_id, _ = alias(app)
    function_id, _ = router(app)
    uris = integration_uris(app)
    assert uris and all(f'"{alias_id}"' in uri and f'"{function_id}"' not in uri for uri in uris)
    permissions = invoke_permissions(app)
    assert permissions and all(alias_id in p for p in permissions)


def test_provisioned_concurrency_is_set_on_the_alias_without_snapstart(provisioned_app):
    _, props = router(provisioned_app)
    assert "SnapStart" not in props["Properties"]
    _, live = alias(provisioned_app)
    assert live["Properties"]["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 3}


@pytest.mark.parametrize("overrides", [{"router_snapstart": "true"}, {"router_provisioned_concurrency": "2"}])
def test_either_switch_stays_cdk_nag_clean(tmp_path, overrides):
    _, report = nag_synth(tmp_path, **overrides)
    assert violations(report) == []
