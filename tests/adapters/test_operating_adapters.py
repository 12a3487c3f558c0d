"""The operating adapters on moto: usage counters in the jobs table, the trace context in SQS message attributes,
and the OpenTelemetry SDK loaded only where something exports."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from jobadapters.dynamo import DynamoJobStore, DynamoUsageStore
from jobadapters.observer import Emf, Telemetry
from jobadapters.sqs import SqsJobQueue, traceparent_of
from jobadapters.tracing import TRACEPARENT
from jobcore.errors import ConflictError, StoreUnavailableError
from jobcore.model import JobStatus
from jobcore.usage import UsageEntry
from tests.adapters.support import make_job

ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT_VALUE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def entry(tenant: str, day: str, **counts: int) -> UsageEntry:
    return UsageEntry(tenant_id=tenant, day=day, task="claude.messages", lane="inline", counts=counts)


def test_usage_counters_add_up_per_tenant_and_day_and_are_read_in_one_call(aws, clients):
    store = DynamoUsageStore(clients.table)
    store.add(entry("t1", "2026-03-01", jobs_succeeded=1, input_tokens=10, cost_micro_usd=1500))
    store.add(entry("t1", "2026-03-01", jobs_failed=1, input_tokens=5, cost_micro_usd=250))
    store.add(entry("t1", "2026-03-02", jobs_succeeded=1, cost_micro_usd=1))
    store.add(entry("t2", "2026-03-01", jobs_succeeded=1, cost_micro_usd=99))

    read = store.read("t1", ["2026-03-01", "2026-03-02", "2026-03-03"])

    assert read == {
        "2026-03-01": {"claude.messages|inline|jobs_succeeded": 1, "claude.messages|inline|jobs_failed": 1,
                       "claude.messages|inline|input_tokens": 15, "claude.messages|inline|cost_micro_usd": 1750},
        "2026-03-02": {"claude.messages|inline|jobs_succeeded": 1, "claude.messages|inline|cost_micro_usd": 1},
    }
    assert store.read("t3", ["2026-03-01"]) == {}


def test_usage_items_are_never_read_as_jobs_nor_listed_as_a_tenants(aws, clients):
    DynamoUsageStore(clients.table).add(entry("t1", "2026-03-01", jobs_succeeded=1))
    jobs = DynamoJobStore(clients.table)
    assert jobs.get(DynamoUsageStore.key("t1", "2026-03-01")) is None
    assert jobs.list_jobs("t1", status=None, limit=10, after=None) == ([], None)


def test_a_jobs_message_carries_its_trace_context(aws, clients):
    queue = SqsJobQueue(clients.sqs, aws.queue_urls)
    queue.enqueue(replace(make_job(lane="cpu"), trace_parent=TRACEPARENT_VALUE))
    queue.enqueue(make_job(lane="cpu"))  # a job recorded before tracing: no attribute at all
    messages = clients.sqs.receive_message(QueueUrl=aws.queue_urls["cpu"], MaxNumberOfMessages=10,
                                           MessageAttributeNames=[TRACEPARENT]).get("Messages", [])
    assert sorted(map(str, (traceparent_of(message) for message in messages))) == [TRACEPARENT_VALUE, "None"]


def test_emf_lines_name_each_metric_with_the_stage_dimension():
    stream = io.StringIO()
    telemetry = Telemetry(stage="prod", emf=Emf(stream=stream, clock_ms=lambda: 1))
    job = replace(make_job(lane="cpu"), status=JobStatus.SUCCEEDED, started_at=1000, finished_at=3500,
                  cost={"actual": {"total": 0.0042}})
    telemetry.finished(job)
    (document,) = map(json.loads, stream.getvalue().splitlines())
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["stage", "task", "lane", "outcome"]]
    assert (document["stage"], document["outcome"], document["RunTimeMs"], document["CostUsd"]) == ("prod", "succeeded", 2500, 0.0042)


PROBE = """
import sys
import router.handler
from jobadapters.settings import ObservabilitySettings
from jobadapters.tracing import start
assert start("router", ObservabilitySettings(), stage="dev") is None
assert "opentelemetry.sdk" not in sys.modules, "the SDK was imported without an exporter"
assert start("router", ObservabilitySettings(traces_file=sys.argv[1]), stage="dev") is not None
assert "opentelemetry.sdk.trace" in sys.modules
"""


def test_the_opentelemetry_sdk_is_imported_only_when_something_exports(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."])}
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "spans")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# --- the terminal write counts the job's usage in the same transaction -----------------------------------------


def terminal(job, *, version: int):
    return replace(job, status=JobStatus.SUCCEEDED, version=version, finished_at=job.created_at + 1000)


def test_a_terminal_write_adds_the_usage_in_the_same_transaction_and_a_lost_one_adds_nothing(aws, clients):
    """GIVEN a running job WHEN its terminal write carries its usage THEN the job and its tenant's counters change
    together; a second terminal write of the same version (another runner's, or the retry of a process that died
    after the first landed) is refused whole: the job is counted once."""
    store, counters = DynamoJobStore(clients.table), DynamoUsageStore(clients.table)
    job = replace(make_job(lane="cpu"), status=JobStatus.RUNNING, version=3)
    store.create(job)
    used = entry(job.tenant_id, "2026-03-01", jobs_succeeded=1, input_tokens=40, cost_micro_usd=700)

    store.save(terminal(job, version=4), expected_version=3, usage=used)
    with pytest.raises(ConflictError):
        store.save(terminal(job, version=4), expected_version=3, usage=used)

    assert store.get(job.job_id).status is JobStatus.SUCCEEDED
    assert counters.read(job.tenant_id, ["2026-03-01"]) == {"2026-03-01": {
        "claude.messages|inline|jobs_succeeded": 1, "claude.messages|inline|input_tokens": 40,
        "claude.messages|inline|cost_micro_usd": 700}}


def test_a_terminal_write_whose_usage_add_fails_leaves_the_job_unwritten(aws, clients):
    """The usage ADD fails (its counter holds a string, so ADD of a number is invalid): the whole transaction is
    cancelled, the job stays as it was, so the runner's retry counts it later, once."""
    store = DynamoJobStore(clients.table)
    job = replace(make_job(lane="cpu"), status=JobStatus.RUNNING, version=3)
    store.create(job)
    clients.table.put_item(Item={"job_id": DynamoUsageStore.key(job.tenant_id, "2026-03-01"), "usage_counters": True,
                                 "claude.messages|inline|jobs_succeeded": "not a number"})
    with pytest.raises(ClientError, match="TransactWriteItems"):
        store.save(terminal(job, version=4), expected_version=3, usage=entry(job.tenant_id, "2026-03-01", jobs_succeeded=1))
    assert store.get(job.job_id).status is JobStatus.RUNNING and store.get(job.job_id).version == 3
    assert clients.table.get_item(Key={"job_id": DynamoUsageStore.key(job.tenant_id, "2026-03-01")})["Item"][
        "claude.messages|inline|jobs_succeeded"] == "not a number"


class ContendedClient:
    """The table's client with TransactWriteItems refused (TransactionConflict) ``refusals`` times first."""

    def __init__(self, client, refusals: int) -> None:
        self._client, self.refusals, self.calls = client, refusals, 0

    def transact_write_items(self, **kwargs):
        self.calls += 1
        if self.calls <= self.refusals:
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                               "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]},
                              "TransactWriteItems")
        return self._client.transact_write_items(**kwargs)


class ContendedTable:
    def __init__(self, table, refusals: int) -> None:
        self._table, self.name = table, table.name
        self.client = ContendedClient(table.meta.client, refusals)
        self.meta = type("Meta", (), {"client": self.client})()

    def __getattr__(self, name):
        return getattr(self._table, name)


def test_a_terminal_write_refused_by_a_concurrent_one_on_the_counters_is_tried_again_then_reported_unavailable(aws, clients):
    job = replace(make_job(lane="cpu"), status=JobStatus.RUNNING, version=3)
    DynamoJobStore(clients.table).create(job)
    used = entry(job.tenant_id, "2026-03-01", jobs_succeeded=1)

    contended = ContendedTable(clients.table, refusals=2)
    DynamoJobStore(contended).save(terminal(job, version=4), expected_version=3, usage=used)
    assert contended.client.calls == 3
    assert DynamoUsageStore(clients.table).read(job.tenant_id, ["2026-03-01"])["2026-03-01"] == {
        "claude.messages|inline|jobs_succeeded": 1}

    other = replace(make_job("job_2", lane="cpu"), status=JobStatus.RUNNING, version=3)
    DynamoJobStore(clients.table).create(other)
    always = ContendedTable(clients.table, refusals=100)
    with pytest.raises(StoreUnavailableError):
        DynamoJobStore(always).save(terminal(other, version=4), expected_version=3, usage=used)
    assert always.client.calls == 4 and DynamoJobStore(clients.table).get(other.job_id).status is JobStatus.RUNNING
