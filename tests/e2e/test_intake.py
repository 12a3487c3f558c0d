"""The S3 intake end to end: objects put under ``intake/<task>/`` of the local bucket, moto's S3 notification to the
intake queue, the local intake process (the intake Lambda's code), the lanes; the jobs seen through the API with the
local key, whose tenant owns the intake locally."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import boto3
import pytest

from local import client, put_intake
from tests.e2e.harness import wait_until

INVOICE = (Path(__file__).resolve().parents[2] / "local" / "samples" / "invoice_acme.txt").read_bytes()


@pytest.fixture(scope="module")
def aws(pipeline):
    options = {"endpoint_url": pipeline["aws_endpoint"], "region_name": "us-east-1", "aws_access_key_id": "testing",
               "aws_secret_access_key": "testing"}
    return boto3.client("s3", **options), boto3.client("sqs", **options)


def by_source(pipeline, source: str) -> list[dict]:
    status, _, page = client.call("GET", f"{pipeline['api_url']}/v1/jobs?{urllib.parse.urlencode({'source': source})}")
    assert status == 200, page
    return page["jobs"]


def finished(pipeline, source: str) -> list[dict]:
    def done():
        jobs = by_source(pipeline, source)
        return jobs if jobs and all(job["status"] in {"succeeded", "failed"} for job in jobs) else None
    return wait_until(done, timeout_s=60, what=f"the job of {source}")


def put(pipeline, aws, key: str, body: bytes) -> str:
    aws[0].put_object(Bucket=pipeline["bucket"], Key=key, Body=body)
    return f"s3://{pipeline['bucket']}/{key}"


def test_an_invoice_put_in_the_intake_becomes_a_succeeded_job_found_by_its_source(pipeline, aws):
    source = put(pipeline, aws, "intake/invoice.extract/acme.txt", INVOICE)
    [job] = finished(pipeline, source)
    assert job["status"] == "succeeded", job
    assert job["task"] == "invoice.extract" and job["mode"] == "async" and job["source"] == source
    assert "S3 intake" in job["route"]["reason"]
    _, _, full = client.call("GET", f"{pipeline['api_url']}/v1/jobs/{job['id']}")
    assert full["result"]["invoice"]["vendor"] == "Acme Corporation"
    _, _, listed = client.call("GET", f"{pipeline['api_url']}/v1/jobs?limit=100")
    assert job["id"] in {j["id"] for j in listed["jobs"]}  # the local key's tenant owns the intake


def test_the_same_object_notified_twice_makes_one_job(pipeline, aws):
    s3, sqs = aws
    key = "intake/invoice.extract/twice.txt"
    source = put(pipeline, aws, key, INVOICE)
    [first] = finished(pipeline, source)
    etag = s3.head_object(Bucket=pipeline["bucket"], Key=key)["ETag"].strip('"')
    again = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": pipeline["bucket"]},
                                                                   "object": {"key": key, "size": len(INVOICE), "eTag": etag}}}]}
    sqs.send_message(QueueUrl=pipeline["intake_queue"], MessageBody=json.dumps(again))
    wait_until(lambda: int(sqs.get_queue_attributes(QueueUrl=pipeline["intake_queue"], AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]["ApproximateNumberOfMessages"]) == 0,
        timeout_s=30, what="the second notification taken")
    assert [job["id"] for job in by_source(pipeline, source)] == [first["id"]]


@pytest.mark.parametrize(("key", "body", "why"), [
    ("intake/no.such.task/a.json", b"{}", "unknown task"),
    ("intake/invoice.extract/latin1.txt", "Société Générale, total 12 €".encode("latin-1", errors="replace"), "not UTF-8"),
])
def test_an_object_that_cannot_run_becomes_a_failed_job_with_the_reason(pipeline, aws, key, body, why):
    source = put(pipeline, aws, key, body)
    [job] = finished(pipeline, source)
    assert job["status"] == "failed" and job["error"]["type"] == "intake_rejected"
    assert why in job["error"]["message"] and source in job["error"]["message"]


def test_the_readme_s_intake_command_puts_a_file_and_shows_its_job(pipeline, capsys):
    """``make intake`` (``python -m local.put_intake``): no AWS CLI, no credentials; its exit status is the job's."""
    code = put_intake.main(["--task", "invoice.extract", "--name", "readme.txt", "--aws-endpoint", pipeline["aws_endpoint"],
                            "--api-url", pipeline["api_url"], "--wait", "60"])
    out = capsys.readouterr().out
    source = f"s3://{pipeline['bucket']}/intake/invoice.extract/readme.txt"
    (job,) = by_source(pipeline, source)
    assert code == 0 and out.splitlines() == [f"put {source}", f"{job['id']} succeeded, route {job['route']['reason']}"]
