"""Fixtures for the port contract tests: the adapter tests' moto fixtures (in-process, no endpoint,
the resources the CDK app deploys), and ``store``, each suite run over the fake and DynamoDB.

Only the adapter half of each suite asks for ``aws``, so the in-memory half never starts moto.
"""

from __future__ import annotations

import pytest

from jobadapters.dynamo import DynamoJobStore
from jobcore.ports import JobStore
from tests.adapters.conftest import aws, aws_env, boto_session, maker  # noqa: F401 - fixtures shared with the adapter tests
from tests.fakes import MemoryJobStore


@pytest.fixture(params=["memory", "dynamodb"])
def store(request) -> JobStore:
    """The JobStore under test: the in-memory fake, then DynamoDB on moto (every suite runs on both)."""
    if request.param == "memory":
        return MemoryJobStore()
    made, session = request.getfixturevalue("aws"), request.getfixturevalue("boto_session")
    return DynamoJobStore(session.resource("dynamodb").Table(made.table))
