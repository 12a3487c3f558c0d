"""The API description (router/openapi.py): the committed docs/openapi.json is what the code generates, a
valid OpenAPI 3.1 document, with every route, every error status the handler maps and every task's input;
the router serves it at GET /v1/openapi.json. (The end-to-end fuzzing against it: tests/e2e/test_openapi_fuzz.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from jobcore import errors
from jobcore.tasks import CATALOGUE
from router import openapi
from router.handler import STATUS_BY_ERROR
from router.routes import ROUTES
from tests.adapters.test_base_path import deployed
from tests.adapters.test_router_handler import Api, api, router_env  # noqa: F401  (fixtures)
from tests.bodies import LONG, SHORT

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.document()


def test_the_committed_document_is_the_generated_one():
    assert COMMITTED.read_text(encoding="utf-8") == openapi.render(), \
        "docs/openapi.json is stale: regenerate it with `make openapi`"


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


def test_the_router_serves_the_committed_document(api: Api):  # noqa: F811 - the imported fixture
    reply = api.call("GET", "/v1/openapi.json")

    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    assert reply.body == json.loads(COMMITTED.read_text(encoding="utf-8"))


def test_on_a_stage_the_served_document_names_its_base_path_as_the_server(api: Api):  # noqa: F811 - the imported fixture
    reply = api.send(deployed("GET", "/v1/openapi.json"))

    assert reply.status == 200 and reply.body["servers"] == [{"url": "/dev"}]
    assert {k: v for k, v in reply.body.items() if k != "servers"} == json.loads(COMMITTED.read_text(encoding="utf-8"))


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
