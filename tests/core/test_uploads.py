"""Large inputs by upload (jobcore.uploads): the upload request, a job naming its upload, tenant scoping,
and the worker reading and validating an upload the router never read."""

import json

import pytest

from jobcore.errors import InvalidInputError, UnroutableError
from jobcore.limits import MAX_UPLOAD_BYTES
from jobcore.model import JobStatus, Mode
from jobcore.requests import SubmitRequest, parse_submit
from jobcore.schema_keys import upload_key
from jobcore.service import INLINE_INPUT_LIMIT
from jobcore.tasks import RunContext
from jobcore.uploads import UploadInfo, UploadRequest, parse_upload_request, well_formed_upload_id
from tests import fakes
from tests.fakes import ScriptedModel, text_response

UPLOAD = "upl_" + "a" * 32


class MemoryUploads:
    """UploadStore over the harness's MemoryBlobs (its files are the uploaded objects)."""

    def __init__(self, blobs):
        self.blobs = blobs
        self.presigned: list[tuple[str, str, int, int]] = []

    def presign_put(self, key, *, content_type, size, expires_s):
        self.presigned.append((key, content_type, size, expires_s))
        return f"memory-put://{key}"

    def head(self, key):
        if key not in self.blobs.files:
            return None
        data, content_type = self.blobs.files[key]
        return UploadInfo(len(data), content_type)


def make_service(script=()):
    service, h = fakes.make_service(script)
    service.uploads = MemoryUploads(h.blobs)
    return service, h


def put(h, data: bytes, content_type="application/json", *, tenant="tenant-a", upload_id=UPLOAD):
    h.blobs.put_bytes(upload_key(tenant, upload_id), data, content_type=content_type)


def submit(service, task="documents.summarize", *, tenant="tenant-a", upload_id=UPLOAD, **kwargs):
    return service.submit(SubmitRequest(task=task, input=None, input_upload=upload_id, **kwargs), tenant_id=tenant)


def documents(n: int, chars: int) -> bytes:
    return json.dumps({"documents": [{"id": f"d{i}", "text": "x" * chars} for i in range(n)]}).encode()


# --- the upload request ---------------------------------------------------------------------------


def test_an_upload_request_takes_json_or_text_up_to_the_limit():
    assert parse_upload_request({"content_type": "text/plain", "size": 5}) == UploadRequest("text/plain", 5)
    assert parse_upload_request({"content_type": "application/json", "size": MAX_UPLOAD_BYTES}).size == MAX_UPLOAD_BYTES
    assert MAX_UPLOAD_BYTES >= 100 * 10 * 1024 * 1024  # far above API Gateway's 10 MB


@pytest.mark.parametrize(("body", "field"), [
    ({"content_type": "image/png", "size": 5}, "content_type"),
    ({"content_type": "application/json", "size": MAX_UPLOAD_BYTES + 1}, "size"),
    ({"content_type": "application/json", "size": 0}, "size"),
    ({"content_type": "application/json", "size": True}, "size"),
    ({"content_type": "application/json", "size": "5"}, "size"),
    ({"content_type": "application/json"}, "size"),
    ({"content_type": "application/json", "size": 5, "name": "x"}, "name"),
])
def test_a_bad_upload_request_names_its_field(body, field):
    with pytest.raises(InvalidInputError) as caught:
        parse_upload_request(body)
    assert caught.value.field == field


def test_create_upload_presigns_a_tenant_scoped_put():
    service, h = make_service()
    created = service.create_upload(UploadRequest("application/json", 1234), tenant_id="tenant-a")
    assert well_formed_upload_id(created["upload_id"])
    key = f"uploads/tenant-a/{created['upload_id']}"
    assert service.uploads.presigned == [(key, "application/json", 1234, 3600)]
    assert created["url"] == f"memory-put://{key}"
    assert created["headers"] == {"content-type": "application/json", "content-length": "1234"}
    assert created["max_bytes"] == MAX_UPLOAD_BYTES and created["expires_at"].endswith("Z")


# --- the submit body ------------------------------------------------------------------------------


def test_submit_takes_input_upload_in_place_of_input():
    request = parse_submit({"task": "documents.summarize", "input_upload": UPLOAD})
    assert request.input_upload == UPLOAD and request.input is None
    with pytest.raises(InvalidInputError, match="not both"):
        parse_submit({"task": "documents.summarize", "input_upload": UPLOAD, "input": {}})
    with pytest.raises(InvalidInputError) as caught:
        parse_submit({"task": "documents.summarize", "input_upload": 7})
    assert caught.value.field == "input_upload"


# --- resolving the reference ----------------------------------------------------------------------


def test_a_small_json_upload_is_read_and_validated_like_an_input():
    service, h = make_service()
    put(h, documents(2, 100))
    job = submit(service).job
    assert job.status is JobStatus.QUEUED and job.input["documents"][0]["id"] == "d0" and job.input_ref is None


def test_a_small_invalid_upload_is_a_422_at_submission():
    service, h = make_service()
    put(h, json.dumps({"documents": []}).encode())
    with pytest.raises(InvalidInputError, match="documents"):
        submit(service)
    put(h, b"{not json")
    with pytest.raises(InvalidInputError) as caught:
        submit(service)
    assert caught.value.field == "input_upload" and "not valid JSON" in str(caught.value)


def test_a_missing_upload_is_a_422():
    service, h = make_service()
    with pytest.raises(InvalidInputError) as caught:
        submit(service)
    assert caught.value.field == "input_upload" and "PUT it" in str(caught.value)
    with pytest.raises(InvalidInputError, match="upload id"):
        submit(service, upload_id="upl_nope")
    assert h.store.jobs == {}


def test_another_tenants_upload_is_not_found():
    service, h = make_service()
    put(h, documents(1, 10), tenant="tenant-b")
    with pytest.raises(InvalidInputError, match="no upload"):
        submit(service, tenant="tenant-a")
    assert submit(service, tenant="tenant-b").job.tenant_id == "tenant-b"


def test_text_uploads_only_for_tasks_with_a_text_field():
    service, h = make_service()
    put(h, b"ACME invoice 42, total 10 EUR", "text/plain")
    job = submit(service, task="invoice.extract", mode=Mode.ASYNC).job
    assert job.input == {"text": "ACME invoice 42, total 10 EUR"}
    job = submit(service, task="documents.summarize").job
    assert job.input["documents"] == [{"id": UPLOAD, "text": "ACME invoice 42, total 10 EUR"}]
    with pytest.raises(InvalidInputError, match="does not take"):
        submit(service, task="claude.messages")


def test_a_large_upload_is_never_read_by_the_router_and_always_queued():
    service, h = make_service()
    put(h, documents(3, INLINE_INPUT_LIMIT))

    def refuse(key):
        raise AssertionError("the router read a large upload")
    h.blobs.open_stream = refuse
    job = submit(service).job
    assert job.status is JobStatus.QUEUED and job.lane != "inline"
    assert job.input is None and job.input_ref == upload_key("tenant-a", UPLOAD)
    assert service.queue.sent == [(job.job_id, job.lane)]


def test_a_large_upload_that_would_run_inline_is_queued_and_sync_is_refused():
    service, h = make_service()
    put(h, json.dumps({"text": "y" * (INLINE_INPUT_LIMIT + 10)}).encode())
    job = submit(service, task="invoice.extract").job
    assert job.status is JobStatus.QUEUED and job.lane == "cpu" and "never inline" in job.route_reason
    with pytest.raises(UnroutableError, match="never runs inline"):
        submit(service, task="invoice.extract", mode=Mode.SYNC)


def test_the_worker_reads_and_runs_a_large_upload():
    service, h = make_service()
    put(h, documents(3, INLINE_INPUT_LIMIT))
    job = submit(service).job
    model = ScriptedModel([text_response("summary")] * 3)
    h.runner.process(job.job_id, ctx=RunContext(llm=model, model_id="m"), receive_count=1, max_receives=5)
    done = h.store.get(job.job_id)
    assert done.status is JobStatus.SUCCEEDED and done.usage.model_calls == 3


@pytest.mark.parametrize(("data", "words"), [
    (json.dumps({"documents": [], "pad": "z" * INLINE_INPUT_LIMIT}).encode(), "input"),
    (b"[" * 10 + b"x" * INLINE_INPUT_LIMIT, "not valid JSON"),
])
def test_the_worker_fails_an_invalid_large_upload_as_invalid_input(data, words):
    service, h = make_service()
    put(h, data)
    job = submit(service).job
    h.runner.process(job.job_id, ctx=RunContext(llm=ScriptedModel([]), model_id="m"), receive_count=1, max_receives=5)
    done = h.store.get(job.job_id)
    assert done.status is JobStatus.FAILED and done.error["type"] == "invalid_input"
    assert words in done.error["message"]
