"""Fixtures for the adapter tests: moto in-process (never a real endpoint), the Claude stand-in.

Everything AWS is ``moto.mock_aws`` in this process: boto3 clients made inside it, in any thread,
talk to moto. AWS_ENDPOINT_URL is removed so that nothing is sent to a moto *server* (or anywhere
else) by mistake. The anthropic SDK (httpx) and urllib are not intercepted by moto: they reach the
stand-in and the local HTTP servers over real sockets on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from jobadapters.dynamo import DynamoJobStore
from jobadapters.wiring import AwsClients
from local import resources
from local.claude_standin import ClaudeStandIn
from tests.adapters.support import LANES, MAX_RECEIVES

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    for key in (
        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE", "ANTHROPIC_API_KEY",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture(scope="session")
def boto_session():
    # One session for every test: a new one re-reads the service models (a quarter second each time).
    return boto3.Session(region_name=REGION)


class _Maker:
    """The clients that create each test's resources, made once (a client costs ~25 ms to make, and the resources of
    a test took four): moto's mock intercepts every client made after moto's import, so one made here serves each
    test's own mock. Never handed to a test, so nothing a test does to its clients outlives it."""

    def __init__(self, session: boto3.Session):
        self._session, self._clients = session, dict[str, Any]()

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service)
        return self._clients[service]


@pytest.fixture(scope="session")
def maker(boto_session) -> _Maker:
    return _Maker(boto_session)


@pytest.fixture
def aws(request, maker):
    """The table, bucket and each queued lane's queue (+ DLQ) exactly as the CDK app makes them, in moto: for
    ``LANES`` (tests.adapters.support), or the module's own ``AWS_LANES``."""
    # boto3's default session kept from test to test (moto's own setting): moto replaces it with none for each mock,
    # so every test's first client made a session again (~60 ms: the router's wiring, per test).
    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        yield resources.create(maker, lanes=getattr(request.module, "AWS_LANES", LANES), max_receives=MAX_RECEIVES)


@pytest.fixture
def clients(aws, boto_session):
    """boto3 clients on the moto resources, as the router and the worker make them."""
    return AwsClients(boto_session.resource("dynamodb").Table(aws.table), boto_session.client("sqs"), boto_session.client("s3"))


@pytest.fixture
def table(clients):
    """The jobs table (a boto3 Table resource) on moto."""
    return clients.table


@pytest.fixture
def store(table):
    """The job store over it, as the router and the workers make it."""
    return DynamoJobStore(table)


@pytest.fixture
def standin():
    with ClaudeStandIn() as server:
        yield server
