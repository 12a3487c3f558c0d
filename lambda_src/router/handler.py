"""The router Lambda's entry point: HTTP in, the job service, HTTP out.

Routes (API Gateway REST proxy integration):
  POST /v1/jobs        submit; 200 with the finished job when it ran inline, 202 + Location when queued
                       (Idempotency-Key: a retry returns the original job)
  GET  /v1/jobs        the caller's jobs, newest first: ?status=&limit=&cursor=
  GET  /v1/jobs/{id}   the job: status, route and reason, result or result_url, usage, cost (?wait=N: long poll)
  POST /v1/jobs/{id}/cancel   cancel: 200 canceled, 202 canceling (a running job), 409 if finished
  GET  /v1/jobs/{id}/deliveries   the webhook delivery log; POST: send the terminal event again
  GET  /v1/usage       the caller's usage by day, task or lane: ?from=&to=&group_by= (and its monthly budget)
  GET  /v1/tasks       the catalogue, each task's profile and where it would run
  GET  /v1/capacity    the model's budgets, their use, and the caller's own jobs waiting for them (docs/capacity.md)
  POST /v1/uploads     201: a presigned PUT for a large input; a job names it with ``input_upload``
  GET  /v1/openapi.json   the API's OpenAPI 3.1 description (router/openapi.py; committed as docs/openapi.json)
  GET  /console        the web console, a page for a browser (router/console_page.py); no API key to load it
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from jobadapters import aws_errors
from jobadapters.request_time import REQUEST_DEADLINE
from jobadapters.settings import ConfigError, RouterSettings
from jobadapters.wiring import AwsClients, build_service
from jobcore import errors
from jobcore.idempotency import check_key
from jobcore.observing import QUIET
from jobcore.ports import Observer
from jobcore.requests import parse_json, parse_list_query, parse_submit, parse_wait, well_formed_job_id
from jobcore.service import JobService
from jobcore.uploads import parse_upload_request
from jobcore.validation import quoted
from jobcore.views import with_base_path
from router import console_page, payload, snapstart
from router.error_status import STATUS_BY_ERROR

logger = Logger(service="router")
app = APIGatewayRestResolver()

# On every JSON answer: a browser that opens one (a job's result may hold markup) never renders it as a page.
# No CORS header on any answer: the web console calls the API from its own origin, and no other origin may.
JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}
# Seconds a 503 ``unavailable`` (a queue or store that throttled or failed) asks the client to wait.
RETRY_AFTER_S = 5


class _Service:
    """The job service, built once per execution environment on first use from the environment.

    A bad setting fails shut: it is logged once, with the variable and the reason, and every request
    is answered 503 ``misconfigured`` without touching a table, a queue or the model, until a deploy
    fixes it (a new deploy starts new execution environments).
    """

    def __init__(self) -> None:
        self._service: JobService | None = None
        self._problem: str | None = None

    def __call__(self) -> JobService:
        if self._service is None and self._problem is None:
            try:
                settings = RouterSettings.from_env(os.environ)
                clients = AwsClients.create(settings.jobs_table, shards=settings.index_shards, deadline=REQUEST_DEADLINE)
                self._service = build_service(settings, clients)
            except (ConfigError, ValueError, TypeError) as error:  # ConfigError is a ValueError; all fail shut
                self._problem = str(error)
                logger.error("router misconfigured; answering 503 to every request", extra={"reason": self._problem})
        if self._service is None:
            raise errors.MisconfiguredError("the service is misconfigured; its operator can find why in the router's logs")
        return self._service

    def cache_clear(self) -> None:
        """Forget the service (the local runtime re-reads its environment)."""
        self._service, self._problem = None, None


service = _Service()
snapstart.register(service)  # with router_snapstart: primed before the snapshot, rebuilt after a restore


def tenant_id() -> str:
    """The caller's tenant: the API key API Gateway identified (the local gateway fills it in too)."""
    identity = app.current_event.request_context.identity
    tenant = identity.api_key_id
    if not tenant:
        # Never a shared "anonymous" tenant: a route deployed without its API key requirement fails shut.
        raise errors.UnauthenticatedError("no API key identified the caller; send it in the x-api-key header")
    return tenant


def base_path() -> str:
    """Where the API is mounted, from the request itself: the stage (``/dev``) on an execute-api URL, a base
    path mapping on a custom domain, nothing locally. API Gateway's ``requestContext.path`` is the path
    the client called (prefix included); ``path`` is the route's."""
    event = app.current_event
    called = (event.raw_event.get("requestContext") or {}).get("path") or ""
    route = event.path or ""
    return called[: -len(route)].rstrip("/") if route and called.endswith(route) else ""


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer; the links in ``body`` (and a ``Location``) are made absolute paths of this API."""
    base = base_path()
    headers = {**JSON_HEADERS, **{k: base + v if k == "Location" else v for k, v in (headers or {}).items()}}
    return Response(status_code=status, content_type="application/json", body=json.dumps(with_base_path(body, base)),
                    headers=headers)


@app.post("/v1/jobs")
def submit_job() -> Response:
    jobs = service()
    key = check_key(app.current_event.headers.get("idempotency-key"))
    request = parse_submit(parse_json(request_body()), allow_http_webhooks=jobs.allow_http_webhooks)
    submission = jobs.submit(request, tenant_id=tenant_id(), idempotency_key=key)
    view = jobs.submitted_view(submission)
    headers = {"Location": view["links"]["self"]} if submission.status_code == HTTPStatus.ACCEPTED else {}
    return json_response(submission.status_code, view, headers)


def request_body() -> str | bytes | None:
    """The body as the client sent it: text, or bytes when API Gateway passed it base64-encoded (a binary
    media type; the local gateway does so for a body that is not UTF-8). parse_json decodes the bytes."""
    event = app.current_event
    if not event.body or not event.is_base64_encoded:
        return event.body
    try:
        return base64.b64decode(event.body, validate=True)
    except (binascii.Error, ValueError):
        raise errors.BadRequestError("the body is not valid base64, as isBase64Encoded says it is") from None


@app.get("/v1/jobs")
def list_jobs() -> Response:
    query = parse_list_query(app.current_event.query_string_parameters)
    page = service().list_jobs(tenant_id=tenant_id(), status=query.status, limit=query.limit, cursor=query.cursor,
                               source=query.source)
    return json_response(HTTPStatus.OK, page)


@app.get("/v1/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    jobs = service()
    wait_s = parse_wait(app.current_event.query_string_parameters)
    return json_response(HTTPStatus.OK, jobs.view(jobs.wait(checked(job_id), tenant_id=tenant_id(), wait_s=wait_s)))


@app.post("/v1/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    jobs = service()
    job = jobs.cancel(checked(job_id), tenant_id=tenant_id())
    return json_response(HTTPStatus.OK if job.status.terminal else HTTPStatus.ACCEPTED, jobs.view(job))


@app.get("/v1/jobs/<job_id>/deliveries")
def get_deliveries(job_id: str) -> Response:
    return json_response(HTTPStatus.OK, service().deliveries(checked(job_id), tenant_id=tenant_id()))


@app.post("/v1/jobs/<job_id>/deliveries")
def redeliver(job_id: str) -> Response:
    return json_response(HTTPStatus.ACCEPTED, service().redeliver(checked(job_id), tenant_id=tenant_id()))


def checked(job_id: str) -> str:
    """A path's job id; one that could not be an id is simply not found (never a 500, never echoed long)."""
    if not well_formed_job_id(job_id):
        raise errors.JobNotFoundError("no such job")
    return job_id


@app.get("/v1/usage")
def get_usage() -> Response:
    """The caller's usage over a range of days, by day, task or lane (``?from=&to=&group_by=``), and its budget."""
    return json_response(HTTPStatus.OK, service().usage(tenant_id=tenant_id(), params=app.current_event.query_string_parameters))


@app.get("/v1/tasks")
def list_tasks() -> Response:
    return json_response(HTTPStatus.OK, {"tasks": service().tasks()})


@app.get("/v1/capacity")
def capacity() -> Response:
    return json_response(HTTPStatus.OK, service().capacity(tenant_id=tenant_id()))


@app.post("/v1/uploads")
def create_upload() -> Response:
    jobs = service()
    request = parse_upload_request(parse_json(request_body()))
    return json_response(HTTPStatus.CREATED, jobs.create_upload(request, tenant_id=tenant_id()))


@app.get("/v1/openapi.json")
def openapi_document() -> Response:
    """The API's OpenAPI description (router/openapi.py), for an identified caller like every route. Imported
    here, on first use: no other route pays for it. Where the API is mounted under a base path, ``servers``
    says so (the committed docs/openapi.json is the document without it)."""
    tenant_id()
    from router import openapi

    document = openapi.document()
    base = base_path()
    return json_response(HTTPStatus.OK, {**document, "servers": [{"url": base}]} if base else document)


@app.get("/console")
def console() -> Response:
    return Response(status_code=HTTPStatus.OK, content_type=console_page.PAGE_TYPE, body=console_page.page(base_path()),
                    headers=console_page.HEADERS)


@app.get("/console/<asset>")
def console_asset(asset: str) -> Response:
    found = console_page.asset(asset)
    if found is None:
        return json_response(404, {"error": {"type": "not_found", "message": f"no console file {quoted(asset)}"}})
    content_type, text = found
    return Response(status_code=HTTPStatus.OK, content_type=content_type, body=text, headers=console_page.HEADERS)


@app.exception_handler(errors.JobError)
def job_error(error: errors.JobError) -> Response:
    status = next((code for kind, code in STATUS_BY_ERROR if isinstance(error, kind)), 500)
    body: dict[str, Any] = {"type": error.type, "message": str(error)}
    if getattr(error, "field", None):  # InvalidInputError's always; BadRequestError's when a place is to blame
        body["field"] = error.field  # type: ignore[attr-defined]
    if isinstance(error, errors.JobFinishedError):
        body["status"] = error.status
    if isinstance(error, errors.BudgetExceededError):
        body["figures"] = error.figures
    headers: dict[str, str] = {}
    if isinstance(error, errors.SyncUnavailableError):
        headers["Retry-After"] = str(error.retry_after_s)
    elif status == HTTPStatus.SERVICE_UNAVAILABLE and error.type == "unavailable":
        headers["Retry-After"] = str(RETRY_AFTER_S)
        logger.warning("answering 503 unavailable", extra={"reason": str(error), "cause": repr(error.__cause__)})
    job_id = getattr(error, "job_id", None)
    if job_id:  # the job was recorded before the failure: poll it rather than submit it again
        body["job_id"] = job_id
        body["links"] = {"job": f"/v1/jobs/{job_id}"}
        headers["Location"] = body["links"]["job"]
    return json_response(status, {"error": with_base_path(body, base_path())}, headers)


@app.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response:
    if aws_errors.transient(error):  # a store call no adapter translated: still a 503, never AWS's words
        logger.warning("AWS unavailable", extra={"reason": str(error)})
        return json_response(503, {"error": {"type": "unavailable", "message": "a service the API depends on is unavailable; "
                                                                               "retry shortly"}},
                             {"Retry-After": str(RETRY_AFTER_S)})
    logger.exception("unhandled error")
    return json_response(500, {"error": {"type": "internal_error", "message": "internal error; the request id is in the logs"}})


@app.not_found
def not_found(_: Exception) -> Response:
    event = app.current_event
    return json_response(404, {"error": {"type": "not_found", "message": f"no route {quoted(event.http_method)} {quoted(event.path)}"}})


def observer() -> Observer:
    """The service's observer (traces, metrics); a misconfigured service has none."""
    try:
        return service().context.observer
    except errors.JobError:
        return QUIET


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if payload.too_large(event):  # only the local gateway can hand over such an event: Lambda cannot
        return {"statusCode": payload.STATUS, "headers": {"Content-Type": "application/json"},
                "body": json.dumps(payload.error_body()), "isBase64Encoded": False}
    telemetry = observer()
    headers = {key.lower(): value for key, value in (event.get("headers") or {}).items()}
    route = (event.get("resource") or event.get("path") or "")[:200]
    attributes = {"http.request.method": str(event.get("httpMethod") or ""), "http.route": route}
    # A client's own traceparent makes the request a span of its trace.
    with telemetry.span("api.request", parent=headers.get("traceparent"), attributes=attributes) as span:
        with REQUEST_DEADLINE.request(context):  # every AWS call of this request ends before the gateway gives up
            answer = app.resolve(event, context)
        span.set_attribute("http.response.status_code", int(answer.get("statusCode") or 0))
    telemetry.flush()
    return answer

