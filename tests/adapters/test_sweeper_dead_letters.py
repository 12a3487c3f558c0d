"""The sweeper's drain of a lane's dead-letter queue on moto (SQS, DynamoDB): a poison message never fails the run."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from jobadapters.dynamo import DynamoJobStore
from jobadapters.sqs import SqsDeadLetters, SqsJobQueue
from jobadapters.wiring import build_runner
from jobcore.model import JobStatus
from jobcore.sweeper import Sweeper
from tests.adapters.support import LANES, make_job

POISON = [
    '{"job_id": ""}',  # DynamoDB refuses an empty key: ValidationException, every run for 14 days
    '{"job_id": "' + "j" * 3000 + '"}',  # over DynamoDB's key size
    '{"job_id": 42}',
    '{"job_id": "job_never_made"}',
    "not json",
    '{"Records": []}',
]


def test_poison_dead_letters_are_counted_and_deleted_and_the_run_fails_the_real_job(aws, clients):
    store = DynamoJobStore(clients.table)
    with pytest.raises(ClientError, match="ValidationException"):
        clients.table.get_item(Key={"job_id": ""})  # what a lookup of the empty id would do to the run
    job = make_job("job_dead")
    store.create(job)
    dlq = aws.dlq_urls["cpu"]
    for body in (*POISON[:3], json.dumps({"job_id": job.job_id, "task": job.task}), *POISON[3:]):
        clients.sqs.send_message(QueueUrl=dlq, MessageBody=body)
    runner = build_runner(clients, aws.bucket, aws.webhook_queue_url, LANES, cost_model=None, role="sweeper")
    sweeper = Sweeper(runner=runner, queue=SqsJobQueue(clients.sqs, aws.queue_urls), max_attempts=5)

    report = sweeper.drain(SqsDeadLetters(clients.sqs, dlq), lane="cpu")

    assert report.poison == len(POISON) and report.dead_letters == len(POISON) + 1
    assert report.failed == [job.job_id] and store.get(job.job_id).status is JobStatus.FAILED
    attributes = clients.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert int(attributes["ApproximateNumberOfMessages"]) == int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 0
