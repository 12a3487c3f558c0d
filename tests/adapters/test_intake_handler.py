"""The S3 intake's Lambda entry point (``intake.handler``) in moto: S3 event notifications in SQS records become
jobs (one per object version, whatever the deliveries), failed jobs for objects that cannot run, and a record
fails (partial batch response) only when the pipeline itself could not do its work."""

from __future__ import annotations

import json

import pytest
from intake import handler as lambda_handler

from jobadapters.dynamo import DynamoJobStore
from jobadapters.wiring import AwsClients
from jobcore.model import JobStatus
from local.gateway import LambdaContext
from stacks.constructs.runtime_env import lane_environment
from tests.adapters.support import LANES

INVOICE = b"Acme Corporation\nINVOICE\nInvoice number: INV-7\nTotal: $10.00\n"


@pytest.fixture
def clients(aws, boto_session):
    return AwsClients(boto_session.resource("dynamodb").Table(aws.table), boto_session.client("sqs"), boto_session.client("s3"))


@pytest.fixture
def intake_env(aws, monkeypatch):
    for key, value in {
        **lane_environment(LANES, {}), "STAGE": "test", "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket,
        "LANE_QUEUE_URLS": json.dumps(aws.queue_urls), "WEBHOOK_QUEUE_URL": aws.webhook_queue_url, "MODEL_ID": "claude-sonnet-4-5",
        "INTAKE_TENANT": "key-intake", "INTAKE_WEBHOOK_URL": "https://hooks.example.com/intake",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ANTHROPIC_SECRET_ARN", raising=False)
    lambda_handler.intake.cache_clear()
    yield
    lambda_handler.intake.cache_clear()


def notification(bucket: str, key: str, *, size: int, etag: str) -> dict:
    from urllib.parse import quote_plus

    return {"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag, "sequencer": "01"}}}]}


def sqs_event(*bodies: dict | str) -> dict:
    return {"Records": [{"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": b if isinstance(b, str) else json.dumps(b),
                         "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:intake", "awsRegion": "us-east-1"}
                        for i, b in enumerate(bodies)]}


def put(aws, clients, key: str, data: bytes) -> dict:
    etag = clients.s3.put_object(Bucket=aws.bucket, Key=key, Body=data)["ETag"]
    return notification(aws.bucket, key, size=len(data), etag=etag)


def jobs(clients) -> list:
    """The intake tenant's jobs, whole (a list entry holds what a list shows, not the input)."""
    store = DynamoJobStore(clients.table)
    return [store.get(job.job_id) for job in store.list_jobs("key-intake", status=None, limit=100, after=None)[0]]


def test_an_invoice_object_becomes_one_queued_job_however_often_it_is_notified(aws, clients, intake_env):
    event = put(aws, clients, "intake/invoice.extract/acme march.txt", INVOICE)
    answer = lambda_handler.handler(sqs_event(event, event, {"Event": "s3:TestEvent"}, "not json"), LambdaContext(60))
    assert answer == {"batchItemFailures": []}
    [job] = jobs(clients)
    assert job.status is JobStatus.QUEUED and job.task == "invoice.extract" and job.lane == "cpu"
    assert job.source == f"s3://{aws.bucket}/intake/invoice.extract/acme march.txt"
    assert job.input == {"text": INVOICE.decode()} and job.webhook is not None
    counts = clients.sqs.get_queue_attributes(QueueUrl=aws.queue_urls["cpu"], AttributeNames=["ApproximateNumberOfMessages"])
    assert counts["Attributes"]["ApproximateNumberOfMessages"] == "1"


def test_objects_that_cannot_run_become_failed_jobs(aws, clients, intake_env):
    events = [put(aws, clients, "intake/no.such.task/a.json", b"{}"), put(aws, clients, "intake/invoice.extract/x.txt", b"\xff\xfe")]
    assert lambda_handler.handler(sqs_event(*events), LambdaContext(60)) == {"batchItemFailures": []}
    failed = {job.source.rsplit("/", 2)[1]: job for job in jobs(clients)}
    assert {job.status for job in failed.values()} == {JobStatus.FAILED}
    assert "unknown task" in failed["no.such.task"].error["message"]
    assert "not UTF-8" in failed["invoice.extract"].error["message"]


def test_a_record_fails_alone_when_the_pipeline_cannot_do_its_work(aws, clients, intake_env):
    good = put(aws, clients, "intake/invoice.extract/ok.txt", INVOICE)
    gone = notification(aws.bucket, "intake/invoice.extract/deleted.txt", size=10, etag='"e"')  # S3 has no such object
    answer = lambda_handler.handler(sqs_event(good, gone), LambdaContext(60))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert len(jobs(clients)) == 1
