"""Where a succeeded job's result is kept: a small one in the job item (no S3 object, nothing to read back),
a large one in S3 behind ``result_url``; retention, files and old items with a result in S3 as before."""

from __future__ import annotations

import json

from jobcore.limits import RESULT_IN_ITEM_BYTES
from jobcore.model import Job, JobStatus, Usage
from jobcore.tasks import OutputFile, TaskResult
from jobcore.views import render
from tests.fakes import harness

DAY_MS = 86_400_000


def running_job(h, *, expires_in_days: int | None = 30) -> Job:
    now = h.clock.ms()
    job = Job(job_id="job_1", tenant_id="t", task="claude.messages", status=JobStatus.RUNNING, lane="cpu",
              route_reason="cpu: test", created_at=now, updated_at=now, started_at=now, attempts=1,
              expires_at=None if expires_in_days is None else now // 1000 + expires_in_days * 86_400)
    h.store.create(job)
    return job


def succeed(h, job: Job, output: dict, **files: OutputFile) -> Job:
    return h.runner.succeed(job, TaskResult(output, Usage(model_calls=1), files=files), model_id="m")


def test_a_small_result_is_kept_in_the_job_item_and_shown_without_a_read_or_a_link():
    h = harness()
    output = {"answer": "forty-two", "score": 1.0, "nested": {"list": [1, 2.5, None, "é"]}}
    done = succeed(h, running_job(h), output)

    stored = h.store.get("job_1")
    assert stored.result_ref is None and h.blobs.docs == {}
    assert stored.result_bytes == len(json.dumps(output, separators=(",", ":")))
    h.blobs.get_json = lambda key: (_ for _ in ()).throw(AssertionError("a result in the item is not read from S3"))
    view = render(stored, h.blobs, now_ms=h.clock.ms())
    assert view["result"] == output and isinstance(view["result"]["score"], float)  # 1.0 stays a float
    assert "result_url" not in view and "result_status" not in view
    assert done == stored


def test_a_result_over_the_item_limit_goes_to_s3_and_is_shown_with_a_link():
    h = harness()
    output = {"text": "x" * RESULT_IN_ITEM_BYTES}
    succeed(h, running_job(h), output)

    stored = h.store.get("job_1")
    assert stored.result_json is None and h.blobs.docs[stored.result_ref] == output
    assert stored.result_bytes > RESULT_IN_ITEM_BYTES
    view = render(stored, h.blobs, now_ms=h.clock.ms())
    assert view["result"] == output and view["result_url"] == f"memory://{stored.result_ref}"


def test_a_result_retained_for_less_time_than_its_job_item_goes_to_s3_so_its_lifecycle_deletes_it():
    h = harness()
    h.runner.result_retention_days = 7
    succeed(h, running_job(h, expires_in_days=30), {"answer": "short-lived"})
    stored = h.store.get("job_1")
    assert stored.result_json is None and h.blobs.docs[stored.result_ref] == {"answer": "short-lived"}

    h2 = harness()
    h2.runner.result_retention_days = 30
    succeed(h2, running_job(h2, expires_in_days=30), {"answer": "kept as long as the item"})
    assert h2.store.get("job_1").result_ref is None and h2.blobs.docs == {}


def test_a_result_in_the_item_past_its_retention_shows_as_expired_like_one_in_s3():
    h = harness()
    h.runner.result_retention_days = 30
    succeed(h, running_job(h), {"answer": "old"})
    stored = h.store.get("job_1")

    later = stored.result_expires_at
    assert render(stored, h.blobs, now_ms=later - 1)["result"] == {"answer": "old"}
    view = render(stored, h.blobs, now_ms=later)
    assert view["result"] is None and view["result_status"] == "expired" and "result_url" not in view


def test_files_still_go_to_s3_with_links_when_the_result_is_in_the_item():
    h = harness()
    succeed(h, running_job(h), {"vectors": "see the file"}, **{"vectors.bin": OutputFile(b"\x00\x01", "application/octet-stream")})

    stored = h.store.get("job_1")
    assert stored.result_ref is None and h.blobs.docs == {}
    assert h.blobs.files[stored.files["vectors.bin"]["key"]] == (b"\x00\x01", "application/octet-stream")
    view = render(stored, h.blobs, now_ms=h.clock.ms())
    assert view["result"] == {"vectors": "see the file"}
    assert view["files"]["vectors.bin"]["url"] == f"memory://{stored.files['vectors.bin']['key']}"


def test_a_job_written_before_results_lived_in_the_item_still_renders_its_result_from_s3():
    h = harness()
    job = running_job(h)
    h.blobs.put_json("results/job_1.json", {"answer": "from before"})
    old = Job.from_dict({**job.to_dict(), "status": "succeeded", "result_ref": "results/job_1.json", "result_bytes": 25})

    view = render(old, h.blobs, now_ms=h.clock.ms())
    assert view["result"] == {"answer": "from before"} and view["result_url"] == "memory://results/job_1.json"
