"""SqsJobQueue and SqsDeliveryQueue against moto: each message is a claim check, and only ours decode."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from jobadapters.sqs import SqsDeliveryQueue, SqsJobQueue, decode, decode_hand_over
from jobcore.errors import EnqueueError
from tests.adapters.support import make_job, wait_until


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


def test_a_jobs_message_group_is_its_tenant_so_a_standard_queue_is_a_fair_queue(aws, sqs):
    queue = SqsJobQueue(sqs, {"cpu": aws.queue_urls["cpu"]})
    queue.enqueue(make_job("job_a", tenant_id="tenant-a"))
    queue.enqueue(make_job("job_z", tenant_id="tenant-zürich"), delay_s=0)

    messages = sqs.receive_message(QueueUrl=aws.queue_urls["cpu"], MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                   MessageSystemAttributeNames=["MessageGroupId"])["Messages"]
    groups = {decode(m["Body"]): m["Attributes"]["MessageGroupId"] for m in messages}
    assert groups["job_a"] == "tenant-a"
    assert groups["job_z"].startswith("t-") and groups["job_z"].isascii()  # a group id is printable ASCII


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
    '{"job_id": ""}',
    '{"job_id": "job 1"}',
    '{"job_id": "' + "j" * 65 + '"}',
    '{"Records": [{"eventSource": "aws:s3"}]}',
])
def test_decode_rejects_messages_that_are_not_ours(body):
    with pytest.raises(ValueError):
        decode(body)


# --- the webhook queue: hand-overs to the dispatcher ----------------------------------------------

def test_a_hand_over_names_the_job_and_the_attempts_due_time_and_nothing_else(aws, sqs):
    SqsDeliveryQueue(sqs, aws.webhook_queue_url).schedule("job_hook", due_at=1_700_000_005_000)

    [message] = receive_all(sqs, aws.webhook_queue_url)
    assert decode_hand_over(message["Body"]) == ("job_hook", 1_700_000_005_000)
    assert json.loads(message["Body"]) == {"job_id": "job_hook", "due_at": 1_700_000_005_000}


def test_a_hand_over_is_sent_with_its_delay_and_sqs_hides_it_that_long(aws, sqs):
    sent: list[dict] = []
    sqs.meta.events.register("provide-client-params.sqs.SendMessage", lambda params, **_: sent.append(dict(params)))

    SqsDeliveryQueue(sqs, aws.webhook_queue_url).schedule("job_later", due_at=1_700_000_001_000, delay_s=1)

    assert [(params["QueueUrl"], params["DelaySeconds"]) for params in sent] == [(aws.webhook_queue_url, 1)]
    assert receive_all(sqs, aws.webhook_queue_url) == []  # hidden for its delay (moto keeps real time)
    [message] = wait_until(lambda: receive_all(sqs, aws.webhook_queue_url), timeout_s=5, what="the delayed hand-over")
    assert decode_hand_over(message["Body"]) == ("job_later", 1_700_000_001_000)


def test_a_hand_over_to_a_queue_that_does_not_exist_raises_for_the_caller_to_log(aws, sqs):
    missing = aws.webhook_queue_url.replace("hybrid-local-webhooks", "no-such-queue")

    with pytest.raises(ClientError):
        SqsDeliveryQueue(sqs, missing).schedule("job_lost", due_at=1)


def test_decode_hand_over_accepts_a_hand_over_without_a_due_time():
    assert decode_hand_over('{"job_id": "job_any"}') == ("job_any", None)
    assert decode_hand_over('{"job_id": "job_any", "due_at": null, "extra": 1}') == ("job_any", None)


@pytest.mark.parametrize("body", [
    "not json",
    "",
    "null",
    "[1, 2]",
    '"job_1"',
    '{"id": "job_1"}',
    '{"job_id": 42}',
    '{"job_id": null, "due_at": 1}',
    '{"job_id": "", "due_at": 1}',
    '{"job_id": "job/../1"}',
    '{"job_id": "job_1", "due_at": "1700000000000"}',
    '{"job_id": "job_1", "due_at": 1.5}',
    '{"job_id": "job_1", "due_at": true}',
    '{"Records": [{"eventSource": "aws:s3"}]}',
])
def test_decode_hand_over_rejects_messages_that_are_not_hand_overs(body):
    with pytest.raises(ValueError, match="not a webhook hand-over"):
        decode_hand_over(body)
