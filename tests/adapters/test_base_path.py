"""Links and ``Location`` point where the API really is: behind the stage (``/dev``) of a deployed API, at
the root of the local one, in responses and in webhooks alike."""

from __future__ import annotations

import copy
import json

import pytest

from jobadapters.settings import ConfigError, DispatcherSettings
from jobcore.views import with_base_path
from local.gateway import to_event
from tests.adapters.test_router_handler import KEY, LONG, Api, api, router_env  # noqa: F401  (fixtures)


def deployed(method: str, path: str, body=None, *, stage: str = "dev", base: str | None = None) -> dict:
    """The event API Gateway sends for a call to https://<id>.execute-api.<region>.amazonaws.com/<stage><path>
    (or to a custom domain's base path): ``requestContext.path`` carries the prefix, ``path`` does not."""
    event = to_event(method, path, {"x-api-key": KEY, "content-type": "application/json"},
                     json.dumps(body) if body is not None else None, stage=stage)
    assert event is not None
    event["requestContext"]["path"] = f"{base if base is not None else '/' + stage}{path}"
    return event


def test_a_queued_job_on_a_deployed_stage_has_its_location_and_links_under_the_stage(api):  # noqa: F811
    reply = api.send(deployed("POST", "/v1/jobs", LONG))

    assert reply.status == 202
    job_id = reply.body["id"]
    assert reply.headers["Location"] == f"/dev/v1/jobs/{job_id}"
    assert reply.body["links"]["self"] == f"/dev/v1/jobs/{job_id}"
    listed = api.send(deployed("GET", "/v1/jobs")).body
    assert {job["links"]["self"] for job in listed["jobs"]} == {f"/dev/v1/jobs/{job_id}"}
    got = api.send(deployed("GET", f"/v1/jobs/{job_id}")).body
    assert got["links"]["self"] == f"/dev/v1/jobs/{job_id}"
    deliveries = api.send(deployed("GET", f"/v1/jobs/{job_id}/deliveries")).body
    assert deliveries["links"]["job"] == f"/dev/v1/jobs/{job_id}"


def test_a_custom_domain_base_path_is_kept_and_the_local_root_adds_nothing(api):  # noqa: F811
    reply = api.send(deployed("POST", "/v1/jobs", LONG, base="/jobs-api"))
    assert reply.headers["Location"] == f"/jobs-api/v1/jobs/{reply.body['id']}"
    local = api.call("POST", "/v1/jobs", LONG)
    assert local.headers["Location"] == f"/v1/jobs/{local.body['id']}" == local.body["links"]["self"]


def test_with_base_path_prefixes_only_paths_under_links():
    document = {"id": "job_1", "links": {"self": "/v1/jobs/job_1", "external": "https://x.example/y"},
                "result": {"links": {"self": "/v1/other"}, "text": "/v1/jobs/job_1 stays"},
                "jobs": [{"links": {"self": "/v1/jobs/job_2"}}]}
    original = copy.deepcopy(document)
    prefixed = with_base_path(document, "/dev")
    assert prefixed["links"] == {"self": "/dev/v1/jobs/job_1", "external": "https://x.example/y"}
    assert prefixed["result"] == original["result"]  # a task's result is the task's: never rewritten
    assert prefixed["jobs"][0]["links"]["self"] == "/dev/v1/jobs/job_2"
    assert document == original and with_base_path(document, "") is document


def test_the_dispatcher_reads_its_base_path_and_refuses_a_malformed_one():
    env = {"JOBS_TABLE": "t", "RESULTS_BUCKET": "b", "WEBHOOK_QUEUE_URL": "q", "WEBHOOK_SECRET": "s"}
    assert DispatcherSettings.from_env({**env, "API_BASE_PATH": "/dev"}).api_base_path == "/dev"
    assert DispatcherSettings.from_env(env).api_base_path == ""
    with pytest.raises(ConfigError, match="API_BASE_PATH"):
        DispatcherSettings.from_env({**env, "API_BASE_PATH": "dev v1"})


def test_a_webhooks_job_links_under_the_stage_the_dispatcher_is_told(api):  # noqa: F811
    from jobadapters.dynamo import DynamoJobStore
    from jobadapters.wiring import build_dispatcher

    job_id = api.call("POST", "/v1/jobs", LONG).body["id"]
    settings = DispatcherSettings.from_env({
        "JOBS_TABLE": api.aws.table, "RESULTS_BUCKET": api.aws.bucket, "WEBHOOK_QUEUE_URL": api.aws.webhook_queue_url,
        "WEBHOOK_SECRET": "whsec_dGVzdA==", "API_BASE_PATH": "/dev",
    })
    job = DynamoJobStore(api.clients.table).get(job_id)
    assert build_dispatcher(settings, api.clients).render(job)["links"]["self"] == f"/dev/v1/jobs/{job_id}"
