"""The API description (router/openapi.py): the committed docs/openapi.json is what the code generates, a
valid OpenAPI 3.1 document, with every route, every error status the handler maps and every task's input;
the router serves it at GET /v1/openapi.json. (The end-to-end fuzzing against it: tests/e2e/test_openapi_fuzz.py.)"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from jobcore import errors, webhooks
from jobcore.model import JobStatus
from jobcore.tasks import CATALOGUE
from jobcore.views import deliveries_view, job_view
from local import serve
from router import openapi
from router.error_status import STATUS_BY_ERROR
from router.routes import ROUTES
from stacks.config import PipelineConfig
from tests.adapters.test_base_path import deployed
from tests.adapters.test_router_handler import Api, api, router_env  # noqa: F401  (fixtures)
from tests.bodies import LONG, SHORT
from tests.contract.test_ports import NOW_MS, every_field_job

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.document()


def test_the_committed_document_is_the_generated_one():
    assert COMMITTED.read_text(encoding="utf-8") == openapi.render(), \
        "docs/openapi.json is stale: regenerate it with `make openapi`"


def test_the_servers_are_the_local_runtime_s_default_and_a_deployed_stage(document):
    local, deployed = document["servers"]

    assert local["url"] == f"http://127.0.0.1:{serve.API_PORT}"
    assert deployed["url"].format(apiId="a1", region="eu-west-1", stage="prod") == "https://a1.execute-api.eu-west-1.amazonaws.com/prod"
    assert deployed["variables"]["stage"]["default"] == PipelineConfig().stage


def test_the_document_is_valid_openapi_3_1(document):
    OpenAPIV31SpecValidator(document).validate()
    assert document["openapi"] == "3.1.0"


def test_every_route_is_an_operation_and_every_operation_a_route(document):
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert documented == set(ROUTES)
    assert len({op["operationId"] for item in document["paths"].values() for op in item.values()}) == len(ROUTES)


def test_every_status_the_handler_maps_an_error_to_is_documented_with_its_error_types(document):
    answered: dict[str, set[str]] = {}
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                schema = response["content"]["application/json"]["schema"]
                if "allOf" in schema:
                    answered.setdefault(status, set()).update(schema["allOf"][1]["properties"]["error"]["properties"]["type"]["enum"])
    for kind, status in STATUS_BY_ERROR:
        assert kind.type in answered[str(status)], (kind, status)
    assert errors.IdempotencyMismatchError.type in answered["422"]  # a subclass keeps its parent's status
    assert errors.NoDeliveryError.type in answered["409"]


def test_a_queued_submit_documents_location_and_a_503_retry_after(document):
    submit = document["paths"]["/v1/jobs"]["post"]
    assert submit["responses"]["202"]["headers"]["Location"] == {"$ref": "#/components/headers/LocationRequired"}
    assert set(submit["responses"]["503"]["headers"]) == {"Retry-After", "Location"}
    assert {"$ref": "#/components/parameters/Idempotency-Key"} in submit["parameters"]


def validator(document: dict[str, Any], name: str) -> jsonschema.protocols.Validator:
    """A JSON Schema validator of components.schemas[name], its references resolved in ``document``."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("body", [SHORT, LONG, {**LONG, "mode": "batch", "metadata": {"k": "v"}},
                                  {"task": "invoice.extract", "input_upload": "upl_" + "0" * 32},
                                  {"task": "embeddings.encode", "input": {"texts": ["a"], "format": "jsonl"}}])
def test_bodies_the_api_takes_are_valid_submit_requests(document, body):
    validator(document, "SubmitRequest").validate(body)
    if "input" in body:
        CATALOGUE[body["task"]].validate(body["input"])  # and the task agrees


@pytest.mark.parametrize("body", [
    {"task": "claude.messages"},  # neither input nor input_upload
    {**SHORT, "input_upload": "upl_" + "0" * 32},  # both
    {**SHORT, "input": {**SHORT["input"], "temperature": 0.5}},  # refused by the task
    {"task": "invoice.extract", "input": {"text": "x", "extra": 1}},
    {"task": "nope", "input": {}},
    {**LONG, "mode": "later"},
])
def test_bodies_the_api_refuses_are_not_valid_submit_requests(document, body):
    assert not validator(document, "SubmitRequest").is_valid(body)


def test_the_request_examples_are_valid_and_the_api_takes_them(document):
    for item in document["paths"].values():
        for operation in item.values():
            media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            name = media.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
            for example in media.get("examples", {}).values():
                validator(document, name).validate(example["value"])
                if "input" in example["value"]:
                    CATALOGUE[example["value"]["task"]].validate(example["value"]["input"])


def test_each_task_s_input_schema_is_a_valid_json_schema_and_in_the_document(document):
    for name, task in CATALOGUE.items():
        jsonschema.Draft202012Validator.check_schema(task.input_schema)
        assert f"Input_{name.replace('.', '_')}" in document["components"]["schemas"]


def response_validator(document: dict[str, Any], method: str, path: str, status: int) -> jsonschema.protocols.Validator:
    """The documented body of ``method path``'s answer ``status`` (KeyError if that status is undocumented)."""
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    schema = {**response["content"]["application/json"]["schema"], "components": document["components"]}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("status", list(JobStatus))
def test_the_views_of_a_job_with_every_field_set_match_the_document(document, status):
    """every_field_job sets every field of Job (its own test guards that), so a field a view starts to show
    is either described here or fails this test."""
    job = dataclasses.replace(every_field_job(), status=status)
    url_for = "https://bucket.example/{}".format
    for view in (job_view(job, result={"answer": 1}, url_for=url_for, now_ms=NOW_MS),
                 job_view(job, url_for=url_for, result_gone=True)):
        response_validator(document, "GET", "/v1/jobs/{id}", 200).validate(view)
    response_validator(document, "GET", "/v1/jobs/{id}/deliveries", 200).validate(deliveries_view(job))


@pytest.mark.parametrize("status", [status for status in JobStatus if status.terminal])
def test_a_webhook_event_matches_the_document(document, status):
    job = dataclasses.replace(every_field_job(), status=status)
    view = {k: v for k, v in job_view(job, result={"answer": 1}).items() if k != "result_url"}
    event = webhooks.payload(view, job, timestamp_ms=NOW_MS)

    schema = {**document["webhooks"]["jobFinished"]["post"]["requestBody"]["content"]["application/json"]["schema"],
              "components": document["components"]}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(event)
    assert event["timestamp"].endswith("Z") and not jsonschema.Draft202012Validator(schema).is_valid(
        {**event, "timestamp": NOW_MS})


def test_the_router_s_answers_match_the_document(api: Api, document):  # noqa: F811 - the imported fixture
    def check(method: str, path: str, template: str, body: Any = None, *, raw: str | None = None) -> Any:
        reply = api.call(method, path, body, raw=raw)
        response_validator(document, method, template, reply.status).validate(reply.body)
        documented = document["paths"][template][method.lower()]["responses"][str(reply.status)].get("headers", {})
        for name, header in documented.items():
            if header["$ref"].endswith("Required"):
                assert name in reply.headers, (method, path, reply.status, name)
        return reply

    assert check("POST", "/v1/jobs", "/v1/jobs", SHORT).status == 200
    queued = check("POST", "/v1/jobs", "/v1/jobs", LONG)
    assert queued.status == 202
    job = f"/v1/jobs/{queued.body['id']}"
    check("GET", job, "/v1/jobs/{id}")
    check("GET", "/v1/jobs?status=queued&limit=1", "/v1/jobs")
    assert check("GET", "/v1/jobs?status=nope", "/v1/jobs").status == 422
    assert check("POST", job + "/cancel", "/v1/jobs/{id}/cancel").status == 200
    assert check("POST", job + "/cancel", "/v1/jobs/{id}/cancel").status == 409
    check("GET", job + "/deliveries", "/v1/jobs/{id}/deliveries")
    assert check("POST", job + "/deliveries", "/v1/jobs/{id}/deliveries").status == 409
    assert check("GET", "/v1/jobs/job_missing", "/v1/jobs/{id}").status == 404
    check("GET", "/v1/tasks", "/v1/tasks")
    assert check("POST", "/v1/uploads", "/v1/uploads", {"content_type": "text/plain", "size": 10}).status == 201
    assert check("POST", "/v1/jobs", "/v1/jobs", {"task": "nope", "input": {}}).status == 422
    assert check("POST", "/v1/jobs", "/v1/jobs", raw="{not json").status == 400


def test_the_router_serves_the_committed_document(api: Api):  # noqa: F811 - the imported fixture
    reply = api.call("GET", "/v1/openapi.json")

    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    assert reply.body == json.loads(COMMITTED.read_text(encoding="utf-8"))


def test_on_a_stage_the_served_document_names_its_base_path_as_the_server(api: Api):  # noqa: F811 - the imported fixture
    reply = api.send(deployed("GET", "/v1/openapi.json"))

    assert reply.status == 200 and reply.body["servers"] == [{"url": "/dev"}]
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert {**reply.body, "servers": committed["servers"]} == committed


def test_like_every_route_it_needs_an_identified_caller(api: Api):  # noqa: F811 - the imported fixture
    event = deployed("GET", "/v1/openapi.json")
    event["requestContext"]["identity"]["apiKeyId"] = None

    reply = api.send(event)

    assert reply.status == 401 and reply.body["error"]["type"] == "unauthenticated"


def test_the_router_imports_the_generator_only_when_the_document_is_asked_for():
    probe = "import sys, router.handler; assert 'router.openapi' not in sys.modules, 'imported at start'"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."])}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
