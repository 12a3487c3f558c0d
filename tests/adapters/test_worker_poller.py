"""The worker's poll loop over moto SQS/DynamoDB/S3 with a real JobRunner and the Claude stand-in.

Each test runs ``Poller.run`` in a thread with a 1 s long poll and stops it through its event, as
SIGTERM does in the container. Tests about a run in progress use a gated model (a call that waits
until the test lets it go) instead of the stand-in; tests about time (protection renewal, the drain
deadline) give the poller a fake monotonic clock and move it, never sleeping through real minutes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from jobadapters.dynamo import DynamoJobStore
from jobadapters.s3 import S3BlobStore
from jobadapters.settings import ClaudeSettings
from jobadapters.sqs import SqsJobQueue, decode
from jobadapters.wiring import AwsClients, build_model, build_runner
from jobcore.costing import CostModel
from jobcore.errors import ModelUnavailableError
from jobcore.limits import ECS_MAX_STOP_TIMEOUT_S, SQS_MAX_WAIT_S
from jobcore.model import JobStatus, transition
from jobcore.pricing import default_prices
from jobcore.runner import Backoff
from jobcore.tasks import RunContext
from jobcore.views import render
from local import fair_queues
from tests.adapters.support import LANES, RecordingServer, make_job, queue_counts, wait_until
from tests.fakes import FakeClock, text_response
from worker.heartbeat import RENEW_EVERY_BEATS
from worker.poller import DRAIN_LIMIT_S, RELEASE_RESERVE_S, STOP_MARGIN_S, Poller
from worker.protection import TaskProtection


@dataclass
class Running:
    poller: Poller
    stop: threading.Event
    thread: threading.Thread

    def halt(self, timeout_s: float = 10.0) -> None:
        self.stop.set()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "Poller.run did not return after stop"


@dataclass
class Worker:
    aws: Any
    standin: Any
    clients: AwsClients
    running: list[Running] = field(default_factory=list)

    def __post_init__(self) -> None:
        clients = self.clients
        self.sqs = clients.sqs
        self.url = self.aws.queue_urls["cpu"]
        self.store = DynamoJobStore(clients.table)
        self.blobs = S3BlobStore(clients.s3, self.aws.bucket)
        self.queue = SqsJobQueue(self.sqs, {"cpu": self.url})
        cost_model = CostModel(default_prices(), LANES)
        self.runner = build_runner(clients, self.aws.bucket, self.aws.webhook_queue_url, LANES, cost_model=cost_model,
                                   role="worker-cpu")
        model = build_model(ClaudeSettings(model_id="claude-test", base_url=self.standin.base_url), max_retries=0, timeout_s=5.0)
        self.ctx = RunContext(llm=model, model_id="claude-test", concurrency=2)

    def submit(self, job_id: str, **changes: Any) -> str:
        job = make_job(job_id, **changes)
        self.store.create(job)
        self.queue.enqueue(job)
        return job_id

    def start(self, **overrides: Any) -> Running:
        settings = dict(
            sqs=self.sqs, queue_url=self.url, runner=self.runner, ctx=self.ctx, concurrency=2,
            max_receives=5, visibility_timeout_s=30, wait_time_s=1,
            fair_extra_slots=0,  # exact slots (the fair extra slots have tests of their own)
        )
        poller = Poller(**{**settings, **overrides})
        stop = threading.Event()
        thread = threading.Thread(target=poller.run, args=(stop,), name="poller-under-test", daemon=True)
        thread.start()
        self.running.append(Running(poller, stop, thread))
        return self.running[-1]

    def status(self, job_id: str) -> JobStatus:
        return self.store.get(job_id).status

    def counts(self) -> tuple[int, int]:
        return queue_counts(self.sqs, self.url)


@pytest.fixture
def worker(aws, standin, clients):
    made = Worker(aws, standin, clients)
    yield made
    for running in made.running:
        running.stop.set()
    for running in made.running:
        running.thread.join(10)


def test_a_queued_job_succeeds_its_result_is_recorded_and_the_message_is_deleted(worker):
    job_id = worker.submit("job_sum")
    running = worker.start()

    wait_until(lambda: worker.status(job_id) is JobStatus.SUCCEEDED, what="the job to succeed")
    wait_until(lambda: worker.counts() == (0, 0), what="the message to be deleted")
    running.halt()

    job = worker.store.get(job_id)
    assert job.attempts == 1 and job.usage.model_calls == 1 and job.error is None
    assert job.cost["actual"]["total"] > 0 and "cpu" in job.cost["actual"]["basis"]
    result = render(job, worker.blobs)["result"]  # a small result: kept in the job item (tests/core/test_result_in_item.py)
    assert result["documents"] == 1
    assert result["summaries"] == [{"id": "a", "summary": "Summary: First document."}]
    assert running.poller.processed == 1


def test_with_two_receivers_every_job_runs_once_and_its_message_is_deleted(worker):
    """Two receives in flight at once, each for no more messages than the slots it holds: every job runs once."""
    job_ids = [worker.submit(f"job_many_{n}") for n in range(7)]
    running = worker.start(concurrency=3, receivers=2)
    assert running.poller.receivers == 2

    wait_until(lambda: all(worker.status(j) is JobStatus.SUCCEEDED for j in job_ids), what="every job to succeed")
    wait_until(lambda: worker.counts() == (0, 0), what="every message to be deleted")
    running.halt()

    assert worker.standin.stats()["requests"] == 7 and running.poller.processed == 7
    assert all(worker.store.get(j).attempts == 1 for j in job_ids)


def test_a_duplicate_message_for_a_finished_job_is_deleted_without_running_it_again(worker):
    """GIVEN a job the worker already finished
    WHEN SQS delivers its message again (at-least-once)
    THEN the message is deleted and Claude is not called again."""
    job_id = worker.submit("job_dup")
    running = worker.start()
    wait_until(lambda: worker.counts() == (0, 0) and running.poller.processed == 1, what="the first run")
    calls_after_first_run = worker.standin.stats()["requests"]
    finished = worker.store.get(job_id)

    worker.queue.enqueue(finished)
    wait_until(lambda: running.poller.processed == 2, what="the duplicate to be handled")
    wait_until(lambda: worker.counts() == (0, 0), what="the duplicate to be deleted")
    running.halt()

    assert worker.standin.stats()["requests"] == calls_after_first_run == 1
    assert worker.store.get(job_id) == finished


def test_an_overloaded_model_puts_the_job_back_to_queued_and_a_new_message_returns_later(worker):
    """GIVEN Claude answering 529
    WHEN the worker runs the job
    THEN the job is queued again with the error, and comes back after the back-off as a new message
    (its first receive: waiting for the model spends none of the job's receives)."""
    worker.runner.backoff = Backoff(base_s=3)  # a back-off the test can wait out
    worker.standin.configure(fail_status=529)
    job_id = worker.submit("job_busy")
    running = worker.start()

    wait_until(lambda: running.poller.processed == 1, what="the attempt to settle")
    running.halt()

    job = worker.store.get(job_id)
    assert job.status is JobStatus.QUEUED and job.attempts == 1
    assert job.error == {"type": "model_unavailable", "message": "the model was overloaded (529)"}
    assert worker.counts() == (0, 0)  # the old message deleted; the new one is delayed
    again = worker.sqs.receive_message(
        QueueUrl=worker.url, WaitTimeSeconds=6, MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )["Messages"]
    assert [decode(m["Body"]) for m in again] == [job_id]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "1"


class TimingOut:
    """A model whose every call times out: a failure that may be the job's own, so it spends receives."""

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        raise ModelUnavailableError("the model did not answer in time", kind="timeout")


def test_at_the_last_allowed_receive_the_job_is_failed_and_the_message_deleted(worker):
    job_id = worker.submit("job_doomed")
    running = worker.start(max_receives=1, ctx=RunContext(llm=TimingOut(), model_id="claude-test"))

    wait_until(lambda: worker.status(job_id) is JobStatus.FAILED, what="the job to fail")
    wait_until(lambda: worker.counts() == (0, 0), what="the message to be deleted")
    running.halt()

    job = worker.store.get(job_id)
    assert job.error == {"type": "model_unavailable", "message": "gave up after 1 attempts: the model did not answer in time"}
    assert job.finished_at is not None


def test_a_malformed_message_is_left_in_the_queue_for_the_dead_letter_queue(worker):
    worker.sqs.send_message(QueueUrl=worker.url, MessageBody="this is not a job message")
    running = worker.start()

    wait_until(lambda: running.poller.processed == 1, what="the message to be looked at")
    running.halt()

    assert worker.counts() == (0, 1)
    assert worker.standin.stats()["requests"] == 0


def test_a_message_for_a_job_that_does_not_exist_is_deleted(worker):
    worker.queue.enqueue(make_job("job_never_stored"))
    running = worker.start()

    wait_until(lambda: running.poller.processed == 1, what="the message to be handled")
    wait_until(lambda: worker.counts() == (0, 0), what="the message to be deleted")
    running.halt()


def test_on_stop_run_returns_and_releases_the_messages_still_in_flight(worker):
    """GIVEN a job stuck on a model that does not answer
    WHEN the worker is told to stop (SIGTERM) with a short drain
    THEN run returns and the message is visible again at once for another worker."""
    worker.standin.configure(hang_s=30)
    job_id = worker.submit("job_stuck")
    running = worker.start(drain_s=0.3)
    wait_until(lambda: worker.standin.stats()["requests"] == 1, what="the job to reach the model")
    assert worker.counts() == (0, 1)

    running.halt(timeout_s=5)

    assert worker.counts() == (1, 0)
    assert worker.status(job_id) is JobStatus.RUNNING
    # Let the abandoned attempt end (the stand-in drops the hanging call) while moto is still up.
    worker.standin.stop()
    wait_until(lambda: running.poller.processed == 1, what="the abandoned attempt to end")
    assert worker.status(job_id) is JobStatus.QUEUED


def test_the_worker_holds_scale_in_protection_only_while_it_has_jobs(worker):
    agent = RecordingServer().start()
    try:
        worker.submit("job_protected")
        running = worker.start(protection=TaskProtection(agent.url))

        wait_until(lambda: len(agent.requests) == 2, what="protection on, then off")
        running.halt()

        assert [r.json()["ProtectionEnabled"] for r in agent.requests] == [True, False]
        assert worker.status("job_protected") is JobStatus.SUCCEEDED
    finally:
        agent.stop()


class GatedProtection:
    """Records the protection state the agent ends up with; the first "off" waits at a gate."""

    renew_after_s = 1800.0

    def __init__(self) -> None:
        self.applied: list[bool] = []
        self.off_entered = threading.Event()
        self.gate = threading.Event()
        self._lock = threading.Lock()

    def set(self, enabled: bool) -> bool:
        if not enabled and not self.off_entered.is_set():
            self.off_entered.set()
            self.gate.wait(3)  # a slow PUT to the agent; a poller that orders its calls waits it out
        with self._lock:
            self.applied.append(enabled)
        return True


def test_protection_stays_on_when_a_job_arrives_while_the_previous_one_is_being_released(worker):
    """GIVEN the worker finishing its only job and turning protection off (a slow PUT)
    WHEN a new job is received meanwhile
    THEN protection ends on, since the worker holds a job."""
    protection = GatedProtection()
    worker.submit("job_first")
    running = worker.start(protection=protection, drain_s=0.3)
    wait_until(protection.off_entered.is_set, what="the first job to finish")

    worker.standin.configure(hang_s=30)  # the second job stays in flight
    worker.submit("job_second")
    wait_until(lambda: worker.standin.stats()["requests"] == 2, what="the second job to reach the model")
    protection.gate.set()
    try:
        wait_until(lambda: len(protection.applied) >= 3, what="on (first job), on (second job) and off, in some order")
        assert protection.applied[-1] is True, f"protection states in the order applied: {protection.applied}"
    finally:
        running.halt()
        worker.standin.stop()  # end the hanging call while moto is still up
        wait_until(lambda: running.poller.processed == 2, what="the second attempt to end")


# --- runs in progress: cancel, lease, duplicates ---------------------------------------------------


class GatedModel:
    """A LanguageModel whose calls from number ``pause_at`` (1-based) on wait for ``resume``; the others answer at once."""

    def __init__(self, *, pause_at: int | None = None) -> None:
        self.pause_at = pause_at
        self.calls = 0
        self.paused = threading.Event()
        self.resume = threading.Event()
        self._lock = threading.Lock()

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            number = self.calls
        if self.pause_at is not None and number >= self.pause_at:
            self.paused.set()
            assert self.resume.wait(10), "the test never let the paused call go"
        return text_response(f"Summary of {params['messages'][0]['content']}")


@pytest.fixture
def gated():
    """Makes gated models; lets every paused call go at teardown (before the pollers are joined)."""
    made: list[GatedModel] = []

    def make(**kwargs: Any) -> GatedModel:
        made.append(GatedModel(**kwargs))
        return made[-1]

    yield make
    for model in made:
        model.resume.set()


def many_documents(n: int) -> dict[str, Any]:
    return {"documents": [{"id": str(i), "text": f"Document {i}."} for i in range(n)], "max_words": 20, "instructions": ""}


def model_ctx(model: Any) -> RunContext:
    return RunContext(llm=model, model_id="claude-test", concurrency=2)


def test_a_job_canceled_mid_run_stops_before_all_its_calls_and_ends_canceled(worker, gated):
    """GIVEN a 50-document summary whose 5th and 6th model calls are in progress
    WHEN the job is marked canceling (as POST /v1/jobs/{id}/cancel does)
    THEN the heartbeat notices, no further call is made, the job ends canceled and the message is deleted."""
    model = gated(pause_at=5)
    job_id = worker.submit("job_cancel", input=many_documents(50))
    running = worker.start(ctx=model_ctx(model), heartbeat_s=0.1)
    wait_until(model.paused.is_set, what="the 5th model call")

    job = worker.store.get(job_id)
    assert job.status is JobStatus.RUNNING and job.lease_owner == worker.runner.owner
    worker.store.save(transition(job, JobStatus.CANCELING, now_ms=worker.runner.clock_ms()), expected_version=job.version)
    wait_until(lambda: job_id in running.poller.stopping(), what="the heartbeat to see the cancel")
    assert "canceled" in running.poller.stopping()[job_id]
    model.resume.set()

    wait_until(lambda: worker.status(job_id) is JobStatus.CANCELED, what="the job to be canceled")
    wait_until(lambda: worker.counts() == (0, 0), what="the message to be deleted")
    running.halt()

    assert model.calls == 5 + 1  # the calls in progress (ctx.concurrency 2) end; no other starts
    job = worker.store.get(job_id)
    assert job.result_ref is None and job.result_json is None and job.finished_at is not None
    assert job.lease_owner is None and job.lease_expires_at is None


def test_a_run_whose_lease_is_lost_stops_early_and_leaves_the_jobs_new_state_alone(worker, gated):
    """GIVEN a 50-document summary in progress
    WHEN its lease is lost (the sweeper, seeing no heartbeat, re-queued the job)
    THEN the run stops before its remaining calls and never records a result over the re-queued job."""
    model = gated(pause_at=3)
    job_id = worker.submit("job_lost", input=many_documents(50))
    running = worker.start(ctx=model_ctx(model), heartbeat_s=0.1)
    wait_until(model.paused.is_set, what="the 3rd model call")

    job = worker.store.get(job_id)
    requeued = transition(job, JobStatus.QUEUED, now_ms=worker.runner.clock_ms(), route_reason="cpu: re-queued by the sweeper")
    worker.store.save(requeued, expected_version=job.version)
    wait_until(lambda: job_id in running.poller.stopping(), what="the heartbeat to see the lease gone")
    assert "lease was lost" in running.poller.stopping()[job_id]
    model.resume.set()

    wait_until(lambda: running.poller.processed == 1, what="the run to stop")
    running.halt()

    assert model.calls == 3 + 1
    assert worker.store.get(job_id) == requeued


def test_the_heartbeat_renews_the_lease_often_and_extends_visibility_on_its_own_slower_schedule(worker, gated):
    clock = FakeClock()
    sqs = RecordingSqs(worker.sqs)
    model = gated(pause_at=1)
    job_id = worker.submit("job_beat")
    running = worker.start(sqs=sqs, ctx=model_ctx(model), heartbeat_s=0.1, clock=clock.monotonic)
    wait_until(model.paused.is_set, what="the model call")
    claimed_until = worker.store.get(job_id).lease_expires_at

    wait_until(lambda: worker.store.get(job_id).lease_expires_at > claimed_until, what="a lease renewal")
    assert sqs.visibility_changes() == []  # a third of the 30 s visibility timeout has not passed

    clock.advance(10)
    wait_until(sqs.visibility_changes, what="the visibility extension")
    assert sqs.visibility_changes()[0] == [30]
    model.resume.set()
    wait_until(lambda: worker.status(job_id) is JobStatus.SUCCEEDED, what="the job to succeed")
    running.halt()


class CountingStore:
    """The job store, counting the heartbeat's lease renewals (writes) and state reads."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.renewals = 0
        self.reads = 0

    def renew_lease(self, job_id: str, **kwargs: Any) -> bool:
        self.renewals += 1
        return self._store.renew_lease(job_id, **kwargs)

    def lease_states(self, job_ids: Any) -> dict[str, Any]:
        self.reads += 1
        return self._store.lease_states(job_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_between_renewals_the_heartbeat_only_reads_and_still_sees_a_cancel(worker, gated):
    """GIVEN a running job whose lease renewal is not yet due (the runner's clock stands still)
    WHEN it is marked canceling
    THEN the heartbeat's read of the jobs in flight sees it, with no lease written; once the clock reaches
    the renewal (RENEW_EVERY_BEATS beats), the lease is renewed."""
    clock = FakeClock(start_ms=worker.runner.clock_ms())
    store = CountingStore(worker.store)
    worker.runner.context.store, worker.runner.context.clock_ms = store, clock.ms
    model = gated(pause_at=3)
    job_id = worker.submit("job_read", input=many_documents(50))
    running = worker.start(ctx=model_ctx(model), heartbeat_s=0.1)
    assert running.poller.renew_every_ms == RENEW_EVERY_BEATS * 100
    wait_until(model.paused.is_set, what="the 3rd model call")
    wait_until(lambda: store.reads >= 2, what="the heartbeat's reads")

    job = worker.store.get(job_id)
    worker.store.save(transition(job, JobStatus.CANCELING, now_ms=clock.ms()), expected_version=job.version)
    wait_until(lambda: job_id in running.poller.stopping(), what="the heartbeat to see the cancel")
    assert store.renewals == 0
    clock.advance(RENEW_EVERY_BEATS * 0.1)
    wait_until(lambda: store.renewals == 1, what="the renewal, once due")
    model.resume.set()

    wait_until(lambda: worker.status(job_id) is JobStatus.CANCELED, what="the job to be canceled")
    running.halt()
    assert model.calls == 3 + 1


def test_two_workers_given_the_same_job_never_run_it_at_once_the_second_backs_off(worker, gated):
    """GIVEN worker A running a job (its lease live)
    WHEN worker B (another process: another lease owner) receives a message for the same job
    THEN B does not call the model nor claim the job; it hides the message until A's lease could have ended."""
    model_a, model_b = gated(pause_at=1), gated()
    job_id = worker.submit("job_shared")
    first = worker.start(ctx=model_ctx(model_a), concurrency=1, lookahead=0)  # one slot, busy, none held: A receives nothing more
    wait_until(model_a.paused.is_set, what="A's model call")

    worker.queue.enqueue(worker.store.get(job_id))  # the job's message again (at-least-once delivery)
    runner_b = build_runner(worker.clients, worker.aws.bucket, worker.aws.webhook_queue_url, LANES, cost_model=None, role="worker-b")
    second = worker.start(runner=runner_b, ctx=model_ctx(model_b))
    wait_until(lambda: second.poller.processed == 1, what="B to handle its message")

    assert model_b.calls == 0
    job = worker.store.get(job_id)
    assert job.status is JobStatus.RUNNING and job.attempts == 1 and job.lease_owner == worker.runner.owner
    assert worker.counts() == (0, 2)  # A's message in flight, B's hidden for the lease's remainder
    model_a.resume.set()
    wait_until(lambda: worker.status(job_id) is JobStatus.SUCCEEDED, what="A to finish the job")
    first.halt()
    second.halt()
    assert model_a.calls == 1 and worker.store.get(job_id).attempts == 1


def test_a_second_message_for_a_job_already_running_here_is_held_back_not_run(worker, gated):
    """One worker process is one lease owner, so the lease cannot stop it running a job twice: the poller does."""
    clock = FakeClock()  # frozen: the heartbeat's visibility extension never comes due
    sqs = RecordingSqs(worker.sqs)
    model = gated(pause_at=1)
    job_id = worker.submit("job_twice")
    running = worker.start(sqs=sqs, ctx=model_ctx(model), clock=clock.monotonic)
    wait_until(model.paused.is_set, what="the model call")

    worker.queue.enqueue(worker.store.get(job_id))
    wait_until(sqs.visibility_changes, what="the duplicate to be held back")
    assert sqs.visibility_changes() == [[30]]  # hidden for a visibility timeout, by when the run here is over
    model.resume.set()
    wait_until(lambda: worker.status(job_id) is JobStatus.SUCCEEDED, what="the job to succeed")
    running.halt()

    assert model.calls == 1 and worker.store.get(job_id).attempts == 1
    assert running.poller.processed == 1
    assert worker.counts() == (0, 1)  # the duplicate, still hidden; seen later, it finds the job finished


# --- scale-in protection, renewed while busy --------------------------------------------------------


def test_protection_is_renewed_at_half_its_lifetime_while_busy_and_not_when_idle(worker, gated):
    agent = RecordingServer().start()
    clock = FakeClock()
    sqs = RecordingSqs(worker.sqs)
    model = gated(pause_at=1)
    try:
        worker.submit("job_hour")
        # A zero-second poll: the loop goes round (and syncs protection) at once, for the test to see.
        running = worker.start(sqs=sqs, ctx=model_ctx(model), clock=clock.monotonic, wait_time_s=0,
                               protection=TaskProtection(agent.url, expires_in_minutes=60))
        wait_until(model.paused.is_set, what="the model call")
        wait_until(lambda: len(agent.requests) == 1, what="protection on")

        clock.advance(29 * 60)
        sqs.wait_for_receives(2)  # the loop went round (it syncs protection after every receive)
        assert len(agent.requests) == 1
        clock.advance(60)
        wait_until(lambda: len(agent.requests) == 2, what="protection renewed at 30 minutes")
        clock.advance(30 * 60)
        wait_until(lambda: len(agent.requests) == 3, what="protection renewed at 60 minutes")

        model.resume.set()
        wait_until(lambda: len(agent.requests) == 4, what="protection off")
        clock.advance(3 * 3600)
        sqs.wait_for_receives(2)
        running.halt()

        assert [r.json() for r in agent.requests] == [{"ProtectionEnabled": True, "ExpiresInMinutes": 60}] * 3 + [
            {"ProtectionEnabled": False}]
    finally:
        agent.stop()


# --- stopping -------------------------------------------------------------------------------------


class RecordingSqs:
    """The SQS client, recording receives and visibility changes; a receive can be held at a gate."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.receives = 0
        self.batches: list[list[dict[str, Any]]] = []
        self.after_receive: Callable[[list[dict[str, Any]]], None] = lambda messages: None
        self.gate: threading.Event | None = None  # set: receives wait for it
        self.at_gate = threading.Event()
        self._lock = threading.Lock()

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.receives += 1
        if self.gate is not None:
            self.at_gate.set()
            self.gate.wait(10)
        answer = self._client.receive_message(**kwargs)
        self.after_receive(answer.get("Messages", []))
        return answer

    def change_message_visibility_batch(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.batches.append(kwargs["Entries"])
        return self._client.change_message_visibility_batch(**kwargs)

    def visibility_changes(self) -> list[list[int]]:
        with self._lock:
            return [[entry["VisibilityTimeout"] for entry in batch] for batch in self.batches]

    def wait_for_receives(self, more: int) -> None:
        target = self.receives + more
        wait_until(lambda: self.receives >= target, what=f"{more} more receives")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_message_received_after_stop_is_released_at_once_and_no_receive_follows(worker):
    """GIVEN SIGTERM arriving while a long poll is in flight
    WHEN that poll returns a message
    THEN the message is visible again at once, its job never starts, and no further receive is made."""
    sqs = RecordingSqs(worker.sqs)
    running = worker.start(sqs=sqs)
    sqs.after_receive = lambda messages: messages and running.stop.set()
    job_id = worker.submit("job_late")

    running.thread.join(10)
    assert not running.thread.is_alive()
    receives = sqs.receives
    time.sleep(0.3)  # nothing runs any more; give a stray receive the chance to show
    assert sqs.receives == receives
    assert worker.counts() == (1, 0)
    assert sqs.visibility_changes() == [[0]]
    assert worker.standin.stats()["requests"] == 0
    job = worker.store.get(job_id)
    assert job.status is JobStatus.QUEUED and job.attempts == 0
    assert running.poller.processed == 0


def test_the_drain_deadline_counts_from_the_stop_and_leaves_the_margin_before_the_stop_timeout(worker, gated):
    """GIVEN a job whose model call does not end, and SIGTERM arriving during a full-length long poll
    WHEN the drain runs out
    THEN the release comes DRAIN_LIMIT_S after the stop (not after the poll), the message is visible again,
    and the job keeps its lease, left to run out, rather than being settled from here."""
    assert DRAIN_LIMIT_S + RELEASE_RESERVE_S + STOP_MARGIN_S <= ECS_MAX_STOP_TIMEOUT_S
    assert STOP_MARGIN_S >= 10 and SQS_MAX_WAIT_S < DRAIN_LIMIT_S
    clock = FakeClock()
    sqs = RecordingSqs(worker.sqs)
    model = gated(pause_at=1)
    job_id = worker.submit("job_slow", input=many_documents(3))
    running = worker.start(sqs=sqs, ctx=model_ctx(model), clock=clock.monotonic)
    assert running.poller.drain_s == DRAIN_LIMIT_S
    wait_until(lambda: model.calls == 2, what="the first two model calls")

    sqs.gate = threading.Event()
    sqs.wait_for_receives(1)
    wait_until(sqs.at_gate.is_set, what="a receive in flight")
    stopped_at, receives_at_stop = clock.monotonic(), sqs.receives
    running.stop.set()
    wait_until(lambda: running.poller.stopped_at == stopped_at, what="the stop to be noted")
    clock.advance(SQS_MAX_WAIT_S)  # the long poll takes its full time
    sqs.gate.set()

    clock.advance(DRAIN_LIMIT_S - SQS_MAX_WAIT_S - 1)
    time.sleep(0.5)  # the drain looks every 0.1 s: a second before its deadline it must still be waiting
    assert running.thread.is_alive() and worker.counts() == (0, 1)
    clock.advance(1)
    running.thread.join(5)
    assert not running.thread.is_alive()
    assert worker.counts() == (1, 0)
    assert "stopping" in running.poller.stopping()[job_id]

    model.resume.set()  # the abandoned run ends at its next check (the 3rd call); its message is not touched from here
    wait_until(lambda: running.poller.processed == 1, what="the abandoned run to end")
    assert worker.counts() == (1, 0)
    job = worker.store.get(job_id)
    assert job.status is JobStatus.RUNNING and job.lease_owner == worker.runner.owner  # left to run out
    assert model.calls == 2 and job.result_ref is None and job.result_json is None
    assert sqs.receives == receives_at_stop  # none after the stop


def test_drain_and_heartbeat_settings_that_would_break_the_stop_timeout_or_the_lease_are_refused(worker):
    base = dict(sqs=worker.sqs, queue_url=worker.url, runner=worker.runner, ctx=worker.ctx, concurrency=1,
                max_receives=5, visibility_timeout_s=30)
    with pytest.raises(ValueError, match="drain_s"):
        Poller(**base, drain_s=DRAIN_LIMIT_S + 1)
    with pytest.raises(ValueError, match="heartbeat_s"):
        Poller(**base, heartbeat_s=worker.runner.lease_ms / 1000)
    with pytest.raises(ValueError, match="wait_time_s"):
        Poller(**base, wait_time_s=SQS_MAX_WAIT_S + 1)
    assert Poller(**base).heartbeat_s == 2.0




# --- waiting for the model: a new delayed message, the receive budget untouched ---------------------


class RequeueRecordingSqs(RecordingSqs):
    """Records sends (with their delay), deletes and every received message's receive count; ``send_fails``
    makes sends raise (SQS refusing)."""

    def __init__(self, client: Any, *, send_fails: bool = False) -> None:
        super().__init__(client)
        self.sent: list[tuple[str, int]] = []
        self.deleted = 0
        self.receive_counts: list[str] = []
        self.send_fails = send_fails
        self.after_receive = lambda messages: self.receive_counts.extend(
            m["Attributes"]["ApproximateReceiveCount"] for m in messages)

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        if self.send_fails:
            raise EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.invalid")
        self.sent.append((decode(kwargs["MessageBody"]), kwargs.get("DelaySeconds", 0)))
        return self._client.send_message(**kwargs)

    def delete_message(self, **kwargs: Any) -> dict[str, Any]:
        self.deleted += 1
        return self._client.delete_message(**kwargs)

    def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.deleted += len(kwargs["Entries"])
        return self._client.delete_message_batch(**kwargs)


def delayed_count(worker: Worker) -> int:
    attributes = worker.sqs.get_queue_attributes(QueueUrl=worker.url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"])


def test_a_rate_limited_model_requeues_the_job_as_a_new_delayed_message_and_deletes_the_old_one(worker):
    """GIVEN Claude answering 429 with retry-after: 1
    WHEN the worker runs the job
    THEN the job goes back to queued, waiting for the model; a new message is sent delayed by the back-off
    (2 s here, not the 1 s asked for) and the old one deleted; once the model recovers, the new message,
    on its first receive, runs the job to success."""
    worker.runner.backoff = Backoff(base_s=2, cap_s=4, rng=lambda: 1.0)
    sqs = RequeueRecordingSqs(worker.sqs)
    worker.standin.configure(fail_status=429)
    job_id = worker.submit("job_storm")
    running = worker.start(sqs=sqs)

    wait_until(lambda: running.poller.processed == 1, what="the first attempt to settle")
    job = worker.store.get(job_id)
    assert job.status is JobStatus.QUEUED and job.lease_owner is None and job.attempts == 1
    assert job.error == {"type": "model_unavailable", "message": "the model was rate-limited (429)"}
    assert job.model_wait.waits == 1 and job.model_wait.reason == "model rate-limited (429)"
    wait_until(lambda: sqs.deleted == 1, what="the old message to be deleted (its batch call goes within SETTLE_LINGER_S)")
    assert sqs.sent == [(job_id, 2)]
    assert worker.counts() == (0, 0) and delayed_count(worker) == 1  # only the new, delayed message is left

    worker.standin.reset()  # the model recovers
    wait_until(lambda: worker.status(job_id) is JobStatus.SUCCEEDED, what="the job to succeed on the new message")
    wait_until(lambda: worker.counts() == (0, 0), what="the new message to be deleted")
    running.halt()

    job = worker.store.get(job_id)
    assert job.attempts == 2 and job.error is None and job.model_wait.next_attempt_at is None
    assert [e["type"] for e in job.attempt_errors] == ["model_unavailable"]
    assert sqs.receive_counts == ["1", "1"]  # each message received once: no receive spent on the wait
    assert sqs.visibility_changes() == []


def test_when_sqs_refuses_the_new_message_the_old_one_comes_back_after_the_delay_instead(worker):
    worker.runner.backoff = Backoff(base_s=2, cap_s=4, rng=lambda: 1.0)
    sqs = RequeueRecordingSqs(worker.sqs, send_fails=True)
    worker.standin.configure(fail_status=529)
    job_id = worker.submit("job_no_send")
    running = worker.start(sqs=sqs)

    wait_until(lambda: running.poller.processed == 1, what="the attempt to settle")
    running.halt()

    assert worker.status(job_id) is JobStatus.QUEUED
    assert sqs.deleted == 0 and sqs.visibility_changes() == [[2]]  # never lost: the old message returns in 2 s
    assert worker.counts() == (0, 1)


# --- fair share between tenants: SQS fair queues, then the worker's own turns -------------------------------


class SteppedModel:
    """A LanguageModel whose calls each wait for one ``step``; records which job each call was for."""

    def __init__(self) -> None:
        self.jobs: list[str] = []
        self.steps = threading.Semaphore(0)
        self._lock = threading.Lock()

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        with self._lock:
            self.jobs.append(next(word for word in str(params["messages"]).replace("'", " ").split() if word.startswith("job_")))
        assert self.steps.acquire(timeout=10), "the test never let the call go"
        return text_response("Summary.")


def _tenant_job(worker: Worker, job_id: str, tenant: str) -> None:
    worker.submit(job_id, tenant_id=tenant, input={"documents": [{"id": "a", "text": f"{job_id} text"}], "max_words": 20,
                                                   "instructions": ""})


@contextmanager
def a_backlog(worker: Worker, jobs: int, **start: Any) -> Iterator[tuple[SteppedModel, Running]]:
    """Tenant A's backlog of ``jobs`` on a stepped model (SQS fair queues emulated), a worker started over it with
    ``start``; at the end every call is let go and the worker halted."""
    model = SteppedModel()
    with fair_queues.fair_queues(noisy_min_in_flight=1):
        for i in range(jobs):
            _tenant_job(worker, f"job_a{i}", "tenant-a")
        running = worker.start(ctx=model_ctx(model), **start)
        try:
            yield model, running
        finally:
            for _ in range(10):
                model.steps.release()
            running.halt()


def test_a_quiet_tenants_job_starts_before_a_noisy_tenants_backlog_drains(worker):
    """GIVEN a worker of one slot busy with tenant A's backlog of 6 jobs, holding 2 more
    WHEN tenant B submits one job
    THEN B's message is received before A's older ones (SQS fair queue) and B's job starts next (the worker's turns)."""
    with a_backlog(worker, 6, concurrency=1, lookahead=2) as (model, running):
        wait_until(lambda: model.jobs == ["job_a0"], what="A's first job to start")
        wait_until(lambda: running.poller.waiting() == {"tenant-a": 2}, what="two of A's jobs held")
        _tenant_job(worker, "job_b0", "tenant-b")
        model.steps.release()  # A's first ends: A's next held job starts, and room for one more message frees
        wait_until(lambda: running.poller.waiting() == {"tenant-a": 1, "tenant-b": 1}, what="B's message held")
        model.steps.release()
        wait_until(lambda: len(model.jobs) == 3, what="the third job to start")
        assert model.jobs == ["job_a0", "job_a1", "job_b0"]  # not behind A's 4 left
        for _ in range(5):  # B's, then A's 4 left
            model.steps.release()
        wait_until(lambda: running.poller.processed == 7, what="every job to end")
    assert sorted(model.jobs) == sorted([f"job_a{i}" for i in range(6)] + ["job_b0"])  # each ran once
    assert all(worker.status(job_id) is JobStatus.SUCCEEDED for job_id in model.jobs)


def test_a_quiet_tenants_job_starts_in_a_fair_extra_slot_beside_a_noisy_tenants_next_job(worker):
    """GIVEN a worker of one slot (and one fair extra slot) busy with tenant A's backlog
    WHEN tenant B submits one job
    THEN B's job starts when its message is received, in the extra slot beside A's next job, with no other call
    ended first (without the extra slot it would wait for A's next job to end)."""
    with a_backlog(worker, 6, concurrency=1, lookahead=1, fair_extra_slots=1) as (model, running):
        wait_until(lambda: model.jobs == ["job_a0"], what="A's first job to start")
        wait_until(lambda: running.poller.waiting() == {"tenant-a": 2}, what="A's jobs held (lookahead and extra room)")
        assert model.jobs == ["job_a0"]  # A alone never runs in the extra slot
        _tenant_job(worker, "job_b0", "tenant-b")
        model.steps.release()  # A's first ends: A's next starts, and room for a message frees
        wait_until(lambda: len(model.jobs) == 3, what="A's next job and B's to start, no other call ended")
        assert sorted(model.jobs[1:]) == ["job_a1", "job_b0"]
        for _ in range(6):
            model.steps.release()
        wait_until(lambda: running.poller.processed == 7, what="every job to end")
    assert sorted(model.jobs) == sorted([f"job_a{i}" for i in range(6)] + ["job_b0"])  # each ran once


def test_a_quiet_tenants_burst_starts_together_after_one_of_a_busy_tenants_jobs_ends(worker):
    """GIVEN a worker of 4 slots (2 fair extra slots) whose room tenant A's backlog fills (4 running, 3 held)
    WHEN tenant B submits 2 jobs and one of A's jobs ends
    THEN the receive that brings B's first message is followed at once by another, beyond the room, so B's two jobs
    start together in the extra slots, with no other of A's jobs ended (one message per ended job would start one)."""
    with a_backlog(worker, 12, concurrency=4, lookahead=1, fair_extra_slots=2) as (model, running):
        wait_until(lambda: len(model.jobs) == 4, what="A's first 4 jobs to start")
        wait_until(lambda: running.poller.waiting() == {"tenant-a": 3}, what="A's jobs held in the rest of the room")
        _tenant_job(worker, "job_b0", "tenant-b")
        _tenant_job(worker, "job_b1", "tenant-b")
        model.steps.release()  # one of A's jobs ends: room for one message frees
        # B's second job can only start with the follow-up receive: no other of A's calls is let go to free room. A's
        # next starts in the freed slot meanwhile, in its own thread: waited for too (B's may begin their calls first).
        wait_until(lambda: {"job_b0", "job_b1"} <= set(model.jobs) and len(model.jobs) >= 7,
                   what="both of B's jobs and A's next to start")
        assert len(model.jobs) == 7  # A's 4, A's next in the freed slot, B's 2 in the extra slots: nothing else
        for _ in range(14):
            model.steps.release()
        wait_until(lambda: running.poller.processed == 14, what="every job to end")
    assert sorted(model.jobs) == sorted([f"job_a{i}" for i in range(12)] + ["job_b0", "job_b1"])  # each ran once


def test_held_jobs_not_started_are_released_at_the_stop(worker):
    """A held message is hidden, not claimed: at the stop it goes back to the queue at once, its job still queued."""
    model = SteppedModel()
    for i in range(3):
        _tenant_job(worker, f"job_a{i}", "tenant-a")
    running = worker.start(ctx=model_ctx(model), concurrency=1, lookahead=2)
    wait_until(lambda: model.jobs == ["job_a0"], what="the first job to start")
    wait_until(lambda: running.poller.waiting() == {"tenant-a": 2}, what="two jobs held")
    running.stop.set()
    model.steps.release()
    running.halt()
    assert model.jobs == ["job_a0"]
    assert [worker.status(f"job_a{i}") for i in (1, 2)] == [JobStatus.QUEUED, JobStatus.QUEUED]
    assert worker.counts() == (2, 0)  # visible again at once, for another worker
