"""JobQueue over one SQS queue per lane. The message is a claim check: the job id, nothing more."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jobadapters.tracing import TRACEPARENT
from jobcore.errors import EnqueueError
from jobcore.limits import SQS_MAX_DELAY_S
from jobcore.model import Job
from jobcore.requests import well_formed_job_id

log = logging.getLogger(__name__)


class SqsJobQueue:
    def __init__(self, client: Any, urls: Mapping[str, str]):
        """``urls``: each queued lane's queue, by lane name."""
        self._client = client
        self._urls = dict(urls)

    def enqueue(self, job: Job, *, delay_s: int = 0) -> None:
        url = self._urls.get(job.lane)
        if not url:
            raise EnqueueError(f"no queue for the {job.lane} lane in this deployment")
        try:
            send(self._client, url, job, delay_s=delay_s)
        except (ClientError, BotoCoreError) as error:
            log.warning("the %s queue refused job %s: %s", job.lane, job.job_id, error)  # SQS's words: for the logs
            raise EnqueueError(f"the {job.lane} queue refused the job; retry shortly") from None


def send(client: Any, url: str, job: Job, *, delay_s: int = 0) -> None:
    """Send the job's message to the queue at ``url``, received no sooner than ``delay_s`` (capped at SQS's 900 s).

    Its message group is its tenant: on a standard queue that makes it an SQS fair queue, which delivers a quiet
    tenant's messages ahead of a tenant that dominates the messages in flight (docs/capacity.md)."""
    delay = max(0, min(int(delay_s), SQS_MAX_DELAY_S))
    client.send_message(QueueUrl=url, MessageBody=encode(job), MessageGroupId=message_group(job.tenant_id),
                        **({"DelaySeconds": delay} if delay else {}),
                        **({"MessageAttributes": trace_attributes(job.trace_parent)} if job.trace_parent else {}))


def message_group(tenant_id: str) -> str:
    """The tenant as an SQS message group id (1 to 128 printable ASCII characters); another tenant id is hashed."""
    if _GROUP.fullmatch(tenant_id):
        return tenant_id
    return "t-" + hashlib.sha256(tenant_id.encode()).hexdigest()[:40]


_GROUP = re.compile(r"[!-~]{1,128}")


def trace_attributes(traceparent: str) -> dict[str, Any]:
    return {TRACEPARENT: {"DataType": "String", "StringValue": traceparent}}


def traceparent_of(message: dict[str, Any]) -> str | None:
    """The trace context a received message carries, if any."""
    value = (message.get("MessageAttributes") or {}).get(TRACEPARENT) or {}
    return value.get("StringValue") or None


def encode(job: Job) -> str:
    return json.dumps({"job_id": job.job_id, "task": job.task})


def decode(body: str) -> str:
    """The job id of a message; ValueError for a message that is not ours, or whose ``job_id`` could be no
    job's id (empty, too long, odd characters: DynamoDB would refuse it as a key, failing the consumer)."""
    try:
        job_id = json.loads(body)["job_id"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"not a job message: {body[:80]!r}") from None
    if not isinstance(job_id, str):
        raise ValueError("job_id is not a string")
    if not well_formed_job_id(job_id):
        raise ValueError(f"job_id {job_id[:80]!r} is not a job id")
    return job_id


class SqsDeliveryQueue:
    """DeliveryQueue over the webhook queue: the message names the job and the attempt's due time."""

    def __init__(self, client: Any, url: str):
        self._client = client
        self._url = url

    def schedule(self, job_id: str, *, due_at: int, delay_s: int = 0) -> None:
        body = json.dumps({"job_id": job_id, "due_at": due_at})
        self._client.send_message(QueueUrl=self._url, MessageBody=body, DelaySeconds=int(delay_s))


def decode_hand_over(body: str) -> tuple[str, int | None]:
    """The job id and due time of a webhook hand-over; ValueError for a message that is not one."""
    try:
        message = json.loads(body)
        job_id, due_at = message["job_id"], message.get("due_at")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise ValueError(f"not a webhook hand-over: {body[:80]!r}") from None
    if (not isinstance(job_id, str) or not well_formed_job_id(job_id)
            or not (due_at is None or isinstance(due_at, int) and not isinstance(due_at, bool))):
        raise ValueError(f"not a webhook hand-over: {body[:80]!r}")
    return job_id, due_at


class SqsDeadLetters:
    """DeadLetters over one lane's dead-letter queue (for the sweeper)."""

    def __init__(self, client: Any, url: str):
        self._client = client
        self._url = url

    def receive(self) -> list[tuple[str | None, str, int]]:
        messages = self._client.receive_message(
            QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        letters = []
        for message in messages:
            try:
                job_id: str | None = decode(message["Body"])
            except ValueError:
                job_id = None  # poison: not a job message; deleted with nothing to settle
            letters.append((job_id, message["ReceiptHandle"], int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))))
        return letters

    def delete(self, receipt: str) -> None:
        self._client.delete_message(QueueUrl=self._url, ReceiptHandle=receipt)


class SqsBatchInbox:
    """BatchInbox over the batch lane's queue: what waits now (no long poll: a collector pass drains and goes)."""

    def __init__(self, client: Any, url: str):
        self._client = client
        self._url = url

    def receive(self, *, limit: int) -> list[tuple[str | None, str]]:
        messages = self._client.receive_message(
            QueueUrl=self._url, MaxNumberOfMessages=max(1, min(10, limit)), WaitTimeSeconds=0).get("Messages", [])
        received: list[tuple[str | None, str]] = []
        for message in messages:
            try:
                job_id: str | None = decode(message["Body"])
            except ValueError:
                job_id = None
            received.append((job_id, message["ReceiptHandle"]))
        return received

    def delete(self, receipt: str) -> None:
        self._client.delete_message(QueueUrl=self._url, ReceiptHandle=receipt)

    def release(self, receipt: str, *, delay_s: int) -> None:
        self._client.change_message_visibility(QueueUrl=self._url, ReceiptHandle=receipt,
                                               VisibilityTimeout=max(0, min(int(delay_s), 43_200)))
