"""S3 intake, the core: key parsing, decoding per task, failed jobs with a reason, dedupe, ?source=."""

from __future__ import annotations

import json

import pytest

from jobcore import intake
from jobcore.intake import MAX_OBJECT_BYTES, IntakeError, IntakeObject, decode_input, submit_object, task_of
from jobcore.model import JobStatus, Mode
from tests.core.test_service import make_service

INVOICE = b"Acme Corporation\nINVOICE\nInvoice number: INV-1\nTotal: $10.00\n"


def obj(key: str, data: bytes = INVOICE, etag: str = '"abc"') -> IntakeObject:
    return IntakeObject(bucket="results", key=key, size=len(data), etag=etag)


def test_the_task_is_the_first_part_under_the_prefix():
    assert task_of("intake/invoice.extract/acme.txt") == "invoice.extract"
    assert task_of("intake/claude.messages/a/b.json") == "claude.messages"
    for bad in ("other/x/y", "intake/x", "intake//y", "intake/x/", "intake/"):
        with pytest.raises(IntakeError):
            task_of(bad)


def test_decoding_per_task():
    assert decode_input("invoice.extract", "Ünïcode".encode()) == {"text": "Ünïcode"}
    assert decode_input("claude.messages", b'{"max_tokens": 5}') == {"max_tokens": 5}
    with pytest.raises(IntakeError, match="not UTF-8"):
        decode_input("invoice.extract", b"\xff\xfe")
    with pytest.raises(IntakeError, match="not a JSON document"):
        decode_input("claude.messages", b"hello")
    with pytest.raises(IntakeError, match="empty"):
        decode_input("invoice.extract", b"  ")
    with pytest.raises(IntakeError, match="at most"):
        decode_input("invoice.extract", b"a" * (MAX_OBJECT_BYTES + 1))


def test_an_invoice_object_becomes_an_async_job_with_its_source():
    service, h = make_service()
    job = submit_object(service, obj("intake/invoice.extract/acme.txt"), lambda: INVOICE, tenant_id="t",
                        webhook_url="https://example.com/hook")
    assert job.task == "invoice.extract" and job.mode is Mode.ASYNC and job.status is JobStatus.QUEUED
    assert job.source == "s3://results/intake/invoice.extract/acme.txt"
    assert "S3 intake" in job.route_reason and "async" in job.route_reason
    assert job.webhook is not None and job.webhook.url == "https://example.com/hook"
    assert h.store.get(job.job_id).input == {"text": INVOICE.decode()}
    assert service.view(job)["source"] == job.source


def test_the_same_object_delivered_twice_makes_one_job():
    service, h = make_service()
    first = submit_object(service, obj("intake/invoice.extract/a.txt"), lambda: INVOICE, tenant_id="t")
    again = submit_object(service, obj("intake/invoice.extract/a.txt"), lambda: INVOICE, tenant_id="t")
    assert again.job_id == first.job_id and len(h.store.jobs) == 1
    rewritten = submit_object(service, obj("intake/invoice.extract/a.txt", etag='"new"'), lambda: INVOICE, tenant_id="t")
    assert rewritten.job_id != first.job_id  # a new version of the object is a new job


@pytest.mark.parametrize(("key", "data", "why"), [
    ("intake/no.such.task/x.json", b"{}", "unknown task"),
    ("intake/invoice.extract/bad.txt", b"\xff\xfe\xfd", "not UTF-8"),
    ("intake/claude.messages/bad.json", b"not json", "not a JSON document"),
    ("intake/claude.messages/invalid.json", b'{"nope": 1}', "input"),
])
def test_an_object_that_cannot_run_becomes_a_failed_job_with_the_reason(key, data, why):
    service, h = make_service()
    job = submit_object(service, obj(key, data), lambda: data, tenant_id="t", webhook_url="https://example.com/h")
    assert job.status is JobStatus.FAILED and job.error is not None
    assert why in job.error["message"] and f"s3://results/{key}" in job.error["message"]
    assert job.error["type"] == "intake_rejected" and job.delivery is not None  # its webhook is told
    again = submit_object(service, obj(key, data), lambda: data, tenant_id="t")
    assert again.job_id == job.job_id and len(h.store.jobs) == 1


def test_a_too_big_object_is_never_read():
    service, _ = make_service()
    big = IntakeObject(bucket="results", key="intake/invoice.extract/big.txt", size=MAX_OBJECT_BYTES + 1, etag="e")

    def read() -> bytes:
        raise AssertionError("read")

    job = submit_object(service, big, read, tenant_id="t")
    assert job.status is JobStatus.FAILED and "at most" in job.error["message"]


def test_list_jobs_by_source():
    service, _ = make_service()
    mine = submit_object(service, obj("intake/invoice.extract/a.txt"), lambda: INVOICE, tenant_id="t")
    submit_object(service, obj("intake/invoice.extract/b.txt"), lambda: INVOICE, tenant_id="t")
    page = service.list_jobs(tenant_id="t", source=mine.source)
    assert [view["id"] for view in page["jobs"]] == [mine.job_id] and page["next_cursor"] is None
    assert service.list_jobs(tenant_id="other", source=mine.source)["jobs"] == []


def test_the_idempotency_key_is_a_valid_key_whatever_the_object_key():
    from jobcore.idempotency import check_key

    assert check_key(intake.idempotency_key(obj("intake/x/ä b\n.json"))) is not None
    json.dumps(intake.idempotency_key(obj("intake/x/y")))
