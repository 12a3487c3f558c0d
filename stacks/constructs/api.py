"""The public REST API: API keys identify tenants, a usage plan throttles them."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from router.routes import CONSOLE_ROUTES, ROUTES
from stacks.constructs.nag import acknowledge

# Requests a second (and burst) to the key-less console routes, per route, for the whole stage: a page and its two
# assets per visit.
CONSOLE_RATE_LIMIT = 10
CONSOLE_BURST_LIMIT = 20

_ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId",
    "stage": "$context.stage",
    "apiKeyId": "$context.identity.apiKeyId",
    "ip": "$context.identity.sourceIp",
    "method": "$context.httpMethod",
    "resource": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "errorType": "$context.error.responseType",
})

# API Gateway's own errors (missing key, throttled, ...) in the router's error shape.
_ERROR_TEMPLATE = '{"error": {"type": "$context.error.responseType", "message": $context.error.messageString}}'


class JobsApi(Construct):
    """Creates ``api``: a regional REST API whose every method requires an API key and proxies to ``handler``
    (but the web console's page and assets, ``GET /console``, which a browser loads without one).

    Also: a JSON access log (``log_group``, with the caller's API key id), stage throttling
    (``rate_limit``/``burst_limit``), ERROR-level execution logs (``execution_log_group``, same retention;
    request bodies are never logged), a request validator,
    JSON error bodies for API Gateway's own 4xx/5xx, a ``usage_plan`` with the same throttle and a first
    tenant's ``api_key``. More tenants: more keys in the usage plan (docs/deploy.md, "More tenants"). More routes:
    :meth:`add_route`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, handler: lambda_.IFunction, stage_name: str,
                 rate_limit: int, burst_limit: int, log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        self._handler = handler
        self.log_group = logs.LogGroup(self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.api = apigw.RestApi(
            self, "RestApi",
            description="Hybrid AI job pipeline",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # API Gateway writes no log without an account-level role. It is a per-region setting shared with
            # every other API of the account, so the role outlives this stack rather than break their logging.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                access_log_destination=apigw.LogGroupLogDestination(self.log_group),
                access_log_format=apigw.AccessLogFormat.custom(_ACCESS_LOG_FORMAT),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
                # The console's routes take no key, so no usage plan bounds them: their own small throttle keeps
                # anonymous requests from spending the stage's throttle and the router's concurrency.
                method_options={f"{path}/{method}": apigw.MethodDeploymentOptions(
                    throttling_rate_limit=CONSOLE_RATE_LIMIT, throttling_burst_limit=CONSOLE_BURST_LIMIT)
                    for method, path in CONSOLE_ROUTES},
            ),
            default_method_options=apigw.MethodOptions(api_key_required=True),
        )
        self.api.node.try_remove_child("Endpoint")  # the service stack outputs the URL as ApiUrl
        # API Gateway would create its execution-log group on the first error, kept forever; own it instead.
        self.execution_log_group = logs.LogGroup(
            self, "ExecutionLogs", log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{stage_name}",
            retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.api.deployment_stage.node.add_dependency(self.execution_log_group)
        self._validator = self.api.add_request_validator(
            "Validator", validate_request_parameters=True, validate_request_body=True)
        for response_id, response_type in (("Default4xx", apigw.ResponseType.DEFAULT_4_XX),
                                           ("Default5xx", apigw.ResponseType.DEFAULT_5_XX)):
            self.api.add_gateway_response(response_id, type=response_type,
                                          templates={"application/json": _ERROR_TEMPLATE})
        self._integration = apigw.LambdaIntegration(handler, allow_test_invoke=False)
        for method, path in ROUTES:
            self.add_route(method, path)
        # The web console's page and assets: a browser loads them without a key; each call the page makes
        # then sends the visitor's key to the routes above.
        for method, path in CONSOLE_ROUTES:
            self.api.root.resource_for_path(path).add_method(method, self._integration, api_key_required=False)

        self.usage_plan = self.api.add_usage_plan(
            "UsagePlan",
            description="Throttle per API key (tenant).",
            throttle=apigw.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
        )
        self.api_key = self.api.add_api_key("FirstTenantKey", description="The first tenant's key.")
        self.usage_plan.add_api_key(self.api_key)

        acknowledge(self.api, "AwsSolutions-APIG4",
                    "Every method requires an API key bound to a usage plan; the key id is the tenant id the "
                    "router scopes every job to (docs/deploy.md: why API keys rather than an authorizer). The web "
                    "console's static page and assets (GET /console) are public and hold no data.")
        acknowledge(self.api, "AwsSolutions-COG4",
                    "Callers are services holding an API key, not end users signing in, so there is no Cognito "
                    "user pool; see docs/deploy.md's authentication choice.")
        acknowledge(self.api, "AwsSolutions-APIG3",
                    "WAF costs about $5/month plus $1 per rule even when idle; API keys, the usage plan and stage "
                    "throttling bound abuse. Attach a web ACL to the stage where the traffic calls for it.")
        acknowledge(self.api, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                              "AmazonAPIGatewayPushToCloudWatchLogs]",
                    "AmazonAPIGatewayPushToCloudWatchLogs is the AWS-managed policy for API Gateway's account-level "
                    "logging role; it only allows writing CloudWatch Logs.")

    def add_route(self, method: str, path: str) -> apigw.Method:
        """Adds ``method path`` (e.g. ``GET /v1/jobs``) to the router, requiring an API key like every route."""
        resource = self.api.root.resource_for_path(path)
        return resource.add_method(method, self._integration, request_validator=self._validator)
