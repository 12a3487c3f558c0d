"""The worker's poll loop over moto SQS/DynamoDB/S3 with a real JobRunner and the Claude stand-in.

Each test runs ``Poller.run`` in a thread with a 1 s long poll and stops it through its event, as
SIGTERM does in the container.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from jobadapters.dynamo import DynamoJobStore
from jobadapters.s3 import S3BlobStore
from jobadapters.settings import ClaudeSettings
from jobadapters.sqs import SqsJobQueue, decode
from jobadapters.wiring import AwsClients, build_model, build_runner
from jobcore.costing import CostModel
from jobcore.model import JobStatus
from jobcore.pricing import default_prices
from jobcore.runner import Backoff
from jobcore.tasks import RunContext
from tests.adapters.support import LANES, RecordingServer, make_job, queue_counts, wait_until
from worker.poller import Poller
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


def test_a_queued_job_succeeds_its_result_lands_in_s3_and_the_message_is_deleted(worker):
    job_id = worker.submit("job_sum")
    running = worker.start()

    wait_until(lambda: worker.status(job_id) is JobStatus.SUCCEEDED, what="the job to succeed")
    wait_until(lambda: worker.counts() == (0, 0), what="the message to be deleted")
    running.halt()

    job = worker.store.get(job_id)
    assert job.attempts == 1 and job.usage.model_calls == 1 and job.error is None
    assert job.cost["actual"]["total"] > 0 and "cpu" in job.cost["actual"]["basis"]
    result = worker.blobs.get_json(job.result_ref)
    assert result["documents"] == 1
    assert result["summaries"] == [{"id": "a", "summary": "Summary: First document."}]
    assert job.result_bytes == worker.clients.s3.head_object(Bucket=worker.aws.bucket, Key=job.result_ref)["ContentLength"]
    assert running.poller.processed == 1


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


def test_an_overloaded_model_puts_the_job_back_to_queued_and_the_message_returns_later(worker):
    """GIVEN Claude answering 529
    WHEN the worker runs the job
    THEN the job is queued again with the error, and the message is hidden for the back-off, not deleted."""
    worker.runner.backoff = Backoff(base_s=3)  # a back-off the test can wait out
    worker.standin.configure(fail_status=529)
    job_id = worker.submit("job_busy")
    running = worker.start()

    wait_until(lambda: running.poller.processed == 1, what="the attempt to settle")
    running.halt()

    job = worker.store.get(job_id)
    assert job.status is JobStatus.QUEUED and job.attempts == 1
    assert job.error["type"] == "model_unavailable" and "529" in job.error["message"]
    assert worker.counts() == (0, 1)  # still in the queue, hidden for the back-off
    again = worker.sqs.receive_message(
        QueueUrl=worker.url, WaitTimeSeconds=6, MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )["Messages"]
    assert [decode(m["Body"]) for m in again] == [job_id]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_at_the_last_allowed_receive_the_job_is_failed_and_the_message_deleted(worker):
    worker.standin.configure(fail_status=529)
    job_id = worker.submit("job_doomed")
    running = worker.start(max_receives=1)

    wait_until(lambda: worker.status(job_id) is JobStatus.FAILED, what="the job to fail")
    wait_until(lambda: worker.counts() == (0, 0), what="the message to be deleted")
    running.halt()

    job = worker.store.get(job_id)
    assert job.error["type"] == "model_unavailable"
    assert "gave up after 1 attempts" in job.error["message"]
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
