"""The webhook dispatcher end to end: DynamoDB, S3 and the webhook queue in moto, real HTTP receivers on
127.0.0.1, and a fake clock for the schedule (nothing here sleeps for a retry).

SQS (and moto) hide a message for its ``DelaySeconds`` in real time, so :class:`WebhookQueue` lets every
SendMessage of the adapter go through with no delay and records the delay it asked for: the driver
(:func:`run_until_settled`) consumes each hand-over when the fake clock reaches the time SQS would have
delivered it, and runs the sweep on its schedule (a minute by default), as the Lambda's event source and
its EventBridge schedule do in AWS.

Receivers verify signatures against wall time (Standard Webhooks allows 5 minutes either way), so the
tests whose delivered attempt is hours into the schedule start the fake clock that far in the past.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import heapq
import json
import logging
import math
import socket
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError
from standardwebhooks import Webhook as Verifier

from dispatcher import handler as lambda_handler
from jobadapters.dynamo import DynamoJobStore
from jobadapters.s3 import S3BlobStore
from jobadapters.settings import DispatcherSettings
from jobadapters.sqs import SqsDeliveryQueue, decode_hand_over
from jobadapters.webhook_sender import HttpWebhookSender
from jobadapters.wiring import build_dispatcher
from jobcore.context import JobContext
from jobcore.deliveries import DEFAULT_GAPS_S, HANDOVER_GRACE_MS, DeliveryState, RetrySchedule, claim
from jobcore.dispatch import Dispatcher, body_key
from jobcore.model import Job, JobStatus, Usage, Webhook
from jobcore.runner import JobRunner
from jobcore.tasks import TaskResult
from jobcore.views import deliveries_view, job_view, render
from local.gateway import LambdaContext
from local.webhook_receiver import WebhookReceiver
from tests.adapters.support import LANES, RecordingServer, make_job
from tests.fakes import FakeClock, make_job_for_delivery

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GAPS_MS = [int(gap * 1000) for gap in DEFAULT_GAPS_S]  # Standard Webhooks' schedule, exact with draw=0.5
SQS_MAX_DELAY_MS = 900_000
SWEEP_EVERY_MS = 60_000  # the sweep's default schedule (WEBHOOK_SWEEP_EVERY_S)
SEQ = "test-hand-over"  # the message attribute naming the recorded hand-over


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the webhook queue and the driver -----------------------------------------------------------

@dataclass(order=True)
class HandOver:
    """One SendMessage of SqsDeliveryQueue, as the test recorded it."""

    visible_at: int  # fake ms: when SQS would deliver it (sent + DelaySeconds)
    seq: int
    job_id: str = field(compare=False)
    due_at: int | None = field(compare=False)
    delay_s: int = field(compare=False)
    by: str = field(compare=False)  # who sent it: "runner", "dispatcher" (after an attempt) or "sweep"


class WebhookQueue:
    def __init__(self, sqs: Any, url: str, clock: FakeClock):
        self.sqs, self.url, self.clock = sqs, url, clock
        self.sent: list[HandOver] = []
        self.sender = "runner"
        self._taken = 0
        sqs.meta.events.register("provide-client-params.sqs.SendMessage", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> dict[str, Any] | None:
        if params.get("QueueUrl") != self.url:
            return None
        job_id, due_at = decode_hand_over(params["MessageBody"])
        delay_s = params.get("DelaySeconds", 0)
        hand = HandOver(self.clock.ms() + delay_s * 1000, len(self.sent), job_id, due_at, delay_s, self.sender)
        self.sent.append(hand)
        attributes = {**params.get("MessageAttributes", {}), SEQ: {"DataType": "Number", "StringValue": str(hand.seq)}}
        return {**params, "DelaySeconds": 0, "MessageAttributes": attributes}

    def take(self) -> list[HandOver]:
        """Every message now on the queue, each received once and deleted, as the hand-over it records."""
        taken: list[HandOver] = []
        if self._taken == len(self.sent):
            return taken  # nothing sent since the last look (every message taken is deleted)
        self._taken = len(self.sent)
        while messages := self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=[SEQ],
        ).get("Messages"):
            for message in messages:
                hand = self.sent[int(message["MessageAttributes"][SEQ]["StringValue"])]
                assert decode_hand_over(message["Body"]) == (hand.job_id, hand.due_at)
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
                taken.append(hand)
        return taken

    def by(self, sender: str) -> list[HandOver]:
        return [hand for hand in self.sent if hand.by == sender]


@dataclass
class Rig:
    aws: Any
    clients: Any
    clock: FakeClock
    queue: WebhookQueue
    attempted: list[HandOver] = field(default_factory=list)  # the hand-overs that led to an attempt, in order

    def __post_init__(self) -> None:
        self.store = DynamoJobStore(self.clients.table)
        self.blobs = S3BlobStore(self.clients.s3, self.aws.bucket)

    def delivery_queue(self) -> SqsDeliveryQueue:
        return SqsDeliveryQueue(self.clients.sqs, self.aws.webhook_queue_url)

    def dispatcher(self, **changes: Any) -> Dispatcher:
        """The dispatcher on the fake clock (its schedule without jitter), signing as the Lambda does."""
        made: dict[str, Any] = dict(
            store=self.store, blobs=self.blobs, queue=self.delivery_queue(),
            sender=HttpWebhookSender(secret=lambda: SECRET, clock_ms=self.clock.ms, allow_loopback=True),
            render=lambda job: render(job, self.blobs), clock_ms=self.clock.ms, draw=lambda: 0.5,
        )
        return Dispatcher(**{**made, **changes})

    def runner(self, deliveries: Any = None) -> JobRunner:
        return JobRunner(context=JobContext(store=self.store, blobs=self.blobs, clock_ms=self.clock.ms, lanes=LANES),
                         deliveries=deliveries or self.delivery_queue())

    def finished(self, job_id: str, url: str, *, runner: JobRunner | None = None) -> Job:
        """A job with a webhook that has just succeeded: the runner opens its delivery and hands it over."""
        job = make_job(job_id, status=JobStatus.RUNNING, webhook=Webhook(url), started_at=self.clock.ms())
        self.store.create(job)
        result = TaskResult(output={"summaries": [{"id": "a", "summary": "Grüße — short."}]}, usage=Usage(10, 5, 1))
        self.queue.sender = "runner"
        return (runner or self.runner()).succeed(job, result, model_id="claude-test")

    def deliver(self, dispatcher: Dispatcher, hand: HandOver) -> Job:
        """``dispatcher.deliver`` of a hand-over; the job as it stands after."""
        before = self._attempts(self.store.get(hand.job_id))
        self.queue.sender = "dispatcher"
        job = dispatcher.deliver(hand.job_id, due_at=hand.due_at) or self.store.get(hand.job_id)
        if self._attempts(job) > before:
            self.attempted.append(hand)
        return job

    def sweep(self, dispatcher: Dispatcher) -> int:
        self.queue.sender = "sweep"
        return dispatcher.sweep()

    @staticmethod
    def _attempts(job: Job | None) -> int:
        return len(job.delivery.attempts) if job and job.delivery else 0


def run_until_settled(rig: Rig, dispatcher: Dispatcher, job_id: str, *, max_steps: int = 5_000) -> Job:
    """Play AWS around the dispatcher on the fake clock until the job's delivery is settled: each
    hand-over is consumed once its delay is up, and the sweep runs every ``dispatcher.sweep_every_s``
    (a minute by default) from now on."""
    waiting: list[HandOver] = []
    next_sweep = rig.clock.ms()
    job = rig.store.get(job_id)
    for _ in range(max_steps):
        for hand in rig.queue.take():
            heapq.heappush(waiting, hand)
        if not waiting and not job.delivery.pending:
            return job
        if waiting and waiting[0].visible_at <= next_sweep:
            hand = heapq.heappop(waiting)
            rig.clock.now_ms = max(rig.clock.now_ms, hand.visible_at)
            delivered = rig.deliver(dispatcher, hand)
            job = delivered if delivered.job_id == job_id else rig.store.get(job_id)
        else:
            rig.clock.now_ms = max(rig.clock.now_ms, next_sweep)
            rig.sweep(dispatcher)
            next_sweep += math.ceil(dispatcher.sweep_every_s * 1000)
    raise AssertionError(f"the delivery of {job_id} was not settled after {max_steps} steps")


class DownReceiver:
    """A port on 127.0.0.1 that refuses connections (bound, not listening) until ``come_up``."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"

    def come_up(self) -> WebhookReceiver:
        self._sock.close()
        receiver = WebhookReceiver(SECRET, port=self.port).start()
        assert receiver.url == self.url
        return receiver

    def close(self) -> None:
        self._sock.close()


class BrokenDeliveryQueue:
    """The webhook queue as seen by a process killed right after the terminal write."""

    def __init__(self) -> None:
        self.calls = 0

    def schedule(self, job_id: str, *, due_at: int, delay_s: int = 0) -> None:
        self.calls += 1
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "the process died here"}}, "SendMessage")


@pytest.fixture
def rig(aws, clients):
    clock = FakeClock(start_ms=wall_ms())
    return Rig(aws, clients, clock, WebhookQueue(clients.sqs, aws.webhook_queue_url, clock))


@pytest.fixture
def servers():
    made: list[Any] = []

    def start(server: Any) -> Any:
        made.append(server.start())
        return made[-1]

    yield start
    for server in made:
        server.stop()


@pytest.fixture
def down():
    made = DownReceiver()
    yield made
    made.close()


def at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


# --- retries on the schedule --------------------------------------------------------------------

def test_a_receiver_failing_three_times_gets_the_event_once_on_the_fourth_attempt(rig, servers):
    """GIVEN a receiver that answers 503 three times, then 200
    THEN it is attempted on Standard Webhooks' schedule (now, +5 s, +5 min, +30 min), every request carries
    the same webhook-id and body bytes and a timestamp of its own attempt, the delivered one verifies with
    the reference library, and the log shows three failed attempts and the delivery."""
    server = servers(RecordingServer(status=200, script=[503, 503, 503]))
    rig.clock.now_ms = wall_ms() - sum(GAPS_MS[:3])  # the fourth attempt is made (and signed) at wall time
    dispatcher = rig.dispatcher()
    job = rig.finished("job_flaky", f"{server.url}/hooks")

    settled = run_until_settled(rig, dispatcher, job.job_id)

    requests = server.requests
    assert len(requests) == 4
    assert {r.headers["webhook-id"] for r in requests} == {"evt_job_flaky_succeeded"}
    assert len({r.body for r in requests}) == 1
    attempts = settled.delivery.attempts
    stamps = [int(r.headers["webhook-timestamp"]) for r in requests]
    assert stamps == [a.at_ms // 1000 for a in attempts]
    assert [b - a for a, b in pairwise(stamps)] == [5, 300, 1800]
    for r in requests:  # each signed with the reference algorithm at its own time
        assert r.headers["webhook-signature"] == Verifier(SECRET).sign(r.headers["webhook-id"], at(int(r.headers["webhook-timestamp"])),
                                                                        r.body.decode())
    event = Verifier(SECRET).verify(requests[-1].body, requests[-1].headers)  # in full, timestamp tolerance too
    assert event["id"] == "evt_job_flaky_succeeded" and event["type"] == "job.succeeded"
    assert event["data"]["id"] == "job_flaky" and event["data"]["status"] == "succeeded"
    assert event["data"]["result"] == {"summaries": [{"id": "a", "summary": "Grüße — short."}]}
    assert rig.blobs.get_json(body_key("evt_job_flaky_succeeded")) == event  # the body fixed at the first attempt

    [delivery] = deliveries_view(settled)["deliveries"]
    assert delivery["state"] == "delivered" and delivery["summary"] == "delivered on attempt 4 (HTTP 200)"
    assert [(a["attempt"], a["status"], a.get("error")) for a in delivery["attempts"]] == [
        (1, 503, "http"), (2, 503, "http"), (3, 503, "http"), (4, 200, None)]
    assert "next_attempt_at" not in delivery
    # The +30 min attempt is past SQS's 15-minute delay: the sweep handed it over, not the dispatcher.
    assert [hand.by for hand in rig.attempted] == ["runner", "dispatcher", "dispatcher", "sweep"]
    assert rig.store.due_deliveries(until_ms=rig.clock.ms() + 10**10, limit=10) == []


def test_a_receiver_down_for_the_whole_schedule_fails_then_a_redelivery_reaches_it_once_it_is_up(rig, down):
    """GIVEN a receiver that refuses connections for 27 hours
    THEN all eight attempts are made on the schedule, each logged as refused, those past SQS's 15-minute
    delay brought back by the sweep, and the delivery ends failed; WHEN the receiver is up and the job's
    event is redelivered THEN it arrives once, verified, as a second series of the same event."""
    rig.clock.now_ms = wall_ms() - 2 * 86_400_000  # the redelivery, at wall time, is signed within tolerance
    # The sweep at its longest interval (WEBHOOK_SWEEP_EVERY_S=900): 27 hours of it a minute at a time
    # take some 15 s of moto; it hands each attempt over with the exact delay left all the same.
    dispatcher = rig.dispatcher(sweep_every_s=900)
    job = rig.finished("job_down", down.url)

    settled = run_until_settled(rig, dispatcher, job.job_id)

    delivery = settled.delivery
    assert delivery.state is DeliveryState.FAILED
    assert len(delivery.attempts) == RetrySchedule().attempts == 8
    assert [(a.status, a.error) for a in delivery.attempts] == [(None, "refused")] * 8
    assert delivery.reason.startswith("no attempt left after 8") and "refused" in delivery.reason
    for (first, second), gap in zip(pairwise(delivery.attempts), GAPS_MS, strict=True):
        assert gap <= second.at_ms - first.at_ms < gap + 1_000  # SQS delays are whole seconds
    assert [hand.by for hand in rig.attempted] == ["runner", "dispatcher", "dispatcher"] + ["sweep"] * 5
    assert all(0 <= hand.delay_s <= SQS_MAX_DELAY_MS // 1000 for hand in rig.queue.sent)
    assert not any(hand.by == "dispatcher" and hand.delay_s > 300 for hand in rig.queue.sent)
    [logged] = deliveries_view(settled)["deliveries"]
    assert logged["state"] == "failed" and [a["error"] for a in logged["attempts"]] == ["refused"] * 8
    assert job_view(settled)["webhook"]["delivery"].startswith("failed after 8 attempts: no attempt left")
    assert rig.store.due_deliveries(until_ms=rig.clock.ms() + 10**10, limit=10) == []

    receiver = down.come_up()
    try:
        rig.clock.now_ms = wall_ms()
        rig.queue.sender = "runner"
        rig.runner().redeliver(settled)
        final = run_until_settled(rig, dispatcher, job.job_id)
    finally:
        receiver.stop()

    assert receiver.rejected == []
    [event] = receiver.events
    assert event["id"] == "evt_job_down_succeeded" and event["data"]["id"] == "job_down"
    assert event == rig.blobs.get_json(body_key("evt_job_down_succeeded"))  # the body of the first series
    assert final.delivery.state is DeliveryState.DELIVERED and final.delivery.series == 2
    assert [(a.number, a.series, a.status) for a in final.delivery.attempts[-2:]] == [(8, 1, None), (9, 2, 204)]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_is_retried_as_a_failure(rig, servers, status):
    target = servers(RecordingServer())
    server = servers(RecordingServer(status=200, script=[status], headers={"Location": f"{target.url}/stolen"}))
    dispatcher = rig.dispatcher()
    job = rig.finished("job_redirect", f"{server.url}/hooks")

    settled = run_until_settled(rig, dispatcher, job.job_id)

    first, second = settled.delivery.attempts
    assert (first.status, first.error) == (status, "redirect")
    assert (second.status, second.error) == (200, None)
    assert second.at_ms - first.at_ms == GAPS_MS[0]
    assert target.requests == []
    assert [r.path for r in server.requests] == ["/hooks", "/hooks"]


def test_410_gone_stops_at_once_and_the_delivery_fails(rig, servers):
    server = servers(RecordingServer(status=410))
    dispatcher = rig.dispatcher()
    job = rig.finished("job_gone", server.url)

    settled = run_until_settled(rig, dispatcher, job.job_id)

    assert settled.delivery.state is DeliveryState.FAILED
    assert settled.delivery.reason == "the receiver answered 410 Gone"
    [attempt] = settled.delivery.attempts
    assert (attempt.status, attempt.error) == (410, "http")
    assert len(server.requests) == 1
    assert rig.queue.by("dispatcher") == [] and rig.queue.by("sweep") == []
    assert rig.sweep(dispatcher) == 0 and rig.queue.take() == []


def test_a_receiver_that_hangs_past_the_timeout_is_a_timeout_and_retried(rig, servers):
    server = servers(RecordingServer(status=204))
    server.hold.clear()
    dispatcher = rig.dispatcher(timeout_s=0.3)
    job = rig.finished("job_hang", server.url)
    [hand] = rig.queue.take()

    started = time.monotonic()
    rig.deliver(dispatcher, hand)
    elapsed = time.monotonic() - started

    assert elapsed < 2
    waiting = rig.store.get(job.job_id).delivery
    [attempt] = waiting.attempts
    assert (attempt.status, attempt.error) == (None, "timeout")
    assert 250 <= attempt.duration_ms < 2_000
    assert waiting.pending and waiting.next_attempt_at == attempt.at_ms + GAPS_MS[0]
    assert waiting.claimed_until is None

    server.hold.set()
    settled = run_until_settled(rig, dispatcher, job.job_id)

    assert settled.delivery.state is DeliveryState.DELIVERED
    assert [a.error for a in settled.delivery.attempts] == ["timeout", None]


@pytest.mark.parametrize(("retry_after", "handed_over_by"), [("120", "dispatcher"), ("3600", "sweep")])
def test_retry_after_puts_the_next_attempt_at_least_that_far_away(rig, servers, retry_after, handed_over_by):
    server = servers(RecordingServer(status=200, script=[503], headers={"Retry-After": retry_after}))
    dispatcher = rig.dispatcher()
    job = rig.finished("job_later", server.url)

    settled = run_until_settled(rig, dispatcher, job.job_id)

    first, second = settled.delivery.attempts
    assert (first.status, second.status) == (503, 200)
    wanted_ms = int(retry_after) * 1000
    assert wanted_ms <= second.at_ms - first.at_ms < wanted_ms + SWEEP_EVERY_MS
    assert rig.attempted[-1].by == handed_over_by
    if handed_over_by == "dispatcher":
        assert rig.attempted[-1].delay_s == int(retry_after)


# --- nothing lost, nothing sent twice -----------------------------------------------------------

def orphan_from_a_runner_whose_hand_over_failed(rig: Rig, url: str) -> Job:
    broken = BrokenDeliveryQueue()
    job = rig.finished("job_orphan", url, runner=rig.runner(deliveries=broken))
    assert broken.calls == 1
    return job


def orphan_stored_by_a_process_killed_before_its_hand_over(rig: Rig, url: str) -> Job:
    job = make_job_for_delivery("job_orphan", now_ms=rig.clock.ms(), url=url)
    rig.store.create(job)
    return job


@pytest.mark.parametrize("orphan", [orphan_from_a_runner_whose_hand_over_failed, orphan_stored_by_a_process_killed_before_its_hand_over])
def test_a_pending_delivery_whose_hand_over_was_lost_is_found_by_the_sweep_through_the_index_and_delivered(rig, orphan, caplog):
    """GIVEN a job whose terminal write opened its delivery but whose hand-over never reached the queue
    THEN the sweep, trusting the hand-over for its grace period and no longer, finds the delivery in
    DynamoDB's index and hands it over, and it is delivered once."""
    # The attempt comes about five minutes after the write: start that far back, so it is signed at wall time.
    rig.clock.now_ms = wall_ms() - HANDOVER_GRACE_MS
    opened_at = rig.clock.ms()
    receiver = WebhookReceiver(SECRET).start()
    try:
        with caplog.at_level(logging.WARNING, logger="jobcore.runner"):
            job = orphan(rig, receiver.url)
        assert rig.store.get(job.job_id).delivery.pending
        assert rig.queue.take() == []
        assert rig.store.due_deliveries(until_ms=opened_at + HANDOVER_GRACE_MS - 1, limit=10) == []
        assert rig.store.due_deliveries(until_ms=opened_at + HANDOVER_GRACE_MS, limit=10) == [
            (job.job_id, opened_at + HANDOVER_GRACE_MS)]
        dispatcher = rig.dispatcher()
        assert rig.sweep(dispatcher) == 0  # the hand-over is still trusted

        settled = run_until_settled(rig, dispatcher, job.job_id)
    finally:
        receiver.stop()

    assert receiver.rejected == [] and [e["data"]["id"] for e in receiver.events] == [job.job_id]
    assert settled.delivery.state is DeliveryState.DELIVERED
    [attempt] = settled.delivery.attempts
    assert HANDOVER_GRACE_MS - SWEEP_EVERY_MS <= attempt.at_ms - opened_at <= HANDOVER_GRACE_MS
    [hand] = rig.attempted
    assert (hand.by, hand.due_at, hand.delay_s) == ("sweep", opened_at, 0)
    assert rig.store.due_deliveries(until_ms=rig.clock.ms() + 10**10, limit=10) == []


def test_a_duplicate_hand_over_makes_no_second_post(rig, servers):
    server = servers(RecordingServer(status=204))
    dispatcher = rig.dispatcher()
    job = rig.finished("job_dup", server.url)
    [hand] = rig.queue.take()

    rig.deliver(dispatcher, hand)
    rig.deliver(dispatcher, hand)  # SQS delivers at least once
    rig.sweep(dispatcher)

    assert len(server.requests) == 1
    assert rig.queue.take() == []
    assert len(rig.store.get(job.job_id).delivery.attempts) == 1


def test_of_two_dispatchers_that_read_the_job_at_once_only_one_claims_and_posts(rig, servers):
    """The claim is a conditional write: a dispatcher holding a stale read of the job loses it."""
    server = servers(RecordingServer(status=204))
    job = rig.finished("job_race", server.url)
    [hand] = rig.queue.take()
    stale = rig.store.get(job.job_id)

    class StaleRead:
        def __init__(self, store: DynamoJobStore):
            self.store = store

        def get(self, job_id: str) -> Job | None:
            return stale

        def __getattr__(self, name: str) -> Any:
            return getattr(self.store, name)

    rig.deliver(rig.dispatcher(), hand)
    late = rig.dispatcher(store=StaleRead(rig.store))

    assert late.deliver(hand.job_id, due_at=hand.due_at) is None
    assert len(server.requests) == 1
    assert len(rig.store.get(job.job_id).delivery.attempts) == 1


def test_an_attempt_whose_dispatcher_died_after_claiming_is_logged_and_made_by_the_sweep_once_the_claim_ends(rig, servers):
    """GIVEN a delivery claimed by a dispatcher that died before recording its attempt (its message gone with it)
    THEN the job item's log shows that attempt (interrupted: its outcome unknown), and the sweep hands the
    delivery over once the claim has ended (the POST's timeout and a margin; the next sweep after it), well
    before the hand-over grace, and it is attempted once more."""
    server = servers(RecordingServer(status=204))
    dispatcher = rig.dispatcher()
    job = rig.finished("job_crash", server.url)
    rig.queue.take()  # the hand-over the dead dispatcher had received
    claimed = claim(job.delivery, now_ms=rig.clock.ms(), lease_ms=dispatcher.lease_ms)
    rig.store.save(dataclasses.replace(job, delivery=claimed, version=job.version + 1), expected_version=job.version)
    assert [a.error for a in rig.store.get(job.job_id).delivery.attempts] == ["in_flight"]  # in the item already

    settled = run_until_settled(rig, dispatcher, job.job_id)

    interrupted, attempt = settled.delivery.attempts
    assert (interrupted.number, interrupted.error, interrupted.at_ms) == (1, "interrupted", job.delivery.next_attempt_at)
    assert (attempt.number, attempt.status) == (2, 204)
    assert claimed.claimed_until <= attempt.at_ms <= claimed.claimed_until + SWEEP_EVERY_MS  # never while the claim holds
    assert attempt.at_ms - job.delivery.next_attempt_at < HANDOVER_GRACE_MS
    assert len(server.requests) == 1
    assert [hand.by for hand in rig.attempted] == ["sweep"]
    logged = deliveries_view(settled)["deliveries"][0]["attempts"]
    assert [(a["attempt"], a.get("status"), a.get("error")) for a in logged] == [(1, None, "interrupted"), (2, 204, None)]


class SweepingFirst:
    """Runs the sweep Lambda (another dispatcher on the same table) just before delegating: a sweep that
    lands while this dispatcher is inside an attempt."""

    def __init__(self, real: Any, sweeper: Dispatcher, rig: Rig):
        self.real, self.sweeper, self.rig, self.swept = real, sweeper, rig, []

    def _sweep(self) -> None:
        sender, self.rig.queue.sender = self.rig.queue.sender, "sweep"
        self.swept.append(self.sweeper.sweep())
        self.rig.queue.sender = sender

    def post(self, url: str, **kwargs: Any) -> Any:
        self._sweep()
        return self.real.post(url, **kwargs)

    def put_json(self, key: str, document: Any) -> int:
        self._sweep()
        return self.real.put_json(key, document)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


SWEEP_DURING_A_LIVE_CLAIM = (
    "BUG lambda_src/jobcore/dispatch.py Dispatcher.sweep: it marks a delivery handed over (a conditional save) without "
    "looking at claimed_until, so a sweep that finds a delivery whose hand-over is past its grace while a dispatcher "
    "holds a live claim on it (a backlog on the queue, or a slow receiver) changes the job under the attempt: "
    "Dispatcher.deliver's next save conflicts, %s")


def test_a_sweep_during_an_attempt_neither_loses_its_record_nor_sends_the_event_twice(rig, servers):
    """GIVEN a hand-over consumed more than the grace after it was made (the queue had a backlog)
    WHEN the sweep runs while the attempt is in flight
    THEN the attempt is recorded as delivered, and the receiver gets the event once."""
    server = servers(RecordingServer(status=204))
    job = rig.finished("job_backlog", server.url)
    [hand] = rig.queue.take()
    rig.clock.now_ms += HANDOVER_GRACE_MS + 1_000  # the message waited in the queue past the grace
    plain = rig.dispatcher()
    dispatcher = rig.dispatcher(sender=SweepingFirst(plain.sender, rig.dispatcher(), rig))

    rig.deliver(dispatcher, hand)
    settled = run_until_settled(rig, plain, job.job_id)

    assert len(server.requests) == 1
    assert settled.delivery.state is DeliveryState.DELIVERED and len(settled.delivery.attempts) == 1


def test_a_sweep_during_an_attempts_first_render_does_not_make_deliver_raise(rig, servers):
    server = servers(RecordingServer(status=204))
    job = rig.finished("job_backlog", server.url)
    [hand] = rig.queue.take()
    rig.clock.now_ms += HANDOVER_GRACE_MS + 1_000
    sweeping = SweepingFirst(rig.blobs, rig.dispatcher(), rig)
    dispatcher = rig.dispatcher(blobs=sweeping)

    rig.deliver(dispatcher, hand)  # raises ConflictError today

    assert len(server.requests) <= 1
    settled = run_until_settled(rig, rig.dispatcher(), job.job_id)
    assert settled.delivery.state is DeliveryState.DELIVERED and len(server.requests) == 1


def test_build_dispatcher_wires_the_settings_into_a_working_dispatcher(aws, clients):
    receiver = WebhookReceiver(SECRET).start()
    try:
        settings = DispatcherSettings.from_env({
            "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket, "WEBHOOK_QUEUE_URL": aws.webhook_queue_url,
            "WEBHOOK_SECRET": SECRET, "WEBHOOK_ALLOW_LOOPBACK": "true", "WEBHOOK_RETRY_SCHEDULE_S": "1,2",
        })
        dispatcher = build_dispatcher(settings, clients)
        store = DynamoJobStore(clients.table)
        store.create(make_job_for_delivery("job_wired", now_ms=wall_ms(), url=receiver.url))

        job = dispatcher.deliver("job_wired")
    finally:
        receiver.stop()

    assert dispatcher.schedule.gaps_s == (1.0, 2.0)
    assert job.delivery.state is DeliveryState.DELIVERED
    assert receiver.rejected == [] and len(receiver.events) == 1


# --- the Lambda entry points --------------------------------------------------------------------

# The consumer publishes its metric only when a delivery is exhausted; Powertools warns of every
# invocation without one.
quiet_metrics = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def sqs_event(*records: tuple[str, str]) -> dict[str, Any]:
    """An SQS event source event: ``(message id, body)`` per record."""
    return {"Records": [{
        "messageId": message_id, "receiptHandle": f"handle-{message_id}", "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000", "SenderId": "AIDAEXAMPLE",
                       "ApproximateFirstReceiveTimestamp": "1700000000001"},
        "messageAttributes": {}, "md5OfBody": hashlib.md5(body.encode()).hexdigest(), "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:hybrid-local-webhooks", "awsRegion": "us-east-1",
    } for message_id, body in records]}


@pytest.fixture
def lambda_env(aws, monkeypatch):
    for key, value in {
        "STAGE": "test", "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket, "WEBHOOK_QUEUE_URL": aws.webhook_queue_url,
        "WEBHOOK_SECRET": SECRET, "WEBHOOK_ALLOW_LOOPBACK": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WEBHOOK_SECRET_ARN", raising=False)
    lambda_handler.dispatcher.cache_clear()
    yield
    lambda_handler.dispatcher.cache_clear()


@pytest.fixture
def receiver():
    made = WebhookReceiver(SECRET).start()
    yield made
    made.stop()


def hand_over_bodies(aws: Any, clients: Any) -> list[str]:
    """The bodies now on the webhook queue, each taken off it."""
    bodies = []
    while messages := clients.sqs.receive_message(QueueUrl=aws.webhook_queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            bodies.append(message["Body"])
            clients.sqs.delete_message(QueueUrl=aws.webhook_queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_the_lambda_sweep_hands_over_every_due_delivery_and_returns_the_count(aws, clients, lambda_env, receiver):
    store = DynamoJobStore(clients.table)
    lost_at = wall_ms() - HANDOVER_GRACE_MS - 60_000  # their hand-overs, six minutes ago, never arrived
    for job_id in ("job_s1", "job_s2"):
        store.create(make_job_for_delivery(job_id, now_ms=lost_at, url=receiver.url))
    store.create(make_job_for_delivery("job_s3", now_ms=wall_ms(), url=receiver.url))  # its hand-over is trusted yet

    answer = lambda_handler.sweep({"source": "aws.events"}, LambdaContext(60))

    assert answer == {"handed_over": 2}
    bodies = hand_over_bodies(aws, clients)
    assert sorted(decode_hand_over(body) for body in bodies) == [("job_s1", lost_at), ("job_s2", lost_at)]
    assert receiver.events == []  # the sweep hands over; it sends nothing itself
    assert lambda_handler.sweep({"source": "aws.events"}, LambdaContext(60)) == {"handed_over": 0}  # marked handed over


@quiet_metrics
def test_the_lambda_delivers_a_valid_hand_over_and_drops_malformed_ones_and_those_of_unknown_jobs(aws, clients, lambda_env, receiver):
    store = DynamoJobStore(clients.table)
    job = make_job_for_delivery("job_batch", now_ms=wall_ms(), url=receiver.url)
    store.create(job)
    SqsDeliveryQueue(clients.sqs, aws.webhook_queue_url).schedule(job.job_id, due_at=job.delivery.next_attempt_at)
    [body] = hand_over_bodies(aws, clients)

    event = sqs_event(("m-valid", body), ("m-junk", "not a hand-over"), ("m-number", '{"job_id": 7}'),
                      ("m-gone", json.dumps({"job_id": "job_expired_by_ttl", "due_at": 1})))

    answer = lambda_handler.handler(event, LambdaContext(60))

    assert answer == {"batchItemFailures": []}
    assert receiver.rejected == [] and [e["data"]["id"] for e in receiver.events] == ["job_batch"]
    assert store.get("job_batch").delivery.state is DeliveryState.DELIVERED


@quiet_metrics
def test_a_record_the_dispatcher_cannot_process_is_a_batch_item_failure_and_the_others_go_through(
    aws, clients, lambda_env, receiver,
):
    store = DynamoJobStore(clients.table)
    for job_id in ("job_fine", "job_throttled"):
        store.create(make_job_for_delivery(job_id, now_ms=wall_ms(), url=receiver.url))

    class Throttled:
        """DynamoDB refusing reads of one job."""

        def __init__(self, real: DynamoJobStore):
            self.real = real

        def get(self, job_id: str) -> Job | None:
            if job_id == "job_throttled":
                raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "GetItem")
            return self.real.get(job_id)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    lambda_handler.dispatcher().store = Throttled(store)
    event = sqs_event(("m-fine", json.dumps({"job_id": "job_fine"})), ("m-throttled", json.dumps({"job_id": "job_throttled"})))

    answer = lambda_handler.handler(event, LambdaContext(60))

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-throttled"}]}
    assert [e["data"]["id"] for e in receiver.events] == ["job_fine"]
    assert store.get("job_throttled").delivery.pending and store.get("job_throttled").delivery.attempts == ()


@quiet_metrics
def test_a_batch_whose_every_record_fails_raises_so_sqs_retries_all_of_it(aws, clients, lambda_env):
    """Powertools' partial batch response: with no record processed, the invocation fails as a whole."""
    class Down:
        def get(self, job_id: str) -> Job | None:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "GetItem")

    lambda_handler.dispatcher().store = Down()

    with pytest.raises(BatchProcessingError):
        lambda_handler.handler(sqs_event(("m-1", json.dumps({"job_id": "job_x"}))), LambdaContext(60))


def test_an_exhausted_delivery_is_counted_in_the_alarmed_metric(aws, clients, lambda_env, servers, capsys):
    server = servers(RecordingServer(status=500))
    store = DynamoJobStore(clients.table)
    job = make_job_for_delivery("job_last", now_ms=wall_ms(), url=server.url)
    last = dataclasses.replace(job, delivery=dataclasses.replace(job.delivery, step=RetrySchedule().attempts - 1))
    store.create(last)

    answer = lambda_handler.handler(sqs_event(("m-last", json.dumps({"job_id": "job_last"}))), LambdaContext(60))

    assert answer == {"batchItemFailures": []}
    assert store.get("job_last").delivery.state is DeliveryState.FAILED
    [metric] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert metric[lambda_handler.EXHAUSTED_METRIC] == [1.0]
    [declared] = metric["_aws"]["CloudWatchMetrics"]
    assert declared["Namespace"] == "HybridJobs"
    assert declared["Metrics"] == [{"Name": lambda_handler.EXHAUSTED_METRIC, "Unit": "Count"}]


@quiet_metrics
def test_without_the_loopback_flag_the_lambda_never_reaches_a_loopback_receiver(aws, clients, lambda_env, monkeypatch, servers):
    server = servers(RecordingServer(status=204))
    monkeypatch.delenv("WEBHOOK_ALLOW_LOOPBACK")
    lambda_handler.dispatcher.cache_clear()
    store = DynamoJobStore(clients.table)
    store.create(make_job_for_delivery("job_local", now_ms=wall_ms(), url=server.url))

    lambda_handler.handler(sqs_event(("m-local", json.dumps({"job_id": "job_local"}))), LambdaContext(60))

    assert server.requests == []
    [attempt] = store.get("job_local").delivery.attempts
    assert attempt.error == "blocked"
