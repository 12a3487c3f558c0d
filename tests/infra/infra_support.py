"""Helpers for the template tests: build the app like app.py does, and read IAM out of templates."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

from stacks.config import PipelineConfig
from stacks.constructs.runtime_env import PLATFORM_ENV
from stacks.data_stack import DataStack
from stacks.names import construct_id
from stacks.pipeline import add_pipeline
from stacks.service_stack import ServiceStack

REPO = Path(__file__).resolve().parents[2]
CDK_JSON = json.loads((REPO / "cdk.json").read_text())
NO_BUNDLING = {"aws:cdk:bundling-stacks": []}
# The region the CDK CLI hands app.py as CDK_DEFAULT_REGION when none is configured (its own default).
CLI_REGION = "us-east-1"
# The region the GPU builds deploy to: stacks/gpu_ami_releases.json lists the default release there only (verified),
# and stacks/gpu_instance_regions.json says it offers g5.xlarge.
GPU_REGION = "ap-northeast-1"

# The GPU build also turns on the options that are off by default, so each is synthesized at least once.
GPU_OVERRIDES = {
    "gpu_enabled": "true",  # a string, as `cdk deploy -c gpu_enabled=true` passes it
    "alarm_email": "ops@example.com",
    "router_reserved_concurrency": 50,
    "collector_reserved_concurrency": 1,
    "webhook_max_concurrency": 20,
    "intake_max_concurrency": "10",
    "worker_on_demand_base": 1,
    "worker_on_demand_weight": 1,
    "worker_spot_fallback_after_s": 600,
    "embedding_model_s3_uri": "s3://my-models/minilm/",
    "worker_min_tasks": 1,
    "task_rates_per_min": '{"documents.summarize": 30}',
    "price_overrides": {"fargate": {"spot_discount": 0.6}},
    "traces_endpoint": "xray",  # the Region's X-Ray OTLP endpoint: xray:PutTraceSegments on every role that exports
}


@dataclass
class Synth:
    app: cdk.App
    config: PipelineConfig
    data: DataStack
    service: ServiceStack
    data_template: Template
    service_template: Template

    @property
    def service_json(self) -> dict[str, Any]:
        return self.service_template.to_json()

    @property
    def data_json(self) -> dict[str, Any]:
        return self.data_template.to_json()

    @functools.cached_property
    def code_root(self) -> Path:
        """A directory holding the files the service stack generates into its Lambda code (the lane document), as
        the deployed functions find them at their code's root (``LANES_FILE``)."""
        root = Path(tempfile.mkdtemp(prefix="code-"))
        for name, text in self.service.code_files.items():
            (root / name).write_text(text, encoding="utf-8")
        return root


def context(**overrides: Any) -> dict[str, Any]:
    return {**CDK_JSON["context"], **NO_BUNDLING, **overrides}


def build(app: cdk.App, *, default_region: str | None = CLI_REGION,
          env: cdk.Environment | None = None) -> tuple[PipelineConfig, DataStack, ServiceStack]:
    """What app.py does under the CDK CLI: read the config once from the context, add the stacks (with the
    CLI's default region, as app.py passes CDK_DEFAULT_REGION)."""
    config = PipelineConfig.from_app(app)
    data, service = add_pipeline(app, config, default_region=default_region, env=env)
    return config, data, service


def synth(*, default_region: str | None = CLI_REGION, env: cdk.Environment | None = None, **overrides: Any) -> Synth:
    ctx = context(**overrides)
    app = cdk.App(context=ctx)
    config, data, service = build(app, default_region=default_region, env=env)
    return Synth(app, config, data, service, Template.from_stack(data), Template.from_stack(service))


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def one(template: dict[str, Any], resource_type: str, prefix: str = "") -> tuple[str, dict[str, Any]]:
    found = [(k, v) for k, v in resources(template, resource_type).items() if k.startswith(prefix)]
    assert len(found) == 1, f"expected one {resource_type} starting with {prefix!r}, found {[k for k, _ in found]}"
    return found[0]


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def inline_statements(template: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of the AWS::IAM::Policy resources attached to the role."""
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"].get("Roles", []):
            statements += _listify(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def managed_policy_statements(data_template: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of the data stack's job-data policy."""
    _, policy = one(data_template, "AWS::IAM::ManagedPolicy", "StorageJobDataAccess")
    return _listify(policy["Properties"]["PolicyDocument"]["Statement"])


def attached_managed_policies(template: dict[str, Any], role_logical_id: str) -> list[Any]:
    return template["Resources"][role_logical_id]["Properties"].get("ManagedPolicyArns", [])


def actions(statements: list[dict[str, Any]]) -> set[str]:
    return {action for s in statements if s["Effect"] == "Allow" for action in _listify(s["Action"])}


def statements_on(statements: list[dict[str, Any]], resource: Any) -> Iterator[dict[str, Any]]:
    return (s for s in statements if resource in _listify(s["Resource"]))


def is_job_data_policy(arn: Any) -> bool:
    """A reference to the data stack's job-data managed policy (a weak cross-stack reference)."""
    return "StorageJobDataAccess" in json.dumps(arn)


def env_names(environment: list[dict[str, Any]] | dict[str, Any]) -> set[str]:
    if isinstance(environment, dict):
        return set(environment)
    return {entry["Name"] for entry in environment}


def variables(environment: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
    """A Lambda function's ``Variables`` or an ECS container's ``Environment`` as one name -> value dict."""
    if isinstance(environment, dict):
        return dict(environment)
    return {entry["Name"]: entry["Value"] for entry in environment}


def router_variables(app: Synth) -> dict[str, Any]:
    _, function = one(app.service_json, "AWS::Lambda::Function", "RouterFunction")
    return variables(function["Properties"]["Environment"]["Variables"])


def dispatcher_variables(app: Synth, function: str) -> dict[str, Any]:
    """The environment of the webhook dispatcher's ``Dispatcher`` or ``Sweep`` function."""
    _, found = one(app.service_json, "AWS::Lambda::Function", f"Webhooks{function}Function")
    return variables(found["Properties"]["Environment"]["Variables"])


def sweeper_variables(app: Synth) -> dict[str, Any]:
    """The environment of the job sweeper's function."""
    _, found = one(app.service_json, "AWS::Lambda::Function", "SweeperFunction")
    return variables(found["Properties"]["Environment"]["Variables"])


def logical_id(app: Synth, *path: str) -> str:
    """The service stack's logical id of the CloudFormation resource at ``path`` (construct ids) below it: found
    from the construct tree, not from a copy of the id (the pinned ids are test_logical_ids.py's alone)."""
    node = app.service.node
    for part in path:
        node = node.find_child(part).node
    return app.service.get_logical_id(node.default_child)


def lane_queue_id(app: Synth, lane: str) -> str:
    return logical_id(app, f"{construct_id(lane)}Lane", "Queue")


def lane_dlq_id(app: Synth, lane: str) -> str:
    return logical_id(app, f"{construct_id(lane)}Lane", "DeadLetterQueue")


def worker_resource_id(app: Synth, lane: str, *path: str) -> str:
    """A resource of ``lane``'s WorkerService, e.g. ``worker_resource_id(app, lane, "Service")``."""
    return logical_id(app, f"{construct_id(lane)}Worker", *path)


def worker_variables(app: Synth, lane: str) -> dict[str, Any]:
    _, definition = one(app.service_json, "AWS::ECS::TaskDefinition", f"{construct_id(lane)}WorkerTaskDefinition")
    (container,) = definition["Properties"]["ContainerDefinitions"]
    return variables(container["Environment"])


def placeholder(value: Any) -> str:
    """What a CloudFormation value stands for at deploy time, as a string the runtime can parse: a plain
    string as is, ``{"Ref": X}`` as ``ref:X``, another intrinsic as ``<intrinsic>:<its JSON>``, and an
    ``Fn::Join`` as its parts joined (so a JSON object with references inside stays a JSON object)."""
    if isinstance(value, str):
        return value
    assert isinstance(value, dict) and len(value) == 1, f"not a CloudFormation value: {value!r}"
    ((intrinsic, argument),) = value.items()
    if intrinsic == "Ref":
        return f"ref:{argument}"
    if intrinsic == "Fn::Join":
        separator, parts = argument
        return separator.join(placeholder(part) for part in parts)
    return f"{intrinsic}:{json.dumps(argument, sort_keys=True)}"


def deployed_environment(environment: dict[str, Any], app: Synth | None = None) -> dict[str, str]:
    """A synthesized environment with every intrinsic replaced by its :func:`placeholder`; a ``LANES_FILE`` (a
    Lambda's) made to name the file in ``app``'s :attr:`Synth.code_root`."""
    # What Lambda and ECS add themselves (AWS_REGION), then the environment the stack sets.
    deployed = {**PLATFORM_ENV, **{name: placeholder(value) for name, value in environment.items()}}
    if "LANES_FILE" in deployed:
        assert app is not None, "a Lambda's environment names a file of its code: give the app it was synthesized in"
        deployed["LANES_FILE"] = str(app.code_root / deployed["LANES_FILE"])
    return deployed
