"""The SQS fair-queue emulation in moto: a quiet group's message is received before a noisy group's backlog."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from local import fair_queues


@pytest.fixture
def sqs():
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        yield client, client.create_queue(QueueName="lane")["QueueUrl"]


def _send(client, url, group: str | None, n: int) -> None:
    for i in range(n):
        client.send_message(QueueUrl=url, MessageBody=f"{group}-{i}", **({"MessageGroupId": group} if group else {}))


def _receive(client, url, n: int) -> list[str]:
    got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=n, VisibilityTimeout=60)
    return [m["Body"] for m in got.get("Messages", [])]


def test_a_quiet_groups_message_is_received_before_a_noisy_groups_backlog(sqs):
    client, url = sqs
    _send(client, url, "A", 30)
    with fair_queues.fair_queues(noisy_min_in_flight=1):
        assert _receive(client, url, 4) == ["A-0", "A-1", "A-2", "A-3"]  # A alone: its messages, oldest first
        _send(client, url, "B", 2)  # behind A's 26 visible messages
        assert _receive(client, url, 1) == ["B-0"]
        # A has 4 in flight, B 1: B goes first while it has fewer in flight.
        assert _receive(client, url, 3) == ["B-1", "A-4", "A-5"]


def test_a_receive_of_many_takes_turns_between_groups(sqs):
    client, url = sqs
    _send(client, url, "A", 10)
    _send(client, url, "B", 3)
    with fair_queues.fair_queues(noisy_min_in_flight=1):
        got = _receive(client, url, 8)
    assert got[:6] == ["A-0", "B-0", "A-1", "B-1", "A-2", "B-2"]
    assert got[6:] == ["A-3", "A-4"]


def test_a_group_under_the_noisy_threshold_is_not_held_back(sqs):
    client, url = sqs
    _send(client, url, "A", 10)
    with fair_queues.fair_queues():  # AWS's threshold: 30 in flight
        assert len(_receive(client, url, 5)) == 5
        _send(client, url, "B", 1)
        # A has 5 in flight, under 30: it is not noisy, so its older messages come first.
        assert _receive(client, url, 5) == ["A-5", "A-6", "A-7", "A-8", "A-9"]
        assert _receive(client, url, 1) == ["B-0"]


def test_messages_without_a_group_are_each_a_tenant_and_nothing_is_lost(sqs):
    client, url = sqs
    _send(client, url, "A", 5)
    _send(client, url, None, 2)
    with fair_queues.fair_queues(noisy_min_in_flight=1):
        got = _receive(client, url, 10)
    assert sorted(got) == sorted([f"A-{i}" for i in range(5)] + ["None-0", "None-1"])
    assert got[:3] == ["A-0", "None-0", "None-1"]


def test_uninstalled_moto_delivers_oldest_first_again(sqs):
    client, url = sqs
    with fair_queues.fair_queues(noisy_min_in_flight=1):
        pass
    _send(client, url, "A", 3)
    _receive(client, url, 1)
    _send(client, url, "B", 1)
    assert _receive(client, url, 1) == ["A-1"]


def test_fifo_queues_keep_their_order(sqs):
    client, _ = sqs
    url = client.create_queue(QueueName="lane.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    _send(client, url, "A", 3)
    _send(client, url, "B", 1)
    with fair_queues.fair_queues(noisy_min_in_flight=1):
        assert _receive(client, url, 10) == ["A-0", "A-1", "A-2", "B-0"]
