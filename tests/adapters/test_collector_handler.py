"""The batch collector's Lambda entry point (``collector.handler``): DynamoDB, S3 and the batch lane's queue in
moto, the Message Batches API served by the Claude stand-in, two scheduled invocations end to end; and a
misconfigured environment failing the invocation before anything is touched."""

from __future__ import annotations

import time

import pytest
from collector import handler as lambda_handler

from jobadapters import schema
from jobadapters.dynamo import DynamoBatchStore, DynamoJobStore
from jobadapters.s3 import S3BlobStore
from jobadapters.settings import ConfigError
from jobadapters.sqs import SqsJobQueue
from jobcore.model import Job, JobStatus, Mode
from jobcore.views import render
from local.claude_standin import ClaudeStandIn
from local.gateway import LambdaContext
from stacks.constructs.runtime_env import lane_environment
from tests.adapters.support import queue_counts
from tests.fakes import make_lanes

# The adapter tests' lanes, with the batch lane enabled.
LANES = make_lanes(inline_budget_s=10, cpu_time_limit_s=300, gpu_enabled=False, batch=True)
AWS_LANES = LANES  # the conftest's aws fixture makes these lanes' queues
SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event"}


def wall_ms() -> int:
    return time.time_ns() // 1_000_000  # the stand-in times batches on the wall clock, as does the collector


@pytest.fixture
def standin():
    with ClaudeStandIn(batch_delay_s=0.0) as server:  # a batch ends as soon as it is made
        yield server


@pytest.fixture
def collector_env(aws, standin, monkeypatch):
    for key, value in {
        **lane_environment(LANES, {}), "STAGE": "test", "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket,
        "BATCH_QUEUE_URL": aws.queue_urls["batch"], "WEBHOOK_QUEUE_URL": aws.webhook_queue_url,
        "MODEL_ID": "claude-sonnet-4-5", "ANTHROPIC_BASE_URL": standin.base_url,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("ANTHROPIC_SECRET_ARN", "BATCH_WINDOW_S", "BATCH_MAX_ATTEMPTS"):
        monkeypatch.delenv(key, raising=False)
    lambda_handler.collector.cache_clear()
    yield
    lambda_handler.collector.cache_clear()


def queue_batch_job(aws, clients, job_id: str = "job_" + "b" * 32) -> Job:
    """A job the router routed to the batch lane: stored queued, its message on the batch lane's queue."""
    now = wall_ms()
    job = Job(job_id=job_id, tenant_id="tenant-a", task="claude.messages", status=JobStatus.QUEUED, lane="batch",
              route_reason="batch: the client asked for the batch lane", mode=Mode.BATCH, created_at=now, updated_at=now,
              input={"max_tokens": 50, "messages": [{"role": "user", "content": "What is a batch? Answer briefly."}]})
    DynamoJobStore(clients.table).create(job)
    SqsJobQueue(clients.sqs, {"batch": aws.queue_urls["batch"]}).enqueue(job)
    return job


def test_the_local_batch_queue_is_held_only_within_a_pass_as_the_cdk_app_makes_it(aws, clients):
    attributes = clients.sqs.get_queue_attributes(QueueUrl=aws.queue_urls["batch"],
                                                  AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert int(attributes["VisibilityTimeout"]) == schema.BATCH_QUEUE_VISIBILITY_S  # not the lane's 24 h (over SQS's 12 h)


def test_a_first_pass_creates_a_batch_and_a_later_one_settles_it(aws, clients, standin, collector_env):
    job = queue_batch_job(aws, clients)
    store, batches = DynamoJobStore(clients.table), DynamoBatchStore(clients.table)

    first = lambda_handler.handler(SCHEDULED, LambdaContext(300))

    assert (first["batches_created"], first["jobs_sent"], first["requests_sent"]) == (1, 1, 1)
    assert first["succeeded"] == 0 and first["open_batches"] == 1 and first["errors"] == 0
    [batch_id] = batches.open_batches()
    sent = store.get(job.job_id)
    assert sent is not None and (sent.status, sent.batch_id, sent.batch_attempts) == (JobStatus.RUNNING, batch_id, 1)
    assert standin.stats()["batches"]["requests"] == {batch_id: 1}
    assert queue_counts(clients.sqs, aws.queue_urls["batch"]) == (0, 0)  # its message deleted

    second = lambda_handler.handler(SCHEDULED, LambdaContext(300))

    assert (second["batches_ended"], second["succeeded"], second["batches_created"]) == (1, 1, 0)
    assert second["open_batches"] == 0 and second["failed"] == 0 and second["errors"] == 0
    done = store.get(job.job_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.batch_id == batch_id
    assert done.usage is not None and done.usage.model_calls == 1
    result = render(done, S3BlobStore(clients.s3, aws.bucket))["result"]  # in the item, or in S3 if large
    assert "Summary: What is a batch?" in str(result)
    assert batches.open_batches() == [] and batches.get_batch(batch_id).status == "done"
    assert standin.stats()["batches"]["created"] == 1

    third = lambda_handler.handler(SCHEDULED, LambdaContext(300))  # nothing left to do
    assert (third["batches_created"], third["batches_ended"], third["succeeded"]) == (0, 0, 0)


def _batch_lane_disabled() -> dict[str, str]:
    return lane_environment(make_lanes(inline_budget_s=10, cpu_time_limit_s=300, gpu_enabled=False, batch=True,
                                       batch_enabled=False), {})


# (variables to set, variables to remove, what the error names)
BAD_ENVIRONMENTS = {
    "no batch queue": ({}, ["BATCH_QUEUE_URL"], "BATCH_QUEUE_URL"),
    "no jobs table": ({}, ["JOBS_TABLE"], "JOBS_TABLE"),
    "LANES missing": ({}, ["LANES"], "LANES"),
    "the batch lane disabled": (_batch_lane_disabled(), [], "batch lane"),
    "too many attempts": ({"BATCH_MAX_ATTEMPTS": "99"}, [], "BATCH_MAX_ATTEMPTS"),
    "a window that is not a number": ({"BATCH_WINDOW_S": "soon"}, [], "BATCH_WINDOW_S"),
}


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")  # the failed invocations add none
@pytest.mark.parametrize(("changes", "removed", "named"), BAD_ENVIRONMENTS.values(), ids=BAD_ENVIRONMENTS.keys())
def test_a_collector_whose_settings_are_refused_fails_shut_and_touches_nothing(
    aws, clients, standin, collector_env, monkeypatch, changes, removed, named,
):
    """GIVEN an environment CollectorSettings.from_env refuses
    WHEN the schedule invokes the collector
    THEN the invocation fails (the Lambda's Errors alarm) naming the variable, no client is made, no batch is sent and
    the queued job and its message stay as they were; once the environment is right the next invocation works."""
    job = queue_batch_job(aws, clients)
    for key in removed:
        monkeypatch.delenv(key)
    for key, value in changes.items():
        monkeypatch.setenv(key, value)
    made: list[str] = []
    real_create = lambda_handler.AwsClients.create
    monkeypatch.setattr(lambda_handler.AwsClients, "create", classmethod(lambda cls, table: made.append(table)))
    lambda_handler.collector.cache_clear()

    for _ in range(2):  # every invocation, not just the first: a refused setting is never cached
        with pytest.raises(ConfigError, match=named):
            lambda_handler.handler(SCHEDULED, LambdaContext(300))

    assert made == []
    assert standin.stats()["requests"] == 0 and standin.stats()["batches"]["created"] == 0
    assert DynamoJobStore(clients.table).get(job.job_id) == job
    assert DynamoBatchStore(clients.table).open_batches() == []
    assert queue_counts(clients.sqs, aws.queue_urls["batch"]) == (1, 0)

    # The operator fixes the environment (and the clients are real again).
    monkeypatch.setattr(lambda_handler.AwsClients, "create", real_create)
    for key, value in {**lane_environment(LANES, {}), "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket,
                       "BATCH_QUEUE_URL": aws.queue_urls["batch"], "WEBHOOK_QUEUE_URL": aws.webhook_queue_url,
                       "ANTHROPIC_BASE_URL": standin.base_url}.items():
        monkeypatch.setenv(key, value)
    for key in ("BATCH_WINDOW_S", "BATCH_MAX_ATTEMPTS", "ANTHROPIC_SECRET_ARN"):
        monkeypatch.delenv(key, raising=False)
    assert lambda_handler.handler(SCHEDULED, LambdaContext(300))["batches_created"] == 1
