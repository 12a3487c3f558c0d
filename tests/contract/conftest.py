"""Fixtures for the port contract tests: moto in-process, with the resources the CDK app deploys.

Only the adapter half of each suite asks for ``aws``, so the in-memory half never starts moto.
Like tests/adapters/conftest.py: AWS_ENDPOINT_URL is removed so that nothing reaches a moto server
(or anything else) by mistake; every boto3 call made inside ``mock_aws`` stays in this process.
"""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from jobadapters.dynamo import DynamoJobStore
from jobcore.ports import JobStore
from local import resources
from tests.fakes import MemoryJobStore, make_lanes

REGION = "us-east-1"
# One queued lane with a queue (cpu); the GPU lane is disabled, so it has none.
LANES = make_lanes(gpu_enabled=False, cpu_time_limit_s=300)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture(scope="session")
def boto_session():
    return boto3.Session(region_name=REGION)


@pytest.fixture
def aws(boto_session):
    """The table, bucket and cpu queue (+ DLQ), made in moto by the local runtime's ``resources.create``."""
    with mock_aws():
        yield resources.create(boto_session, lanes=LANES, max_receives=5)


@pytest.fixture(params=["memory", "dynamodb"])
def store(request) -> JobStore:
    """The JobStore under test: the in-memory fake, then DynamoDB on moto (every suite runs on both)."""
    if request.param == "memory":
        return MemoryJobStore()
    aws, session = request.getfixturevalue("aws"), request.getfixturevalue("boto_session")
    return DynamoJobStore(session.resource("dynamodb").Table(aws.table))
