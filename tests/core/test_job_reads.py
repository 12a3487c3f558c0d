"""Reads never re-validate: a job recorded before today's input limits (an empty metadata key, more keys
and longer values than submissions may now carry) reads back through GET and the list as it is."""

from dataclasses import replace

from jobcore.model import Mode
from jobcore.requests import SubmitRequest
from tests.core.test_service import MESSAGES, make_service

LEGACY_METADATA = {"": "empty key", "a\nb": "control character", **{f"key {i} " + "k" * 100: "v" * 2_000 for i in range(60)}}


def test_a_job_with_metadata_from_before_the_limits_reads_back():
    service, h = make_service()
    job = service.submit(SubmitRequest(task="claude.messages", input=MESSAGES, mode=Mode.ASYNC), tenant_id="t").job
    h.store.jobs[job.job_id] = replace(job, metadata=LEGACY_METADATA)  # as an older version stored it

    view = service.view(service.get(job.job_id, tenant_id="t"))
    page = service.list_jobs(tenant_id="t")

    assert view["metadata"] == LEGACY_METADATA
    assert page["jobs"][0]["metadata"] == LEGACY_METADATA
