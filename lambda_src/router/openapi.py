"""The API's OpenAPI 3.1 description, built from the code so that it cannot drift from it.

- The paths are :data:`router.routes.ROUTES` (what API Gateway and the local gateway expose), each with
  an entry in :data:`OPERATIONS`; a route without one fails the build of the document.
- Each error status and its ``error.type`` values come from :data:`router.error_status.STATUS_BY_ERROR` and the
  :mod:`jobcore.errors` classes an operation raises (their subclasses included), plus what API Gateway
  itself answers (:data:`GATEWAY_ERRORS`, its response types in the same ``{"error": ...}`` shape).
- The request bodies and query parameters take their bounds from :mod:`jobcore.limits`,
  :mod:`jobcore.requests` and :mod:`jobcore.uploads`; a job's ``input`` is each task's
  ``input_schema`` (:mod:`jobcore.tasks`), one variant per task.
- The views (:mod:`jobcore.views`) are described by hand below; the end-to-end tests check real answers
  against them (Schemathesis, ``tests/e2e/test_openapi_fuzz.py``), with no undescribed field allowed.

``python -m router.openapi > docs/openapi.json`` (``make openapi``) regenerates the committed copy; the
router serves the same document at ``GET /v1/openapi.json``. Pure: nothing here touches AWS.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterable
from typing import Any

from jobcore import errors, idempotency, requests, uploads, usage
from jobcore.deliveries import DeliveryState
from jobcore.limits import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    MAX_REQUEST_EVENT_BYTES,
    MAX_UPLOAD_BYTES,
    MAX_WEBHOOK_URL_CHARS,
    MIB,
    SQS_MAX_RETENTION_S,
)
from jobcore.model import JobStatus, Mode
from jobcore.tasks import CATALOGUE, TaskSpec
from jobcore.webhooks import COMPLETED, EVENT_TYPES
from router.error_status import STATUS_BY_ERROR
from router.routes import ROUTES

VERSION = "1.0.0"
# Where a generated client points when told nothing: `make serve`'s local runtime (local.serve's default
# port; a test holds them equal), else a deployed stage, its URL templated as the stack's ApiUrl output is.
LOCAL_SERVER_URL = "http://127.0.0.1:8080"
SERVERS: list[dict[str, Any]] = [
    {"url": LOCAL_SERVER_URL, "description": "The local runtime (make serve), API key local-dev-key"},
    {"url": "https://{apiId}.execute-api.{region}.amazonaws.com/{stage}",
     "description": "A deployed stage: the ServiceStack's ApiUrl output",
     "variables": {
         "apiId": {"default": "abcdef1234", "description": "The REST API's id (the first label of ApiUrl)"},
         "region": {"default": "us-east-1", "description": "The AWS Region the stacks are deployed in"},
         "stage": {"default": "dev", "description": "The stage (cdk.json's stage)"},
     }},
]
ERROR = "#/components/schemas/Error"

# API Gateway's own answers (its gateway responses, rendered by the API construct in the router's error
# shape with its response type as ``error.type``), by status; the local gateway answers the same.
GATEWAY_ERRORS: dict[int, tuple[str, ...]] = {
    403: ("INVALID_API_KEY",),  # no key, or not a key of the usage plan
    413: ("REQUEST_TOO_LARGE",),
    429: ("THROTTLED", "QUOTA_EXCEEDED"),
    502: ("DEFAULT_5XX",),
    504: ("INTEGRATION_TIMEOUT", "INTEGRATION_FAILURE"),
}
# What every operation can raise: a malformed request (a path or Content-Length the gateway cannot read), no
# identified caller, a request event over Lambda's limit, and a deployment or store that cannot serve (503,
# with Retry-After when it is worth retrying soon).
COMMON_ERRORS: tuple[type[errors.JobError], ...] = (
    errors.BadRequestError, errors.UnauthenticatedError, errors.PayloadTooLargeError, errors.MisconfiguredError,
    errors.StoreUnavailableError,
)
_BODY_ERRORS: tuple[type[errors.JobError], ...] = (errors.InvalidInputError,)
_JOB_ERRORS: tuple[type[errors.JobError], ...] = (errors.JobNotFoundError,)

# One entry per route: its id, summary, success answers (status → (description, schema, headers)),
# the request body's schema, its query parameters, and the domain errors it raises besides COMMON_ERRORS.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/jobs"): {
        "operationId": "submitJob", "summary": "Submit a job",
        "description": ("Runs it inline (200, the finished job) or queues it (202, Location: the job). With an "
                        "Idempotency-Key, a retry within 24 h returns the original job with its original status "
                        "code. A webhook URL must be public https (the local runtime also takes http on 127.0.0.1); "
                        "any other is refused with 422 naming webhook.url."),
        "body": "SubmitRequest",
        "examples": {
            "inline": ("A short Claude call: runs inline, 200", {
                "task": "claude.messages",
                "input": {"max_tokens": 60, "messages": [{"role": "user", "content": "Name one AWS region."}]}}),
            "queued": ("Documents to summarize, with a webhook: queued, 202", {
                "task": "documents.summarize", "input": {"documents": [{"id": "a", "text": "First document."},
                                                                      {"id": "b", "text": "Second document."}]},
                "webhook": {"url": "https://example.com/hooks/jobs", "events": ["completed"]},
                "metadata": {"customer": "c-42"}}),
            "invoice": ("An invoice to extract", {
                "task": "invoice.extract", "input": {"text": "ACME Corp. Invoice 17, 2026-11-01. 2 x widget @ 5.00 USD"}}),
        },
        "headers": ["Idempotency-Key"],
        "ok": {200: ("The job ran inline: finished, with its result", "Job", {}),
               202: ("The job is queued; poll Location or wait for the webhook", "Job", {"Location": True})},
        "errors": (*_BODY_ERRORS, errors.UnknownTaskError, errors.UnroutableError, errors.IdempotencyInProgressError,
                   errors.ConflictError, errors.EnqueueError, errors.SyncUnavailableError, errors.BudgetExceededError),
    },
    ("GET", "/v1/jobs"): {
        "operationId": "listJobs", "summary": "The caller's jobs, newest first",
        "query": "list",
        "ok": {200: ("A page of jobs and the cursor of the next (null at the end)", "JobPage", {})},
        "errors": (errors.InvalidInputError,),
    },
    ("GET", "/v1/jobs/{id}"): {
        "operationId": "getJob", "summary": "A job: status, route and reason, result or result_url, usage, cost",
        "query": "wait",
        "ok": {200: ("The job (after at most ?wait seconds, sooner if it finishes)", "Job", {})},
        "errors": (*_JOB_ERRORS, errors.InvalidInputError),
    },
    ("POST", "/v1/jobs/{id}/cancel"): {
        "operationId": "cancelJob", "summary": "Cancel a job",
        "ok": {200: ("The job is canceled (it had not started)", "Job", {}),
               202: ("The job is canceling: its worker stops it", "Job", {})},
        "errors": (*_JOB_ERRORS, errors.JobFinishedError, errors.ConflictError),
    },
    ("GET", "/v1/jobs/{id}/deliveries"): {
        "operationId": "getDeliveries", "summary": "The job's webhook delivery log",
        "ok": {200: ("Every attempt of the job's webhook event, and what comes next", "Deliveries", {})},
        "errors": _JOB_ERRORS,
    },
    ("POST", "/v1/jobs/{id}/deliveries"): {
        "operationId": "redeliver", "summary": "Send the job's terminal webhook event again",
        "ok": {202: ("A new series of attempts of the same event", "Deliveries", {})},
        "errors": (*_JOB_ERRORS, errors.NoDeliveryError, errors.ConflictError),
    },
    ("GET", "/v1/usage"): {
        "operationId": "getUsage", "summary": "The caller's usage by day, task or lane, and its monthly budget",
        "description": ("From counters each job adds when it finishes (no scan): jobs by outcome, tokens, model calls, "
                        "compute seconds and cost, over at most 92 days (UTC); by default this month so far, by day."),
        "query": "usage",
        "ok": {200: ("The caller's usage", "Usage", {})},
        "errors": (errors.InvalidInputError,),
    },
    ("GET", "/v1/tasks"): {
        "operationId": "listTasks", "summary": "The task catalogue: each task's profile and where it would run",
        "ok": {200: ("The tasks", "TaskList", {})},
        "errors": (),
    },
    ("GET", "/v1/capacity"): {
        "operationId": "getCapacity", "summary": "The model's budgets, their use, and your jobs waiting for them",
        "description": "Every Claude call waits for a grant from its model family's budget (docs/capacity.md); "
                       "only your own share and your own waiting jobs are shown.",
        "ok": {200: ("The budgets", "Capacity", {})},
        "errors": (),
    },
    ("POST", "/v1/uploads"): {
        "operationId": "createUpload", "summary": "A presigned PUT for a large input",
        "description": "A job then names the upload with input_upload instead of carrying its input.",
        "body": "UploadRequest",
        "examples": {"text": ("A 50 MB text input", {"content_type": "text/plain", "size": 50 * MIB})},
        "ok": {201: ("PUT the input to url with these headers before expires_at", "Upload", {})},
        "errors": _BODY_ERRORS,
    },
    ("GET", "/v1/openapi.json"): {
        "operationId": "getOpenApi", "summary": "This document",
        "ok": {200: ("The API's OpenAPI 3.1 description", "OpenApiDocument", {})},
        "errors": (),
    },
}


@functools.cache
def document() -> dict[str, Any]:
    """The API's OpenAPI 3.1 document."""
    missing = [route for route in ROUTES if route not in OPERATIONS]
    extra = [route for route in OPERATIONS if route not in ROUTES]
    if missing or extra:
        raise ValueError(f"routes without an operation: {missing}; operations without a route: {extra}")
    schemas = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for method, path in ROUTES:
        paths.setdefault(path, {})[method.lower()] = _operation(path, OPERATIONS[(method, path)])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hybrid AI job pipeline",
            "version": VERSION,
            "description": ("Jobs that call Claude (or compute), run inline, on queued workers, on the batch lane or "
                            "on a GPU, behind one API. Every route needs an API key (x-api-key), which names the "
                            "caller's tenant. An optional field sent as null is read as not sent. Paths are "
                            "relative to where the API is mounted (the stage, /dev, on an execute-api URL). "
                            "Generated from the code (router/openapi.py)."),
        },
        "servers": SERVERS,
        "security": [{"apiKey": []}],
        "paths": paths,
        "webhooks": {"jobFinished": _webhook()},
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                                           "description": "The tenant's API Gateway API key"}},
            "headers": _headers(),
            "parameters": _parameters(),
            "schemas": schemas,
        },
    }


def _webhook() -> dict[str, Any]:
    """What the pipeline POSTs to a job's webhook URL (jobcore.webhooks, signed in jobadapters.webhook_sender)."""
    header = {"required": True, "schema": {"type": "string"}}
    return {"post": {
        "summary": "A job reached a terminal state that its webhook asked for",
        "description": ("Signed per Standard Webhooks; the same body bytes on every attempt and redelivery (GET the job "
                        "for a fresh result_url). A 2xx is delivered; 410 stops the retries; anything else is retried "
                        "on the delivery schedule (about a day), a Retry-After pushing the next attempt out."),
        "security": [],
        "parameters": [
            {"name": "webhook-id", "in": "header", **header,
             "description": "The event's id, the same on every attempt: the receiver's dedupe key"},
            {"name": "webhook-timestamp", "in": "header", **header,
             "description": "This attempt's time, integer Unix seconds (signed: reject one too far from now)"},
            {"name": "webhook-signature", "in": "header", **header,
             "description": "v1,<base64 HMAC-SHA256 of id.timestamp.body>; absent where no signing key is set"},
        ],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/WebhookEvent"}}}},
        "responses": {"2XX": {"description": "Delivered"}, "410": {"description": "Gone: no more attempts"},
                      "default": {"description": "Not delivered: retried on the schedule"}},
    }}


# --- operations -------------------------------------------------------------------------------------


def _operation(path: str, spec: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": spec["operationId"], "summary": spec["summary"]}
    if "description" in spec:
        operation["description"] = spec["description"]
    parameters = [{"$ref": f"#/components/parameters/{name}"} for name in _path_parameters(path)]
    parameters += [{"$ref": f"#/components/parameters/{name}"} for name in spec.get("headers", ())]
    parameters += [{"$ref": f"#/components/parameters/{name}"} for name in _QUERY.get(spec.get("query", ""), ())]
    if parameters:
        operation["parameters"] = parameters
    if "body" in spec:
        media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{spec['body']}"}}
        if "examples" in spec:
            media["examples"] = {name: {"summary": summary, "value": value}
                                 for name, (summary, value) in spec["examples"].items()}
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    responses: dict[str, Any] = {}
    for status, (description, schema, headers) in spec["ok"].items():
        responses[str(status)] = _response(description, {"$ref": f"#/components/schemas/{schema}"}, headers)
        if schema == "Job" and spec["operationId"] == "submitJob":
            responses[str(status)]["links"] = _JOB_LINKS
    for status, types in sorted(error_types(spec["errors"]).items()):
        responses[str(status)] = _error_response(status, types)
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _path_parameters(path: str) -> list[str]:
    return ["JobId"] if "{id}" in path else []


# Where a submitted job's id leads (OpenAPI links: a client, or Schemathesis' stateful tests, follow them).
_JOB_LINKS = {
    name: {"operationId": operation_id, "parameters": {"id": "$response.body#/id"}}
    for name, operation_id in (("GetJob", "getJob"), ("CancelJob", "cancelJob"), ("GetDeliveries", "getDeliveries"),
                               ("Redeliver", "redeliver"))
}
_QUERY = {"list": ("status", "limit", "cursor", "source"), "wait": ("wait",), "usage": ("from", "to", "group_by")}


def error_types(raised: Iterable[type[errors.JobError]]) -> dict[int, list[str]]:
    """Each status an operation answers on failure, and the ``error.type`` values it then carries: the
    domain errors ``raised`` (and their subclasses) and COMMON_ERRORS through STATUS_BY_ERROR, 500
    ``internal_error``, and API Gateway's own :data:`GATEWAY_ERRORS`."""

    by_status: dict[int, set[str]] = {500: {errors.JobError.type}}
    for kind in (*COMMON_ERRORS, *raised):
        for error in _with_subclasses(kind):
            status = next((code for cls, code in STATUS_BY_ERROR if issubclass(error, cls)), 500)
            by_status.setdefault(status, set()).add(error.type)
    for status, types in GATEWAY_ERRORS.items():
        by_status.setdefault(status, set()).update(types)
    return {status: sorted(types) for status, types in by_status.items()}


def _with_subclasses(kind: type[errors.JobError]) -> list[type[errors.JobError]]:
    found = [kind]
    for sub in kind.__subclasses__():
        found += _with_subclasses(sub)
    return found


def _response(description: str, schema: dict[str, Any], headers: dict[str, bool]) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = {name: {"$ref": f"#/components/headers/{name}{'Required' if required else ''}"}
                               for name, required in headers.items()}
    return response


_STATUS_TEXT = {
    400: "The body is not UTF-8 JSON or nests too deep; or the request is malformed", 401: "No API key identified the caller",
    402: "The job's estimate exceeds its max_cost_usd or its tenant's budget left this month (error.figures)",
    403: "API Gateway refused the API key (missing or invalid)", 404: "No such job (or another tenant's)",
    409: "The job's state forbids it, or a request with this Idempotency-Key is still being answered",
    413: f"The request reaches the router as a Lambda event of more than {MAX_REQUEST_EVENT_BYTES // MIB} MB",
    422: "A field is wrong (error.field names it), the task is unknown, or no lane can run the job",
    429: "API Gateway throttled the API key", 500: "An internal error (the request id is in the logs)",
    502: "The router failed without answering", 503: "A queue, store or the model is unavailable, or the deployment "
                                                     "is misconfigured; retry after Retry-After when it is given",
    504: "The router did not answer within API Gateway's 29 s",
}


def _error_response(status: int, types: list[str]) -> dict[str, Any]:
    schema = {"allOf": [{"$ref": ERROR}, {"properties": {"error": {"properties": {"type": {"enum": types}}}}}]}
    headers = {"Retry-After": False, "Location": False} if status == 503 else {}
    return _response(_STATUS_TEXT[status], schema, headers)


def _headers() -> dict[str, Any]:
    location = {"description": "The job's path (absolute, with the API's base path)", "schema": {"type": "string"}}
    return {
        "Location": location,
        "LocationRequired": {**location, "required": True},
        "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    }


def _parameters() -> dict[str, Any]:
    return {
        "JobId": {"name": "id", "in": "path", "required": True, "description": "A job's id (anything else: 404)",
                  "schema": {"type": "string"}},
        "Idempotency-Key": {
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Makes a retried submit return the original job (per tenant, 24 h)",
            "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_CHARS,
                       "pattern": "^[\\x21-\\x7e]+$"},
        },
        "status": {"name": "status", "in": "query", "schema": {"enum": [s.value for s in JobStatus]},
                   "description": "Only the jobs in this status"},
        "limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": requests.MAX_PAGE,
                                                             "default": 20}},
        "cursor": {"name": "cursor", "in": "query", "schema": {"type": "string"},
                   "description": "The next_cursor of the previous page"},
        "source": {"name": "source", "in": "query", "description": "Only the jobs of this S3 intake object (empty: all)",
                   "schema": {"type": "string", "pattern": "^(s3://|$)", "maxLength": 1100}},
        "from": {"name": "from", "in": "query", "description": "First day, UTC (default: the 1st of this month)",
                 "schema": {"type": "string", "format": "date"}},
        "to": {"name": "to", "in": "query", "description": "Last day, UTC (default: today)",
               "schema": {"type": "string", "format": "date"}},
        "group_by": {"name": "group_by", "in": "query", "schema": {"enum": list(usage.GROUPS), "default": "day"}},
        "wait": {"name": "wait", "in": "query", "description": "Seconds to wait for the job to finish (long poll)",
                 "schema": {"type": "number", "minimum": 0, "maximum": requests.MAX_WAIT_S, "default": 0}},
    }


# --- schemas ------------------------------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": _error_schema(),
        "SubmitRequest": {"oneOf": [{"$ref": f"#/components/schemas/{_task_ref(name)}"} for name in CATALOGUE],
                          "discriminator": {"propertyName": "task", "mapping": {
                              name: f"#/components/schemas/{_task_ref(name)}" for name in CATALOGUE}}},
        "Hints": nullable_optionals({"type": "object", "additionalProperties": False, "properties": {
            "expected_duration_s": {"type": "number", "minimum": 0, "maximum": 7 * 24 * 3600},
            "memory_mb": {"type": "integer", "minimum": 128, "maximum": 1_048_576},
        }}),
        "Webhook": nullable_optionals({"type": "object", "additionalProperties": False, "required": ["url"], "properties": {
            "url": {"type": "string", "maxLength": MAX_WEBHOOK_URL_CHARS,
                    "description": "A public https URL (a private, loopback or link-local host is refused)"},
            "events": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": _event_names()},
                       "default": [COMPLETED]},
        }}),
        "Metadata": {"type": "object", "maxProperties": MAX_METADATA_KEYS,
                     "propertyNames": {"minLength": 1, "maxLength": MAX_METADATA_KEY_CHARS},
                     "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE_CHARS}},
        "UploadRequest": {"type": "object", "additionalProperties": False, "required": ["content_type", "size"],
                          "properties": {"content_type": {"enum": list(uploads.CONTENT_TYPES)},
                                         "size": {"type": "integer", "minimum": 1, "maximum": MAX_UPLOAD_BYTES}}},
        **_views(),
    }
    for name, task in CATALOGUE.items():
        schemas.update(_task_schemas(name, task))
    return schemas


def _event_names() -> list[str]:
    return [COMPLETED, *sorted(name.removeprefix("job.") for name in EVENT_TYPES), *sorted(EVENT_TYPES)]


def _task_ref(name: str) -> str:
    return "Submit_" + name.replace(".", "_")


def _task_schemas(name: str, task: TaskSpec) -> dict[str, Any]:
    """The submit request of one task (its ``input`` the task's input schema, whose ``$defs`` become
    components of their own: a ``#/$defs/...`` reference would resolve against this document's root)."""
    prefix = "Input_" + name.replace(".", "_")
    input_schema = dict(task.input_schema)
    defs = input_schema.pop("$defs", {})
    rewrite = {f"#/$defs/{key}": f"#/components/schemas/{prefix}_{key}" for key in defs}
    schemas: dict[str, Any] = {prefix: nullable_optionals(_rewrite_refs(input_schema, rewrite))}
    for key, value in defs.items():
        schemas[f"{prefix}_{key}"] = nullable_optionals(_rewrite_refs(value, rewrite))
    schemas[_task_ref(name)] = nullable_optionals({
        "type": "object", "additionalProperties": False, "required": ["task"],
        "description": f"{task.description} Send input, or input_upload (an upload's id), not both.",
        "oneOf": [{"required": ["input"]}, {"required": ["input_upload"]}],
        "properties": {
            "task": {"const": name},
            "input": {"$ref": f"#/components/schemas/{prefix}"},
            "input_upload": {"type": "string", "pattern": "^upl_[0-9a-f]{32}$",
                             "description": "An upload's id from POST /v1/uploads, in place of input"},
            "mode": {"enum": [mode.value for mode in Mode], "default": Mode.AUTO.value},
            "hints": {"$ref": "#/components/schemas/Hints"},
            "webhook": {"$ref": "#/components/schemas/Webhook"},
            "metadata": {"$ref": "#/components/schemas/Metadata"},
            "max_queue_s": {"type": "number", "minimum": 1, "maximum": SQS_MAX_RETENTION_S,
                            "description": "A job not started by then expires and never runs"},
            "max_cost_usd": {"type": "number", "minimum": requests.MAX_COST_USD_RANGE[0],
                             "maximum": requests.MAX_COST_USD_RANGE[1],
                             "description": "Refused (402) if the job's estimate is higher; its run stops before a model "
                                            "call whose ceiling (input + max_tokens), with what its earlier attempts spent, could "
                                            "pass it, and fails budget_exceeded"},
        },
    }, keep=("input", "input_upload"))
    return schemas


def nullable_optionals(schema: Any, *, keep: tuple[str, ...] = ()) -> Any:
    """``schema`` with every optional property of its objects (at any depth) also taking null: the API reads
    an optional field given as null as not given (:func:`jobcore.validation.get`). ``keep``: properties of
    the top object left as they are."""
    if isinstance(schema, list):
        return [nullable_optionals(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: nullable_optionals(value) if key in ("items", "oneOf", "anyOf", "allOf", "additionalProperties")
           else value for key, value in schema.items()}
    if isinstance(schema.get("properties"), dict):
        required = set(schema.get("required", ()))
        out["properties"] = {
            name: nullable_optionals(prop) if name in required or name in keep
            else {"anyOf": [nullable_optionals(prop), {"type": "null"}]}
            for name, prop in schema["properties"].items()
        }
    return out


def _rewrite_refs(node: Any, rewrite: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: rewrite.get(value, value) if key == "$ref" else _rewrite_refs(value, rewrite)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(item, rewrite) for item in node]
    return node


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object", "additionalProperties": False, "required": ["error"],
        "description": "Every error, the router's and API Gateway's own (its response type as error.type)",
        "properties": {"error": {
            "type": "object", "additionalProperties": False, "required": ["type", "message"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "Where the request is wrong: input.messages[0].content"},
                "status": {"enum": [s.value for s in JobStatus], "description": "job_finished: the job's status"},
                "job_id": {"type": "string", "description": "The job was recorded before the failure: poll it"},
                "links": {"type": "object", "additionalProperties": False, "required": ["job"],
                          "properties": {"job": {"type": "string"}}},
                "figures": {"type": "object", "additionalProperties": {"type": "number"},
                            "description": "budget_exceeded: the estimate, the cap or budget, what was spent (USD)"},
            },
        }},
    }


def _usage_schema() -> dict[str, Any]:
    number = {"type": "number", "minimum": 0}
    counts = {"type": "integer", "minimum": 0}
    row = {"type": "object", "required": ["jobs", "tokens", "model_calls", "compute_s", "cost_usd"], "properties": {
        "jobs": {"type": "object", "required": ["total"], "additionalProperties": counts,
                 "description": "Jobs by outcome (succeeded, failed, canceled, expired, timed_out) and in total"},
        "tokens": {"type": "object", "additionalProperties": False, "required": ["input", "output", "cache_read", "cache_write"],
                   "properties": {key: counts for key in ("input", "output", "cache_read", "cache_write")}},
        "model_calls": counts, "compute_s": number, "cost_usd": number,
        "day": {"type": "string", "format": "date"}, "task": {"type": "string"}, "lane": {"type": "string"}}}
    return {"type": "object", "additionalProperties": False, "required": ["from", "to", "group_by", "groups", "total"],
            "properties": {
                "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                "group_by": {"enum": list(usage.GROUPS)}, "groups": {"type": "array", "items": row}, "total": row,
                "budget": {"type": "object", "additionalProperties": False,
                           "required": ["monthly_usd", "month_spent_usd", "remaining_usd"],
                           "properties": {key: number for key in ("monthly_usd", "month_spent_usd", "remaining_usd")}}}}


_TIME = {"type": "string", "format": "date-time"}
_OBJECT = {"type": "object"}


def _views() -> dict[str, Any]:
    """The views of :mod:`jobcore.views` and the service (tasks, uploads), as the API answers them."""
    usage = {"type": "object", "additionalProperties": False, "required": [
        "input_tokens", "output_tokens", "model_calls", "cache_creation_input_tokens", "cache_read_input_tokens"],
        "properties": {key: {"type": "integer", "minimum": 0} for key in (
            "input_tokens", "output_tokens", "model_calls", "cache_creation_input_tokens", "cache_read_input_tokens",
            "cache_creation_1h_input_tokens")}}
    job = {
        "type": "object", "additionalProperties": False,
        "required": ["id", "task", "status", "route", "mode", "created_at", "attempts", "metadata", "usage", "links"],
        "properties": {
            "id": {"type": "string"},
            "task": {"type": "string"},
            "status": {"enum": [s.value for s in JobStatus]},
            "route": {"type": "object", "additionalProperties": False, "required": ["lane", "reason"],
                      "properties": {"lane": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]}}},
            "mode": {"enum": [mode.value for mode in Mode]},
            "created_at": _TIME, "started_at": _TIME, "finished_at": _TIME,
            "queue_deadline_at": {**_TIME, "description": "A queued job not started by then expires"},
            "waiting": {"type": "string",
                        "description": "Why a queued job waits: for the model or its budget, or for its message to be sent "
                                       "(its queue refused it)"},
            "capacity_wait_ms": {"type": "integer", "description": "How long it waited for the model's budget, in all"},
            "result_expires_at": _TIME,
            "attempts": {"type": "integer", "minimum": 0},
            "batch_id": {"type": "string"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "source": {"type": "string", "description": "The S3 intake object the job came from"},
            "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$",
                         "description": "The job's trace (OpenTelemetry), from its submit to its webhook"},
            "max_cost_usd": {"type": "number", "description": "The job's cost cap, as submitted"},
            "usage": usage,
            "cost": {**_OBJECT, "description": "What the job cost: compute and tokens, in USD"},
            "error": {"type": "object", "required": ["type", "message"],
                      "properties": {"type": {"type": "string"}, "message": {"type": "string"}}},
            "attempt_errors": {"type": "array", "items": _OBJECT},
            "links": {"type": "object", "additionalProperties": False, "required": ["self"],
                      "properties": {"self": {"type": "string"}}},
            "webhook": {"type": "object", "additionalProperties": False, "required": ["url", "events", "delivery"],
                        "properties": {"url": {"type": "string"}, "events": {"type": "array", "items": {"type": "string"}},
                                       "delivery": {"type": "string"}}},
            "duration_ms": {"type": "integer"},
            "result": {"description": "The task's output (null once expired: see result_status)"},
            "result_url": {"type": "string", "description": "A presigned URL of the stored result: only for a result stored in S3 "
                           "(over RESULT_IN_ITEM_BYTES); a smaller one lives in the job item and is in result"},
            "result_status": {"const": "expired"},
            "files": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {"url": {"type": "string"}, "bytes": {"type": "integer"}, "content_type": {"type": "string"}}}},
        },
    }
    attempt = {"type": "object", "additionalProperties": False, "required": ["attempt", "series", "at", "duration_ms"],
               "properties": {"attempt": {"type": "integer"}, "series": {"type": "integer"}, "at": _TIME,
                              "duration_ms": {"type": "integer"}, "status": {"type": "integer"},
                              "error": {"type": "string"}, "detail": {"type": "string"}}}
    delivery = {"type": "object", "additionalProperties": False,
                "required": ["event_id", "type", "url", "state", "series", "summary", "attempts"],
                "properties": {"event_id": {"type": "string"}, "type": {"type": "string"}, "url": {"type": "string"},
                               "state": {"enum": [s.value for s in DeliveryState]}, "series": {"type": "integer"},
                               "summary": {"type": "string"}, "attempts": {"type": "array", "items": attempt},
                               "next_attempt_at": _TIME, "reason": {"type": "string"}}}
    task = {"type": "object", "additionalProperties": False,
            "required": ["name", "description", "profile", "input_schema", "route"],
            "properties": {"name": {"enum": list(CATALOGUE)}, "description": {"type": "string"}, "profile": _OBJECT,
                           "input_schema": {"type": "object", "description": "The task's input as a JSON Schema (the "
                                            "same as the SubmitJob variant of this task in this document)"},
                           "route": {"type": "object", "additionalProperties": False, "required": ["lane", "reason"],
                                     "properties": {"lane": {"type": ["string", "null"]}, "reason": {"type": "string"}}},
                           "frequency": _OBJECT, "typical_cost": {"type": ["object", "null"]},
                           "batch_cost": {"type": ["object", "null"]}}}
    dimensions = {"type": "object", "additionalProperties": False, "properties": {
        name: {"type": "number"} for name in ("requests", "input_tokens", "output_tokens")}}
    limits = {"type": "object", "additionalProperties": False, "required": ["rpm", "itpm", "otpm"],
              "properties": {name: {"type": "integer"} for name in ("rpm", "itpm", "otpm")}}
    budget = {"type": "object", "additionalProperties": False, "properties": {
        "family": {"type": "string"}, "limits": limits, "configured": limits, "available": dimensions,
        "in_use": dimensions, "blocked_until": {"type": ["string", "null"]}, "your_recent_share": {"type": "number"}}}
    return {
        "Job": job,
        "JobPage": {"type": "object", "additionalProperties": False, "required": ["jobs", "next_cursor"],
                    "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                                   "next_cursor": {"type": ["string", "null"]}}},
        "Deliveries": {"type": "object", "additionalProperties": False, "required": ["job_id", "deliveries", "links"],
                       "properties": {"job_id": {"type": "string"}, "deliveries": {"type": "array", "items": delivery},
                                      "links": {"type": "object", "additionalProperties": False, "required": ["job"],
                                                "properties": {"job": {"type": "string"}}}}},
        "Usage": _usage_schema(),
        "TaskList": {"type": "object", "additionalProperties": False, "required": ["tasks"],
                     "properties": {"tasks": {"type": "array", "items": task}}},
        "Capacity": {"type": "object", "additionalProperties": False, "required": ["admission", "budgets", "waiting"],
                     "properties": {"admission": {"enum": ["on", "off"]},
                                    "budgets": {"type": "array", "items": budget},
                                    "waiting": {"type": ["object", "null"], "additionalProperties": False,
                                                "properties": {"jobs": {"type": "integer"}, "of_queued_jobs_seen": {"type": "integer"},
                                                               "next_grant_expected_at": {"type": ["string", "null"]},
                                                               "waited_ms": {"type": "integer"}}}}},
        "Upload": {"type": "object", "additionalProperties": False,
                   "required": ["upload_id", "url", "method", "headers", "expires_at", "max_bytes", "size", "content_type"],
                   "properties": {"upload_id": {"type": "string", "pattern": "^upl_[0-9a-f]{32}$"}, "url": {"type": "string"},
                                  "method": {"const": "PUT"},
                                  "headers": {"type": "object", "additionalProperties": {"type": "string"},
                                              "required": ["content-type", "content-length"]},
                                  "expires_at": _TIME, "max_bytes": {"type": "integer"}, "size": {"type": "integer"},
                                  "content_type": {"enum": list(uploads.CONTENT_TYPES)}}},
        "WebhookEvent": {"type": "object", "additionalProperties": False, "required": ["id", "type", "timestamp", "data"],
                         "properties": {
                             "id": {"type": "string", "description": "evt_<job id>_<status>, as the webhook-id header"},
                             "type": {"enum": sorted(EVENT_TYPES)},
                             "timestamp": {**_TIME, "description": "When the event was rendered, as the job ended "
                                                                   "(Standard Webhooks' payload field, ISO 8601)"},
                             "data": {"$ref": "#/components/schemas/Job",
                                      "description": "The job as GET /v1/jobs/{id} shows it, without result_url"}}},
        "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"],
                            "properties": {"openapi": {"const": "3.1.0"}}},
    }


def render() -> str:
    """The document as committed (docs/openapi.json): indented, keys in a stable order, a final newline."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
