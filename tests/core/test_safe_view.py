"""A stored job always renders: odd stored values are replaced or left out (and logged), never a failed view,
and what is shown is strict JSON (no NaN, no lone surrogate, nothing json.dumps cannot write)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from decimal import Decimal

import pytest

from jobcore.errors import StoreUnavailableError
from jobcore.model import JobStatus
from jobcore.requests import SubmitRequest
from jobcore.views import bare_view, jsonable, render, safe_view
from tests.fakes import make_service, text_response

MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "Say hi."}]}


def strict(view) -> dict:
    """The view as a client reads it: strict JSON, UTF-8 encodable."""
    return json.loads(json.dumps(view, allow_nan=False, ensure_ascii=False).encode("utf-8"))


def finished_job():
    service, h = make_service([text_response("hi")])
    job = service.submit(SubmitRequest(task="claude.messages", input=MESSAGES), tenant_id="tenant-a").job
    assert job.status is JobStatus.SUCCEEDED and job.result_json is not None
    return service, h, job


def test_jsonable_replaces_what_strict_json_cannot_carry_and_logs_where(caplog):
    odd = {"nan": float("nan"), "inf": [float("-inf")], "text": "a\ud800b", "\udfff": 1, 7: "seven",
           "dec": [Decimal("2"), Decimal("2.5"), Decimal("NaN")], "set": {"b", "a"}, "tuple": (1, 2), "raw": b"x",
           "ok": {"n": 1, "f": 1.5, "t": True, "none": None}}
    with caplog.at_level(logging.WARNING, logger="jobcore.views"):
        clean = jsonable(odd, what="job j1")
    assert strict(clean) == clean
    assert clean["nan"] is None and clean["inf"] == [None] and clean["text"] == "a\ufffdb" and clean["\ufffd"] == 1
    assert clean["7"] == "seven" and clean["dec"] == [2, 2.5, None] and clean["set"] == ["a", "b"]
    assert clean["tuple"] == [1, 2] and clean["raw"] is None and clean["ok"] == odd["ok"]
    assert "job j1: 6 value(s)" in caplog.text and "nan" in caplog.text


def test_a_result_json_that_is_not_json_renders_the_job_without_its_result(caplog):
    service, h, job = finished_job()
    broken = replace(job, result_json="{not json")
    with caplog.at_level(logging.ERROR, logger="jobcore.views"):
        view = strict(render(broken, h.blobs, now_ms=h.clock.ms()))
    assert view["id"] == job.job_id and view["status"] == "succeeded" and "result" not in view
    assert view["usage"]["model_calls"] == 1  # the rest of the job is still shown
    assert f"job {job.job_id}: its view could not be rendered" in caplog.text


def test_a_stored_result_with_nan_and_surrogates_is_shown_as_strict_json():
    service, h, job = finished_job()
    odd = replace(job, result_json='{"text": "\\ud800", "score": NaN, "deep": [Infinity]}')
    view = strict(service.view(odd))
    assert view["result"] == {"text": "\ufffd", "score": None, "deep": [None]}


def test_odd_fields_of_the_job_itself_fall_back_to_its_identity(caplog):
    service, h, job = finished_job()
    odd = replace(job, created_at="yesterday", attempt_errors=({"at": "soon"},), files={"f": "not a dict"})
    with caplog.at_level(logging.ERROR, logger="jobcore.views"):
        view = strict(service.view(odd))
    assert view == bare_view(job)
    assert view == {"id": job.job_id, "task": "claude.messages", "status": "succeeded",
                    "links": {"self": f"/v1/jobs/{job.job_id}"}}
    assert "showing its identity only" in caplog.text


def test_a_page_of_jobs_renders_every_entry_even_with_one_odd_job():
    service, h, job = finished_job()
    second = service.submit(SubmitRequest(task="claude.messages", input=MESSAGES, mode="async"), tenant_id="tenant-a").job
    h.store.jobs[job.job_id] = replace(job, metadata={"k": float("nan")}, attempt_errors=({"at": "soon"},))
    page = strict(service.list_jobs(tenant_id="tenant-a"))
    assert {entry["id"] for entry in page["jobs"]} == {job.job_id, second.job_id}


def test_a_store_that_is_unavailable_is_still_a_503_not_a_degraded_view():
    service, h, job = finished_job()

    def unavailable():
        raise StoreUnavailableError("the result store is unavailable (throttled or unreachable); retry shortly")
    with pytest.raises(StoreUnavailableError):
        safe_view(job, unavailable)
