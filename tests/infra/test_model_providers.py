"""model_providers in the templates: bedrock:InvokeModel on exactly the profiles and the foundation models they
route to, the Anthropic secret only where Anthropic is a provider, the batch lane off without it."""

from __future__ import annotations

import json

import pytest
from infra_support import inline_statements, one, resources, synth, variables

from jobcore.pricing import default_prices
from stacks.config import ConfigError, PipelineConfig

SONNET = default_prices().claude.bedrock[default_prices().claude.default_model]


@pytest.fixture(scope="module")
def both_app():
    return synth(default_region="us-east-1", model_providers=["anthropic", "bedrock"], bedrock_profile="us")


@pytest.fixture(scope="module")
def bedrock_app():
    return synth(default_region="eu-west-1", model_providers="bedrock", bedrock_profile="global")


def router_role(app):
    return one(app.service_json, "AWS::Lambda::Function", "RouterFunction")[1]["Properties"]["Role"]["Fn::GetAtt"][0]


def worker_task_role(app):
    _, task = one(app.service_json, "AWS::ECS::TaskDefinition", "CpuWorker")
    return task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]


def invoke_resources(app, role_id):
    found = [s for s in inline_statements(app.service_json, role_id) if s["Action"] == "bedrock:InvokeModel"]
    assert len(found) == 1
    return {json.dumps(r, sort_keys=True) for r in found[0]["Resource"]}


def arn(*parts):
    return json.dumps({"Fn::Join": ["", list(parts)]}, sort_keys=True)


def test_a_geographic_profile_grants_it_and_the_model_in_each_of_its_destination_regions(both_app):
    profile, model = SONNET["us"].id, SONNET["us"].model
    expected = {arn("arn:", {"Ref": "AWS::Partition"}, ":bedrock:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
                    f":inference-profile/{profile}")}
    expected |= {arn("arn:", {"Ref": "AWS::Partition"}, f":bedrock:{region}::foundation-model/{model}")
                 for region in SONNET["us"].destinations or ()}
    for role in (router_role(both_app), worker_task_role(both_app)):
        assert invoke_resources(both_app, role) == expected


def test_a_global_profile_grants_the_region_less_model_arn_and_no_secret_without_anthropic(bedrock_app):
    model = SONNET["global"].model
    granted = invoke_resources(bedrock_app, router_role(bedrock_app))
    assert arn("arn:", {"Ref": "AWS::Partition"}, f":bedrock:::foundation-model/{model}") in granted
    assert len(granted) == 3  # the profile, the model in this Region, the model anywhere
    service = json.dumps(bedrock_app.service_json)
    for role in (router_role(bedrock_app), worker_task_role(bedrock_app)):
        assert "secretsmanager:GetSecretValue" not in json.dumps(inline_statements(bedrock_app.service_json, role))
    router_env = one(bedrock_app.service_json, "AWS::Lambda::Function", "RouterFunction")[1]["Properties"]["Environment"]
    assert "ANTHROPIC_SECRET_ARN" not in variables(router_env["Variables"])
    assert "ANTHROPIC_API_KEY" not in service  # no ECS secret on the workers
    assert not [k for k in resources(bedrock_app.service_json, "AWS::Lambda::Function") if k.startswith("Collector")]


def test_the_default_has_no_bedrock_grant(default_app):
    assert "bedrock:" not in json.dumps(default_app.service_json)


def test_config_refuses_unknown_providers_and_a_region_the_profile_is_not_callable_from():
    with pytest.raises(ConfigError, match="model_providers"):
        PipelineConfig.from_mapping({"model_providers": ["openai"]})
    with pytest.raises(ConfigError, match="bedrock_profile"):
        PipelineConfig.from_mapping({"bedrock_profile": "mars"})
    config = PipelineConfig.from_mapping({"model_providers": ["bedrock"], "bedrock_profile": "eu"})
    with pytest.raises(ConfigError, match="callable from us-east-1"):
        config.bedrock_profiles("us-east-1")
    assert [p.id for p in config.bedrock_profiles("eu-west-1")] == [SONNET["eu"].id]
    assert config.lanes().batch_lane is None
