"""SqsJobQueue against moto: the message is a claim check, and only ours decode."""

from __future__ import annotations

import json

import pytest

from jobadapters.sqs import SqsJobQueue, decode
from jobcore.errors import EnqueueError
from tests.adapters.support import make_job


@pytest.fixture
def sqs(clients):
    return clients.sqs


def receive_all(sqs, url):
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])


def test_enqueue_sends_a_claim_check_with_the_job_id_and_never_the_input(aws, sqs):
    queue = SqsJobQueue(sqs, {"cpu": aws.queue_urls["cpu"]})
    job = make_job("job_claim", input={"documents": [{"id": "secret", "text": "the customer's document"}]})

    queue.enqueue(job)

    [message] = receive_all(sqs, aws.queue_urls["cpu"])
    assert decode(message["Body"]) == "job_claim"
    body = json.loads(message["Body"])
    assert set(body) <= {"job_id", "task"}
    assert "customer's document" not in message["Body"]


def test_enqueue_to_a_lane_without_a_queue_raises_enqueue_error_and_sends_nothing(aws, sqs):
    queue = SqsJobQueue(sqs, {"cpu": aws.queue_urls["cpu"]})

    with pytest.raises(EnqueueError, match="gpu"):
        queue.enqueue(make_job("job_gpu", lane="gpu"))
    with pytest.raises(EnqueueError, match="inline"):
        queue.enqueue(make_job("job_inline", lane="inline"))

    assert receive_all(sqs, aws.queue_urls["cpu"]) == []


def test_enqueue_to_a_queue_sqs_refuses_raises_enqueue_error(aws, sqs):
    missing = aws.queue_urls["cpu"].replace("hybrid-local-cpu", "no-such-queue")
    queue = SqsJobQueue(sqs, {"cpu": missing})

    with pytest.raises(EnqueueError, match="refused"):
        queue.enqueue(make_job("job_lost"))


@pytest.mark.parametrize("body", [
    "not json",
    "",
    "null",
    "[1, 2]",
    '"job_1"',
    '{"id": "job_1"}',
    '{"job_id": 42}',
    '{"job_id": null}',
    '{"Records": [{"eventSource": "aws:s3"}]}',
])
def test_decode_rejects_messages_that_are_not_ours(body):
    with pytest.raises(ValueError):
        decode(body)
