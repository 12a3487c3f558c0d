"""JobsApi: a regional REST API where every route needs an API key, logged and throttled."""

from __future__ import annotations

import json

from infra_support import one, resources

from stacks.constructs.api import CONSOLE_BURST_LIMIT, CONSOLE_RATE_LIMIT, CONSOLE_ROUTES, ROUTES


def paths(template):
    """Full path of every API Gateway resource, by logical id."""
    api_resources = resources(template, "AWS::ApiGateway::Resource")
    root = one(template, "AWS::ApiGateway::RestApi")[0]

    def full(logical_id):
        props = api_resources[logical_id]["Properties"]
        parent = props["ParentId"]
        prefix = "" if parent == {"Fn::GetAtt": [root, "RootResourceId"]} else full(parent["Ref"])
        return f"{prefix}/{props['PathPart']}"

    return {logical_id: full(logical_id) for logical_id in api_resources}


def test_api_is_regional(default_app):
    _, api = one(default_app.service_json, "AWS::ApiGateway::RestApi")
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_every_route_but_the_consoles_requires_an_api_key_and_all_proxy_to_the_router(default_app):
    by_id = paths(default_app.service_json)
    methods = resources(default_app.service_json, "AWS::ApiGateway::Method")
    route_of = {logical_id: (m["Properties"]["HttpMethod"], by_id[m["Properties"]["ResourceId"]["Ref"]])
                for logical_id, m in methods.items()}
    routes = set(route_of.values())
    assert routes == set(ROUTES) | set(CONSOLE_ROUTES)
    assert {("POST", "/v1/jobs"), ("GET", "/v1/jobs/{id}")} <= routes
    # the webhook delivery log, and a new series of attempts
    assert {("GET", "/v1/jobs/{id}/deliveries"), ("POST", "/v1/jobs/{id}/deliveries")} <= routes
    # job control: a tenant's jobs (filtered, paged), and a cancel
    assert {("GET", "/v1/jobs"), ("POST", "/v1/jobs/{id}/cancel")} <= routes
    router_id, _ = one(default_app.service_json, "AWS::Lambda::Function", "RouterFunction")
    for logical_id, method in methods.items():
        # a browser loads the console's page and assets without a key; every API call it then makes sends one
        assert method["Properties"]["ApiKeyRequired"] is (route_of[logical_id] not in CONSOLE_ROUTES)
        assert method["Properties"]["Integration"]["Type"] == "AWS_PROXY"
        assert router_id in json.dumps(method["Properties"]["Integration"]["Uri"])


def test_stage_logs_access_with_the_tenant_key_and_throttles(default_app):
    _, stage = one(default_app.service_json, "AWS::ApiGateway::Stage")
    props, config = stage["Properties"], default_app.config
    assert props["StageName"] == config.stage
    access_log = json.loads(props["AccessLogSetting"]["Format"])
    assert access_log["apiKeyId"] == "$context.identity.apiKeyId"
    assert "ApiAccessLogs" in json.dumps(props["AccessLogSetting"]["DestinationArn"])
    by_path = {(s["ResourcePath"], s["HttpMethod"]): s for s in props["MethodSettings"]}
    settings = by_path[("/*", "*")]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (
        config.api_rate_limit, config.api_burst_limit)
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False  # request bodies (the users' inputs) stay out of the logs
    # The key-less console routes have a throttle of their own, below the stage's (no usage plan bounds them).
    consoles = {path: s for (path, _), s in by_path.items() if path != "/*"}
    assert set(consoles) == {"/" + path.replace("/", "~1") for _, path in CONSOLE_ROUTES}  # CloudFormation escapes "/"
    for s in consoles.values():
        assert (s["ThrottlingRateLimit"], s["ThrottlingBurstLimit"]) == (CONSOLE_RATE_LIMIT, CONSOLE_BURST_LIMIT)
        assert CONSOLE_RATE_LIMIT < config.api_rate_limit


def test_usage_plan_throttles_each_key_and_holds_the_first_tenant_key(default_app):
    _, plan = one(default_app.service_json, "AWS::ApiGateway::UsagePlan")
    assert plan["Properties"]["Throttle"] == {
        "RateLimit": default_app.config.api_rate_limit, "BurstLimit": default_app.config.api_burst_limit}
    key_id, _ = one(default_app.service_json, "AWS::ApiGateway::ApiKey")
    _, plan_key = one(default_app.service_json, "AWS::ApiGateway::UsagePlanKey")
    assert plan_key["Properties"]["KeyId"] == {"Ref": key_id}


def test_gateway_errors_use_the_router_error_shape(default_app):
    responses = resources(default_app.service_json, "AWS::ApiGateway::GatewayResponse")
    assert {r["Properties"]["ResponseType"] for r in responses.values()} == {"DEFAULT_4XX", "DEFAULT_5XX"}
    for response in responses.values():
        assert '"error": {"type"' in response["Properties"]["ResponseTemplates"]["application/json"]


def test_outputs_give_the_url_and_how_to_get_the_key(default_app):
    outputs = default_app.service_json["Outputs"]
    assert {"ApiUrl", "ApiKeyId", "GetApiKeyCommand", "CpuQueueUrl", "CpuDeadLetterQueueUrl"} <= set(outputs)
    assert outputs["WebhookQueueUrl"]["Value"] == {"Ref": "WebhooksDeliveryQueueAF018C07"}
    assert outputs["WebhookDeadLetterQueueUrl"]["Value"] == {"Ref": "WebhooksDeliveryDeadLetterQueue5577D6B7"}
    assert "aws apigateway get-api-key" in json.dumps(outputs["GetApiKeyCommand"]["Value"])


def test_execution_logs_go_to_a_group_the_stack_owns_with_the_configured_retention(default_app):
    groups = [g["Properties"] for g in resources(default_app.service_json, "AWS::Logs::LogGroup").values()
              if "API-Gateway-Execution-Logs_" in json.dumps(g["Properties"].get("LogGroupName"))]
    assert len(groups) == 1
    assert groups[0]["RetentionInDays"] == default_app.config.log_retention_days
    assert json.dumps(groups[0]["LogGroupName"]).endswith(f'/{default_app.config.stage}"]]}}')
