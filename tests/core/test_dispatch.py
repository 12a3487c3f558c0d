"""The webhook outbox and its dispatcher, over in-memory ports and a clock that moves only when told."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from jobcore.context import JobContext
from jobcore.deliveries import (
    DEFAULT_GAPS_S,
    HANDOVER_GRACE_MS,
    AttemptResult,
    Delivery,
    DeliveryState,
    RetrySchedule,
    claim,
    open_delivery,
    record,
    redeliver,
)
from jobcore.dispatch import Dispatcher, body_key
from jobcore.errors import ConflictError, NoDeliveryError
from jobcore.model import Job, JobStatus
from jobcore.runner import JobRunner
from jobcore.views import iso
from tests.fakes import LANES, FakeClock, MemoryBlobs, MemoryJobStore, RecordingDeliveryQueue, make_job_for_delivery

NO_JITTER = RetrySchedule(DEFAULT_GAPS_S, jitter=0)


class ScriptedSender:
    """A WebhookSender that answers from a script (an AttemptResult, or an HTTP status)."""

    def __init__(self, *answers: AttemptResult | int, clock: FakeClock | None = None):
        self.answers = list(answers)
        self.posts: list[tuple[str, str, bytes]] = []
        self.clock = clock  # when given, each POST takes its duration on it

    def post(self, url: str, *, event_id: str, body: bytes, timeout_s: float) -> AttemptResult:
        self.posts.append((url, event_id, body))
        answer = self.answers.pop(0) if self.answers else 200
        result = answer if isinstance(answer, AttemptResult) else AttemptResult(status=answer, duration_ms=12)
        if self.clock:
            self.clock.advance(result.duration_ms / 1000)
        return result


def dispatcher(sender, *, clock=None, store=None, schedule=NO_JITTER) -> tuple[Dispatcher, MemoryJobStore, RecordingDeliveryQueue]:
    clock = clock or FakeClock()
    store = store or MemoryJobStore()
    queue = RecordingDeliveryQueue()
    made = Dispatcher(
        store=store, blobs=MemoryBlobs(), sender=sender, queue=queue, clock_ms=clock.ms, schedule=schedule,
        render=lambda job: {"id": job.job_id, "status": job.status.value, "result_url": "https://s3/presigned"},
        draw=lambda: 0.5,
    )
    return made, store, queue


def runner_on(d: Dispatcher, store: MemoryJobStore, queue: RecordingDeliveryQueue, clock: FakeClock) -> JobRunner:
    """The runner the router would use on the same store and queue (redelivery is its job)."""
    return JobRunner(context=JobContext(store=store, blobs=d.blobs, clock_ms=clock.ms, lanes=LANES), deliveries=queue)


def pending_job(store: MemoryJobStore, clock: FakeClock, job_id: str = "job_1") -> Job:
    job = make_job_for_delivery(job_id, now_ms=clock.ms())
    store.create(job)
    return job


def run_until_settled(d: Dispatcher, store: MemoryJobStore, queue: RecordingDeliveryQueue, clock: FakeClock, job_id: str) -> Job:
    """Play the queue (each hand-over consumed after its delay, as SQS delivers it) and, when it is
    empty, the sweep once a minute, until the delivery is settled."""
    while store.get(job_id).delivery.pending:
        if queue.scheduled:
            handed_job, due_at, delay_s = queue.scheduled.pop(0)
            clock.advance(delay_s)
            d.deliver(handed_job, due_at=due_at)
        else:
            clock.advance(60)
            d.sweep()
    return store.get(job_id)


# -- the schedule ----------------------------------------------------------------------------------

def test_the_default_schedule_is_standard_webhooks_eight_attempts_over_about_27_hours():
    schedule = RetrySchedule()
    assert schedule.attempts == 8 and sum(schedule.gaps_s) == 5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000
    assert 26 * 3600 < sum(schedule.gaps_s) < 28 * 3600


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 4.5), (0.5, 5.0), (0.999999, 5.5)])
def test_jitter_spreads_each_gap_by_ten_percent(draw, expected):
    assert RetrySchedule().delay_s(1, draw=draw) == pytest.approx(expected, abs=1e-4)


def test_retry_after_is_a_floor_never_a_shortcut():
    schedule = NO_JITTER
    assert schedule.delay_s(1, draw=0.5, retry_after_s=1) == 5  # the schedule's 5 s stands
    assert schedule.delay_s(1, draw=0.5, retry_after_s=120) == 120
    assert schedule.delay_s(1, draw=0.5, retry_after_s=10**9) == 24 * 3600
    assert schedule.delay_s(8, draw=0.5) is None


@pytest.mark.parametrize("text", ["5,300,x", "5;300", "-1,5"])
def test_a_bad_schedule_is_refused(text):
    with pytest.raises(ValueError, match="retry schedule"):
        RetrySchedule.parse(text)


def test_a_compressed_schedule_parses():
    assert RetrySchedule.parse("0.1, 0.2,0.4").gaps_s == (0.1, 0.2, 0.4)


# -- the delivery record ---------------------------------------------------------------------------

def test_a_delivery_round_trips_through_its_dict():
    d = open_delivery(event_id="evt_1", event_type="job.succeeded", url="https://x.test/h", now_ms=1_000)
    d = record(claim(d, now_ms=1_000, lease_ms=5_000), AttemptResult(status=503, duration_ms=40, error="http",
                                                                    detail="503", retry_after_s=30),
               at_ms=1_000, now_ms=1_040, schedule=NO_JITTER, draw=0.5)
    assert Delivery.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    assert d.next_attempt_at == 1_040 + 30_000 and d.claimed_until is None
    assert d.summary() == "pending, 1 attempt so far; last: HTTP 503: 503"


def test_a_claimed_delivery_cannot_be_claimed_again_until_the_lease_ends():
    d = open_delivery(event_id="e", event_type="job.failed", url="u", now_ms=0)
    held = claim(d, now_ms=0, lease_ms=1_000)
    assert held is not None and claim(held, now_ms=999, lease_ms=1_000) is None
    assert claim(held, now_ms=1_000, lease_ms=1_000) is not None


def test_redelivering_a_pending_delivery_is_a_conflict():
    with pytest.raises(ConflictError, match="already under way"):
        redeliver(open_delivery(event_id="e", event_type="t", url="u", now_ms=0), now_ms=1)


# -- the dispatcher --------------------------------------------------------------------------------

def test_a_receiver_failing_three_times_gets_one_delivered_event_with_the_same_id_and_body():
    clock = FakeClock()
    sender = ScriptedSender(503, 503, AttemptResult(status=None, duration_ms=15_000, error="timeout", detail="15 s"), 200,
                            clock=clock)
    d, store, queue = dispatcher(sender, clock=clock)
    pending_job(store, clock)
    queue.schedule("job_1", due_at=clock.ms())
    job = run_until_settled(d, store, queue, clock, "job_1")

    assert job.delivery.state is DeliveryState.DELIVERED and len(sender.posts) == 4
    assert {event_id for _, event_id, _ in sender.posts} == {"evt_job_1_succeeded"}
    assert len({body for _, _, body in sender.posts}) == 1  # the body is fixed at the first attempt
    attempts = job.delivery.attempts
    assert [(a.status, a.error) for a in attempts] == [(503, None), (503, None), (None, "timeout"), (200, None)]
    gaps = [(b.at_ms - a.at_ms) / 1000 for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] == pytest.approx(5, abs=0.1) and gaps[1] == pytest.approx(300, abs=0.1)
    assert 1800 <= gaps[2] <= 1800 + 60  # beyond SQS's delay: the sweep brought it back within its minute
    assert job.delivery.summary() == "delivered on attempt 4 (HTTP 200)"


def test_a_receiver_down_for_the_whole_schedule_fails_and_a_redelivery_later_delivers():
    clock = FakeClock()
    exhausted: list[str] = []
    d, store, queue = dispatcher(ScriptedSender(*[503] * 8, 200, clock=clock), clock=clock)
    d.on_exhausted = lambda job: exhausted.append(job.job_id)
    pending_job(store, clock)
    queue.schedule("job_1", due_at=clock.ms())
    start = clock.ms()
    job = run_until_settled(d, store, queue, clock, "job_1")  # the sweep brings back attempts beyond 15 min
    assert job.delivery.state is DeliveryState.FAILED and len(job.delivery.attempts) == 8 and exhausted == ["job_1"]
    assert "no attempt left after 8" in job.delivery.reason
    # Every attempt fired on time: within the sweep's minute of its schedule.
    due = start
    for attempt, gap in zip(job.delivery.attempts, (0, *DEFAULT_GAPS_S), strict=True):
        due += gap * 1000
        assert 0 <= attempt.at_ms - due <= 60_000
        due = attempt.at_ms + attempt.duration_ms

    renewed = runner_on(d, store, queue, clock).redeliver(job)
    assert renewed.delivery.pending and renewed.delivery.series == 2 and queue.job_ids == ["job_1"]
    settled = run_until_settled(d, store, queue, clock, "job_1")
    assert settled.delivery.state is DeliveryState.DELIVERED and settled.delivery.attempts[-1].series == 2
    assert settled.delivery.event_id == "evt_job_1_succeeded"


def test_410_gone_stops_at_once():
    clock = FakeClock()
    d, store, queue = dispatcher(ScriptedSender(410), clock=clock)
    pending_job(store, clock)
    d.deliver("job_1")
    job = store.get("job_1")
    assert job.delivery.state is DeliveryState.FAILED and job.delivery.reason == "the receiver answered 410 Gone"
    assert queue.scheduled == []


def test_a_redirect_is_a_failed_attempt_retried_on_schedule():
    clock = FakeClock()
    d, store, queue = dispatcher(ScriptedSender(AttemptResult(status=302, duration_ms=5, error="redirect")), clock=clock)
    pending_job(store, clock)
    d.deliver("job_1")
    job = store.get("job_1")
    assert job.delivery.pending and job.delivery.attempts[0].error == "redirect"
    assert queue.scheduled == [("job_1", job.delivery.next_attempt_at, 5)]


def test_retry_after_pushes_the_next_attempt_out():
    clock = FakeClock()
    d, store, queue = dispatcher(ScriptedSender(AttemptResult(status=429, duration_ms=5, retry_after_s=120)), clock=clock)
    pending_job(store, clock)
    d.deliver("job_1")
    assert queue.scheduled[-1][2] == 120


def test_duplicate_hand_overs_make_one_post():
    clock = FakeClock()
    sender = ScriptedSender(200)
    d, store, queue = dispatcher(sender, clock=clock)
    job = pending_job(store, clock)
    for _ in range(3):
        d.deliver("job_1", due_at=job.delivery.next_attempt_at)
    assert len(sender.posts) == 1


def test_a_hand_over_arriving_while_another_dispatcher_holds_the_claim_is_dropped():
    clock = FakeClock()
    sender = ScriptedSender(200)
    d, store, queue = dispatcher(sender, clock=clock)
    job = pending_job(store, clock)
    held = replace(job, delivery=claim(job.delivery, now_ms=clock.ms(), lease_ms=60_000), version=job.version + 1)
    store.save(held, expected_version=job.version)
    d.deliver("job_1", due_at=job.delivery.next_attempt_at)
    assert sender.posts == [] and queue.scheduled == []


class DiesMidPost:
    """A sender whose dispatcher dies during the POST, after the receiver got the event."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, bytes]] = []

    def post(self, url: str, *, event_id: str, body: bytes, timeout_s: float) -> AttemptResult:
        self.posts.append((url, event_id, body))
        raise SystemExit("the dispatcher's process died")


def test_an_attempt_whose_dispatcher_died_mid_post_is_logged_and_retried_once_its_claim_ends():
    """GIVEN a dispatcher that dies during its POST (the receiver got the event)
    THEN the log already shows that attempt (in flight, then interrupted: outcome unknown), the sweep hands it
    over again as soon as the claim ends (the POST's timeout + a margin, not the hand-over grace), and the next
    attempt sends the same event id and body; the log shows both attempts."""
    clock = FakeClock()
    dying = DiesMidPost()
    d, store, queue = dispatcher(dying, clock=clock)
    pending_job(store, clock)
    started = clock.ms()
    with pytest.raises(SystemExit):
        d.deliver("job_1")
    queue.scheduled.clear()  # its hand-over went with it

    [in_flight] = store.get("job_1").delivery.attempts
    assert (in_flight.number, in_flight.at_ms, in_flight.error) == (1, started, "in_flight")
    delivery = store.get("job_1").delivery
    assert delivery.sweep_at() == delivery.claimed_until == started + d.lease_ms == started + (15 + 30) * 1000
    assert d.lease_ms < HANDOVER_GRACE_MS

    clock.advance(d.lease_ms / 1000 - 1)
    assert d.sweep() == 0  # the claim still holds: the attempt may still be under way
    clock.advance(1)
    assert d.sweep() == 1 and d.sweep() == 0  # handed over once, and marked so
    sender = ScriptedSender(204)
    d.sender = sender
    settled = run_until_settled(d, store, queue, clock, "job_1")

    first, second = settled.delivery.attempts
    assert (first.number, first.error, first.status, first.at_ms) == (1, "interrupted", None, started)
    assert "outcome is unknown" in first.detail
    assert (second.number, second.status, second.error) == (2, 204, None)
    assert second.at_ms - started <= d.lease_ms + d.sweep_every_s * 1000
    assert settled.delivery.state is DeliveryState.DELIVERED and settled.delivery.summary() == "delivered on attempt 2 (HTTP 204)"
    assert [post[1:] for post in sender.posts] == [post[1:] for post in dying.posts]  # same webhook-id, same body


def test_an_attempt_in_flight_is_recorded_in_place_and_an_interrupted_one_counts_in_the_series():
    clock = FakeClock()
    opened = open_delivery(event_id="evt", event_type="job.succeeded", url="https://r.example/", now_ms=clock.ms())
    held = claim(opened, now_ms=clock.ms(), lease_ms=45_000)
    assert [a.error for a in held.attempts] == ["in_flight"] and held.summary().startswith("pending, 1 attempt so far")
    done = record(held, AttemptResult(status=503, duration_ms=9, error="http"), at_ms=clock.ms(), now_ms=clock.ms(),
                  schedule=NO_JITTER, draw=0.5)
    assert [(a.number, a.status) for a in done.attempts] == [(1, 503)] and done.step == 1

    clock.advance(60)
    lapsed = claim(done, now_ms=clock.ms(), lease_ms=45_000)
    clock.advance(60)  # its dispatcher died; the claim ended
    again = claim(replace(lapsed, claimed_until=None), now_ms=clock.ms(), lease_ms=45_000)
    assert [(a.number, a.error) for a in again.attempts] == [(1, "http"), (2, "interrupted"), (3, "in_flight")]
    assert again.step == 2  # the interrupted attempt spent one of the schedule's


def test_the_sweep_hands_over_what_falls_due_before_the_next_sweep_with_the_delay_left():
    clock = FakeClock()
    d, store, queue = dispatcher(ScriptedSender(), clock=clock)
    for job_id, in_s in (("soon", 30), ("later", 3600), ("now", 0), ("handed", 0)):
        job = make_job_for_delivery(job_id, now_ms=clock.ms() + in_s * 1000)  # handed over when opened
        store.create(job if job_id == "handed" else replace(job, delivery=replace(job.delivery, handed_over=None,
                                                                                       handed_over_at=None)))
    assert d.sweep() == 2
    assert sorted(queue.scheduled) == [("now", clock.ms(), 0), ("soon", clock.ms() + 30_000, 30)]
    assert d.sweep() == 0 and len(queue.scheduled) == 2  # the sweep marks what it handed over
    assert store.get("soon").delivery.handed_over == clock.ms() + 30_000


def test_only_attempts_beyond_the_queues_delay_wait_for_the_sweep():
    clock = FakeClock()
    d, store, queue = dispatcher(ScriptedSender(503, 503, 503, clock=clock), clock=clock)
    pending_job(store, clock)
    for expected_delay in (5, 300):  # within SQS's 15 minutes: handed over by the attempt itself
        d.deliver("job_1")
        assert queue.scheduled[-1][2] == expected_delay
        clock.advance(expected_delay)
    d.deliver("job_1")  # the next gap is 30 minutes: the sweep's
    delivery = store.get("job_1").delivery
    assert len(queue.scheduled) == 2 and delivery.handed_over != delivery.next_attempt_at
    assert delivery.sweep_at() == delivery.next_attempt_at


def test_a_hand_over_for_a_later_attempt_arriving_early_waits_the_rest():
    clock = FakeClock()
    sender = ScriptedSender()
    d, store, queue = dispatcher(sender, clock=clock)
    job = make_job_for_delivery("job_1", now_ms=clock.ms() + 10_000)
    store.create(job)
    d.deliver("job_1", due_at=job.delivery.next_attempt_at)
    assert sender.posts == [] and queue.scheduled == [("job_1", job.delivery.next_attempt_at, 10)]


def test_the_event_body_is_stored_once_and_sent_as_is():
    clock = FakeClock()
    sender = ScriptedSender(503, 200)
    d, store, queue = dispatcher(sender, clock=clock)
    pending_job(store, clock)
    first_attempt_ms = clock.ms()
    d.deliver("job_1")
    clock.advance(10)
    d.deliver("job_1")
    document = d.blobs.get_json(body_key("evt_job_1_succeeded"))
    assert document["id"] == "evt_job_1_succeeded" and document["type"] == "job.succeeded"
    assert document["timestamp"] == iso(first_attempt_ms)  # ISO 8601, as Standard Webhooks and every other time
    assert document["data"] == {"id": "job_1", "status": "succeeded"}  # render() minus any result_url
    assert sender.posts[0][2] == sender.posts[1][2] == json.dumps(document, separators=(",", ":")).encode()


@pytest.mark.parametrize(("changes", "why"), [
    ({"delivery": None, "webhook": None}, "it has no webhook"),
    ({"delivery": None, "status": JobStatus.RUNNING}, "it is running; its webhook is sent when it finishes"),
    ({"delivery": None}, "its webhook did not ask for job.succeeded"),
])
def test_redelivery_without_a_delivery_is_refused_saying_why(changes, why):
    clock = FakeClock()
    d, store, queue = dispatcher(ScriptedSender(), clock=clock)
    job = replace(make_job_for_delivery("job_1", now_ms=clock.ms()), **changes)
    with pytest.raises(NoDeliveryError, match=why):
        runner_on(d, store, queue, clock).redeliver(job)


def test_redelivery_while_a_delivery_is_pending_is_a_conflict():
    clock = FakeClock()
    d, store, queue = dispatcher(ScriptedSender(), clock=clock)
    job = pending_job(store, clock)
    with pytest.raises(ConflictError, match="already under way"):
        runner_on(d, store, queue, clock).redeliver(job)


def test_a_job_that_is_not_pending_is_left_alone():
    clock = FakeClock()
    sender = ScriptedSender()
    d, store, _ = dispatcher(sender, clock=clock)
    job = make_job_for_delivery("job_1", now_ms=clock.ms())
    store.create(replace(job, delivery=replace(job.delivery, state=DeliveryState.DELIVERED)))
    assert d.deliver("job_1").delivery.state is DeliveryState.DELIVERED and sender.posts == []
    assert d.deliver("job_missing") is None and store.get("job_1").status is JobStatus.SUCCEEDED


def test_a_dispatcher_that_dies_mid_post_leaves_the_body_fixed_for_the_next_attempt():
    clock = FakeClock()

    class DiesMidPost(ScriptedSender):
        def post(self, url, *, event_id, body, timeout_s):
            self.posts.append((url, event_id, body))
            raise SystemExit("killed")

    first, store, queue = dispatcher(DiesMidPost(), clock=clock)
    pending_job(store, clock)
    with pytest.raises(SystemExit):
        first.deliver("job_1")
    stored = store.get("job_1").delivery
    assert stored.body_ref == body_key("evt_job_1_succeeded") and stored.claimed_until is not None

    sender = ScriptedSender(200)
    second = Dispatcher(store=store, blobs=first.blobs, sender=sender, queue=queue, clock_ms=clock.ms, schedule=NO_JITTER,
                        render=lambda job: {"rendered": "again, differently"}, draw=lambda: 0.5)
    clock.advance(first.lease_ms / 1000)  # the dead dispatcher's claim runs out
    second.deliver("job_1")
    assert sender.posts[0][2] == first.sender.posts[0][2]  # the same bytes the first one began to send
    assert store.get("job_1").delivery.state is DeliveryState.DELIVERED
