"""The local AWS on two processes (``Options.dynamodb_process``, the capacity bench's): DynamoDB in a moto process
of its own, every other service in the pipeline's; boto3 in every local process finds each by its endpoint variable,
and a stop ends both and puts the environment back."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import boto3
import pytest

from local.pipeline import REGION, LocalPipeline, Options

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB")


def tables_at(endpoint: str) -> list[str]:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION).list_tables()["TableNames"]


def refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError:
        return False  # it answered
    except OSError:
        return True
    return False


@pytest.fixture
def clean_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("clean_endpoints")
def test_dynamodb_is_served_by_its_own_process_and_the_rest_by_this_one():
    pipeline = LocalPipeline(Options(dynamodb_process=True))
    aws = pipeline._start_moto()
    dynamodb = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    try:
        assert os.environ["AWS_ENDPOINT_URL"] == aws and dynamodb != aws
        # A client configured as the pipeline's processes configure theirs (by the environment alone).
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName="jobs-two-processes", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="results-two-processes")
        assert "jobs-two-processes" in tables_at(dynamodb)
        assert "jobs-two-processes" not in tables_at(aws)
        buckets = boto3.client("s3", endpoint_url=aws, region_name=REGION).list_buckets()["Buckets"]
        assert "results-two-processes" in [bucket["Name"] for bucket in buckets]
    finally:
        pipeline.stop()
    assert refused(dynamodb + "/moto-api/data.json")
    assert all(name not in os.environ for name in ENDPOINT_VARIABLES)


@pytest.mark.usefixtures("clean_endpoints")
def test_by_default_one_process_serves_every_service():
    pipeline = LocalPipeline(Options())
    aws = pipeline._start_moto()
    try:
        assert "AWS_ENDPOINT_URL_DYNAMODB" not in os.environ and os.environ["AWS_ENDPOINT_URL"] == aws
    finally:
        pipeline.stop()
