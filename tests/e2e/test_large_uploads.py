"""Large inputs by upload, end to end through the local pipeline: ``POST /v1/uploads``, the presigned PUT to S3
(the moto server), a job naming the upload, a worker reading it from S3 and running it.

The 50 MB input is five times API Gateway's 10 MB request limit: a ``documents.summarize`` of 130 documents
of 385,000 characters each (the task's per-document cap is 400,000).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from local import client
from tests.e2e.harness import finished_job

DOCUMENTS = 130
CHARS = 385_000


def api(pipeline, method, path, body=None, *, key=client.LOCAL_API_KEY):
    return client.call(method, pipeline["api_url"] + path, body, key=key)


def finished(pipeline, job_id, *, timeout_s=180):
    return finished_job(pipeline, job_id, timeout_s=timeout_s, every_s=0.5)


def upload(pipeline, data: bytes, content_type: str = "application/json", *, key=client.LOCAL_API_KEY) -> str:
    status, _, created = api(pipeline, "POST", "/v1/uploads", {"content_type": content_type, "size": len(data)}, key=key)
    assert status == 201, created
    request = urllib.request.Request(created["url"], data=data, method="PUT", headers=created["headers"])
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
    return created["upload_id"]


def big_input() -> bytes:
    text = "Invoices are due in thirty days. " * (CHARS // 33)
    documents = [{"id": f"doc-{i}", "text": text[:CHARS]} for i in range(DOCUMENTS)]
    return json.dumps({"documents": documents, "max_words": 20}).encode()


def test_a_50_mb_uploaded_input_runs_a_job_end_to_end(pipeline):
    data = big_input()
    assert len(data) > 50_000_000
    upload_id = upload(pipeline, data)
    del data

    status, _, job = api(pipeline, "POST", "/v1/jobs", {"task": "documents.summarize", "input_upload": upload_id})

    assert status == 202, job
    assert job["route"]["lane"] == "cpu"
    job = finished(pipeline, job["id"])
    assert job["status"] == "succeeded", job
    assert job["usage"]["model_calls"] == DOCUMENTS
    assert len(json.dumps(job["result"] or {})) > 0


def test_the_presigned_put_refuses_another_length(pipeline):
    status, _, created = api(pipeline, "POST", "/v1/uploads", {"content_type": "application/json", "size": 10})
    assert status == 201
    assert created["headers"]["content-length"] == "10" and "content-length" in created["url"].lower()


def test_the_presigned_put_refuses_another_content_type_as_s3_does(pipeline):
    data = json.dumps({"documents": [{"id": "a", "text": "hello"}]}).encode()
    status, _, created = api(pipeline, "POST", "/v1/uploads", {"content_type": "application/json", "size": len(data)})
    assert status == 201, created
    request = urllib.request.Request(created["url"], data=data, method="PUT",
                                     headers={**created["headers"], "content-type": "text/plain"})

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)

    assert refused.value.code == 403 and b"SignatureDoesNotMatch" in refused.value.read()
    status, _, body = api(pipeline, "POST", "/v1/jobs", {"task": "documents.summarize", "input_upload": created["upload_id"]})
    assert status == 422 and "PUT it" in body["error"]["message"], body  # nothing was stored


def test_another_tenant_cannot_use_the_upload(pipeline):
    upload_id = upload(pipeline, json.dumps({"documents": [{"id": "a", "text": "hello"}]}).encode())
    status, _, body = api(pipeline, "POST", "/v1/jobs", {"task": "documents.summarize", "input_upload": upload_id},
                          key="another-tenant-key")
    assert status == 422 and body["error"]["field"] == "input_upload", body
    status, _, body = api(pipeline, "POST", "/v1/jobs", {"task": "documents.summarize", "input_upload": upload_id})
    assert status in (200, 202), body


def test_an_upload_never_put_is_a_422(pipeline):
    status, _, created = api(pipeline, "POST", "/v1/uploads", {"content_type": "application/json", "size": 100})
    status, _, body = api(pipeline, "POST", "/v1/jobs", {"task": "documents.summarize", "input_upload": created["upload_id"]})
    assert status == 422 and "PUT it" in body["error"]["message"], body


def test_a_large_invalid_upload_fails_its_job_in_the_worker_as_invalid_input(pipeline):
    upload_id = upload(pipeline, json.dumps({"documents": "not a list", "pad": "z" * 200_000}).encode())
    status, _, job = api(pipeline, "POST", "/v1/jobs", {"task": "documents.summarize", "input_upload": upload_id})
    assert status == 202, job
    job = finished(pipeline, job["id"], timeout_s=60)
    assert job["status"] == "failed" and job["error"]["type"] == "invalid_input", job
    assert "documents" in job["error"]["message"]


def test_uploads_refuse_other_types_and_sizes(pipeline):
    for body in ({"content_type": "image/png", "size": 10}, {"content_type": "application/json", "size": 2 * 1024 ** 3}):
        status, _, answer = api(pipeline, "POST", "/v1/uploads", body)
        assert status == 422, answer
