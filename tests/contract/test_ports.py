"""The ports' contracts, each run over the in-memory fake and the real adapter (on moto).

The unit tests of the core trust the fakes of tests/fakes.py; these suites are what makes that trust
earned: wherever ``jobcore.ports`` defines an answer, the fake and the adapter must give the same one.
A new implementation of a port joins its suite by adding one more entry to the fixture's params.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from jobadapters.s3 import S3BlobStore
from jobadapters.sqs import SqsDeliveryQueue, SqsJobQueue, decode, decode_hand_over
from jobcore.deliveries import HANDOVER_GRACE_MS, Attempt, AttemptResult, Delivery, DeliveryState, RetrySchedule, record
from jobcore.errors import BlobNotFoundError, ConflictError, EnqueueError
from jobcore.model import Job, JobStatus, Mode, ModelWait, Usage, Webhook, transition
from jobcore.ports import BlobStore, DeliveryQueue, JobQueue, JobStore
from tests.adapters.support import wait_until
from tests.fakes import MemoryBlobs, MemoryQueue, RecordingDeliveryQueue, make_job_for_delivery

NOW_MS = 1_700_000_000_000


def every_field_job(job_id: str = "job_contract") -> Job:
    """A job with every field set away from its default: floats, nesting, unicode, a webhook, usage."""
    return Job(
        job_id=job_id, tenant_id="tenant-zürich", task="documents.summarize", status=JobStatus.SUCCEEDED,
        lane="cpu", route_reason="cpu: background task — nobody waits on it ✓", mode=Mode.ASYNC,
        created_at=NOW_MS, updated_at=NOW_MS + 2_500,
        input={
            "documents": [{"id": "a", "text": "Grüße aus Köln, 東京 and 🚀"}, {"id": "b", "text": ""}],
            "weights": [0.25, 1.5, -3.125, 1e-07], "nested": {"deep": {"ok": True, "no": False, "none": None, "empty": {}, "list": []}},
            "max_words": 20,
        },
        input_ref="inputs/job_contract.json",
        hints={"expected_duration_s": 12.5, "memory_mb": 2048},
        metadata={"customer": "Ünïcode & Co. 日本", "empty": ""},
        webhook=Webhook("https://hooks.example.com/jobs?tag=é", ("succeeded", "failed")),
        started_at=NOW_MS + 10, finished_at=NOW_MS + 2_345, attempts=2,
        result_ref="results/job_contract.json", result_bytes=1234, result_json='{"answer":"Ünïcode","n":1.0}',
        error={"type": "model_unavailable", "message": "model answered 529: Overloaded — retry later"},
        usage=Usage(input_tokens=1_000, output_tokens=250, model_calls=3, cache_creation_input_tokens=1_200,
                    cache_read_input_tokens=3_600, cache_creation_1h_input_tokens=1_200),
        cost={
            "estimate": {"total": 0.0123, "currency": "USD", "lane": "cpu", "breakdown": {"claude": 0.01, "compute": 0.0023}},
            "actual": {"total": 0.004370, "basis": "1.141 s of a 1 vCPU / 4096 MB Fargate Spot worker × ¼"},
        },
        expires_at=NOW_MS // 1000 + 30 * 86_400, version=7,
        queue_deadline_at=NOW_MS + 600_000, unsent_since=NOW_MS + 5, lease_owner="worker-cpu:host:42:abcd1234",
        lease_expires_at=NOW_MS + 60_000,
        result_expires_at=NOW_MS + 30 * 86_400_000,
        files={"vectors.npy": {"key": f"results/{job_id}/vectors.npy", "bytes": 1_536_128, "content_type": "application/octet-stream"}},
        delivery=Delivery(
            event_id=f"evt_{job_id}_succeeded", event_type="job.succeeded", url="https://hooks.example.com/jobs?tag=é",
            state=DeliveryState.PENDING, series=2, step=1, next_attempt_at=NOW_MS + 60_000, claimed_until=NOW_MS + 45_000,
            handed_over=NOW_MS + 60_000, handed_over_at=NOW_MS + 50_100,
            body_ref=f"webhooks/evt_{job_id}_succeeded.json", reason="redelivered by the client",
            attempts=(
                Attempt(number=1, series=1, at_ms=NOW_MS + 2_400, duration_ms=15_000, status=None, error="timeout",
                        detail="no answer within 15 s"),
                Attempt(number=2, series=2, at_ms=NOW_MS + 50_000, duration_ms=87, status=503, error="http",
                        detail="answered 503 — später"),
            ),
        ),
        model_wait=ModelWait(since=NOW_MS + 100, waits=3, reason="model rate-limited (429) — “busy”", next_attempt_at=NOW_MS + 90_000,
                             capacity=True, excluded_ms=45_000),
        capacity_wait_ms=52_500,
        attempt_errors=(
            {"attempt": 1, "at": NOW_MS + 1_000, "type": "model_unavailable", "message": "the model was rate-limited (429)"},
            {"attempt": 2, "at": NOW_MS + 31_000, "type": "internal_error", "message": "an internal error — ünïcode"},
        ),
        batch_id="msgbatch_01contract", batch_attempts=2, source="s3://results/intake/invoice.extract/ä b.txt",
        trace_parent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", max_cost_usd=0.25,
    )


def queued_job(job_id: str, *, lane: str = "cpu") -> Job:
    return Job(job_id=job_id, tenant_id="tenant-a", task="documents.summarize", status=JobStatus.QUEUED, lane=lane,
               route_reason=f"{lane}: test", created_at=NOW_MS, updated_at=NOW_MS)


# --- JobStore -------------------------------------------------------------------------------------



def test_the_job_used_for_the_round_trip_sets_every_field():
    """Guards the next test: a field added to Job later must be added to every_field_job too."""
    job = every_field_job()
    for field in dataclasses.fields(Job):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        assert getattr(job, field.name) not in (None, default, dataclasses.MISSING), f"every_field_job leaves {field.name} unset"


def test_store_create_then_get_round_trips_every_field(store):
    job = every_field_job()

    store.create(job)
    back = store.get(job.job_id)

    assert back == job
    assert back.to_dict() == job.to_dict()
    assert isinstance(back.cost["estimate"]["total"], float) and back.cost["estimate"]["total"] == 0.0123
    assert [type(w) for w in back.input["weights"]] == [float] * 4
    assert isinstance(back.usage.input_tokens, int) and isinstance(back.created_at, int)
    assert back.status is JobStatus.SUCCEEDED and back.mode is Mode.ASYNC
    assert back.webhook.events == ("succeeded", "failed")
    assert back.delivery.state is DeliveryState.PENDING and isinstance(back.delivery.attempts[0], Attempt)
    assert back.delivery.attempts[1].detail == "answered 503 — später"
    assert isinstance(back.model_wait, ModelWait) and isinstance(back.attempt_errors, tuple)
    assert back.attempt_errors[1]["at"] == NOW_MS + 31_000 and isinstance(back.attempt_errors[1]["at"], int)


def test_store_create_of_an_existing_id_conflicts_and_keeps_the_first(store):
    first = queued_job("job_twice")
    store.create(first)

    with pytest.raises(ConflictError):
        store.create(dataclasses.replace(first, tenant_id="tenant-b"))

    assert store.get("job_twice") == first


def test_store_save_with_the_expected_version_persists_the_new_state(store):
    job = queued_job("job_save")
    store.create(job)
    running = transition(job, JobStatus.RUNNING, now_ms=NOW_MS + 5)

    store.save(running, expected_version=job.version)

    assert store.get("job_save") == running
    assert running.version == job.version + 1


def test_store_save_with_a_wrong_expected_version_conflicts_and_changes_nothing(store):
    job = queued_job("job_stale")
    store.create(job)
    running = transition(job, JobStatus.RUNNING, now_ms=NOW_MS + 1)
    store.save(running, expected_version=0)

    with pytest.raises(ConflictError):
        store.save(transition(job, JobStatus.CANCELED, now_ms=NOW_MS + 2), expected_version=0)
    with pytest.raises(ConflictError):
        store.save(transition(running, JobStatus.SUCCEEDED, now_ms=NOW_MS + 3), expected_version=5)

    assert store.get("job_stale") == running


def test_store_save_of_a_job_never_created_conflicts(store):
    with pytest.raises(ConflictError):
        store.save(queued_job("job_ghost"), expected_version=0)

    assert store.get("job_ghost") is None


def test_store_get_of_a_missing_id_is_none(store):
    assert store.get("job_missing") is None


# --- JobStore.due_deliveries: the dispatcher's sweep ----------------------------------------------

def pending(store: JobStore, job_id: str, due_at: int, *, handed_at: int | None = None) -> Job:
    """A finished job whose webhook delivery is pending, its next attempt due at ``due_at``, handed over
    to the dispatcher's queue at ``handed_at`` (None: not handed over, as an attempt beyond the queue's
    longest delay is not: the sweep's to hand over at its due time)."""
    job = make_job_for_delivery(job_id, now_ms=due_at)
    delivery = dataclasses.replace(job.delivery, handed_over=None if handed_at is None else due_at, handed_over_at=handed_at)
    job = dataclasses.replace(job, delivery=delivery)
    store.create(job)
    return job


def settle(store: JobStore, job: Job, status: int) -> Job:
    """The job after one attempt answered ``status``: 2xx delivered, 410 failed, else due again later."""
    after = record(job.delivery, AttemptResult(status=status, duration_ms=5), at_ms=NOW_MS, now_ms=NOW_MS,
                   schedule=RetrySchedule(jitter=0), draw=0.5)
    new = dataclasses.replace(job, delivery=after, version=job.version + 1)
    store.save(new, expected_version=job.version)
    return new


def test_due_deliveries_of_an_empty_store_or_of_jobs_without_one_are_none(store):
    assert store.due_deliveries(until_ms=NOW_MS, limit=10) == []
    store.create(queued_job("job_plain"))
    store.create(dataclasses.replace(every_field_job("job_no_delivery"), delivery=None))

    assert store.due_deliveries(until_ms=NOW_MS + 10**9, limit=10) == []


def test_due_deliveries_lists_pending_ones_due_by_until_earliest_first(store):
    for index, offset in enumerate([3_000, 1_000, 2_000, 5_000, 9_000, 4_000, 0, 7_000]):
        pending(store, f"job_due_{index}", NOW_MS + offset)

    due = store.due_deliveries(until_ms=NOW_MS + 5_000, limit=100)

    assert due == [("job_due_6", NOW_MS), ("job_due_1", NOW_MS + 1_000), ("job_due_2", NOW_MS + 2_000),
                   ("job_due_0", NOW_MS + 3_000), ("job_due_5", NOW_MS + 4_000), ("job_due_3", NOW_MS + 5_000)]
    assert all(isinstance(at, int) for _, at in due)


def test_due_deliveries_respects_the_limit_keeping_the_earliest(store):
    for index in range(12):
        pending(store, f"job_limit_{index:02}", NOW_MS + (12 - index) * 1_000)

    assert store.due_deliveries(until_ms=NOW_MS + 60_000, limit=3) == [
        ("job_limit_11", NOW_MS + 1_000), ("job_limit_10", NOW_MS + 2_000), ("job_limit_09", NOW_MS + 3_000)]
    assert len(store.due_deliveries(until_ms=NOW_MS + 60_000, limit=12)) == 12
    assert store.due_deliveries(until_ms=NOW_MS + 60_000, limit=1) == [("job_limit_11", NOW_MS + 1_000)]


def test_a_handed_over_delivery_is_listed_only_once_its_hand_over_is_overdue_past_the_grace(store):
    """The queue holds its hand-over: the sweep acts only if it was lost, a grace period after the later
    of its due time and the hand-over."""
    pending(store, "job_handed", NOW_MS, handed_at=NOW_MS)
    pending(store, "job_handed_late", NOW_MS, handed_at=NOW_MS + 10_000)  # a sweep handed it over after it fell due
    pending(store, "job_for_the_sweep", NOW_MS + 1)

    assert store.due_deliveries(until_ms=NOW_MS + HANDOVER_GRACE_MS - 1, limit=10) == [("job_for_the_sweep", NOW_MS + 1)]
    assert store.due_deliveries(until_ms=NOW_MS + HANDOVER_GRACE_MS + 10_000, limit=10) == [
        ("job_for_the_sweep", NOW_MS + 1), ("job_handed", NOW_MS + HANDOVER_GRACE_MS),
        ("job_handed_late", NOW_MS + HANDOVER_GRACE_MS + 10_000)]


def test_marking_a_delivery_handed_over_moves_it_past_the_grace(store):
    job = pending(store, "job_mark", NOW_MS)
    assert store.due_deliveries(until_ms=NOW_MS, limit=10) == [("job_mark", NOW_MS)]
    marked = dataclasses.replace(job, delivery=job.delivery.handed(now_ms=NOW_MS + 30_000), version=job.version + 1)

    store.save(marked, expected_version=job.version)

    assert store.due_deliveries(until_ms=NOW_MS + HANDOVER_GRACE_MS, limit=10) == []
    assert store.due_deliveries(until_ms=NOW_MS + 30_000 + HANDOVER_GRACE_MS, limit=10) == [
        ("job_mark", NOW_MS + 30_000 + HANDOVER_GRACE_MS)]


def test_a_delivered_or_failed_delivery_drops_out_once_saved_and_a_retried_one_moves(store):
    delivered = pending(store, "job_delivered", NOW_MS)
    gone = pending(store, "job_gone", NOW_MS + 1)
    retried = pending(store, "job_retried", NOW_MS + 2)
    pending(store, "job_waiting", NOW_MS + 3)
    assert [job_id for job_id, _ in store.due_deliveries(until_ms=NOW_MS + 10_000, limit=10)] == [
        "job_delivered", "job_gone", "job_retried", "job_waiting"]

    settle(store, delivered, 204)
    settle(store, gone, 410)
    moved = settle(store, retried, 503)

    assert moved.delivery.next_attempt_at == NOW_MS + 5_000
    assert store.due_deliveries(until_ms=NOW_MS + 10_000, limit=10) == [
        ("job_waiting", NOW_MS + 3), ("job_retried", NOW_MS + 5_000)]
    assert store.due_deliveries(until_ms=NOW_MS + 4_999, limit=10) == [("job_waiting", NOW_MS + 3)]


def test_a_claimed_delivery_is_still_listed_by_when_its_claim_ends(store):
    """A claim (an attempt in flight, or one whose dispatcher died) keeps the delivery pending: the sweep
    finds it once the claim's lease ends, and the dispatcher decides, by that lease, whether to attempt it."""
    job = pending(store, "job_claimed", NOW_MS)
    claimed = dataclasses.replace(job, delivery=dataclasses.replace(job.delivery, claimed_until=NOW_MS + 45_000),
                                  version=job.version + 1)
    store.save(claimed, expected_version=job.version)

    assert store.due_deliveries(until_ms=NOW_MS + 44_999, limit=10) == []
    assert store.due_deliveries(until_ms=NOW_MS + 45_000, limit=10) == [("job_claimed", NOW_MS + 45_000)]
    assert store.get("job_claimed").delivery.claimed_until == NOW_MS + 45_000


# --- JobQueue -------------------------------------------------------------------------------------

@dataclass
class QueueUnderTest:
    queue: JobQueue
    received: Callable[[], list[tuple[str, str]]]  # (job id, lane) of everything sent so far, each once


@pytest.fixture(params=["memory", "sqs"])
def queue(request) -> QueueUnderTest:
    """Each implementation with a queue for the cpu lane only (the GPU lane is disabled: no queue)."""
    if request.param == "memory":
        fake = MemoryQueue(lanes=("cpu",))
        return QueueUnderTest(fake, lambda: list(fake.sent))
    aws, session = request.getfixturevalue("aws"), request.getfixturevalue("boto_session")
    sqs = session.client("sqs")
    urls = {"cpu": aws.queue_urls["cpu"]}
    seen: list[tuple[str, str]] = []

    def received() -> list[tuple[str, str]]:
        for lane, url in urls.items():
            for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []):
                seen.append((decode(message["Body"]), lane))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return list(seen)

    return QueueUnderTest(SqsJobQueue(sqs, urls), received)


def test_queue_enqueue_hands_the_job_id_to_its_lanes_queue(queue):
    queue.queue.enqueue(queued_job("job_q1"))
    queue.queue.enqueue(queued_job("job_q2"))

    assert sorted(queue.received()) == [("job_q1", "cpu"), ("job_q2", "cpu")]


@pytest.mark.slow
def test_queue_enqueue_with_a_delay_is_received_only_after_it(queue):
    queue.queue.enqueue(queued_job("job_later"), delay_s=2)
    if isinstance(queue.queue, MemoryQueue):
        assert queue.queue.delays == [2]
        return
    assert queue.received() == []  # SQS holds it for the delay
    wait_until(lambda: queue.received() == [("job_later", "cpu")], what="the delayed message")


@pytest.mark.parametrize("lane", ["gpu", "inline", "no-such-lane"])
def test_queue_enqueue_for_a_lane_without_a_queue_raises_and_sends_nothing(queue, lane):
    with pytest.raises(EnqueueError, match=lane):
        queue.queue.enqueue(queued_job("job_nowhere", lane=lane))

    assert queue.received() == []


# --- DeliveryQueue --------------------------------------------------------------------------------

@dataclass
class DeliveryQueueUnderTest:
    queue: DeliveryQueue
    scheduled: Callable[[], list[tuple[str, int | None]]]  # (job id, due at) of every hand-over so far, each once


@pytest.fixture(params=["memory", "sqs"])
def delivery_queue(request) -> DeliveryQueueUnderTest:
    if request.param == "memory":
        fake = RecordingDeliveryQueue()
        return DeliveryQueueUnderTest(fake, lambda: [(job_id, due_at) for job_id, due_at, _ in fake.scheduled])
    aws, session = request.getfixturevalue("aws"), request.getfixturevalue("boto_session")
    sqs, url = session.client("sqs"), aws.webhook_queue_url
    seen: list[tuple[str, int | None]] = []

    def scheduled() -> list[tuple[str, int | None]]:
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
            for message in messages:
                seen.append(decode_hand_over(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return list(seen)

    return DeliveryQueueUnderTest(SqsDeliveryQueue(sqs, url), scheduled)


def test_delivery_queue_hand_overs_read_back_as_job_id_and_due_time(delivery_queue):
    delivery_queue.queue.schedule("job_h1", due_at=NOW_MS)
    delivery_queue.queue.schedule("job_h2", due_at=NOW_MS + 5_000, delay_s=0)
    delivery_queue.queue.schedule("job_h1", due_at=NOW_MS + 305_123)  # a later attempt of the same job

    assert sorted(delivery_queue.scheduled()) == [("job_h1", NOW_MS), ("job_h1", NOW_MS + 305_123), ("job_h2", NOW_MS + 5_000)]


def test_delivery_queue_keeps_epoch_milliseconds_exact(delivery_queue):
    far = 4_102_444_800_123  # 2100-01-01, to the millisecond

    delivery_queue.queue.schedule("job_far", due_at=far)

    [(job_id, due_at)] = delivery_queue.scheduled()
    assert (job_id, due_at) == ("job_far", far) and isinstance(due_at, int)


# --- BlobStore ------------------------------------------------------------------------------------

DOCUMENTS = {
    "ascii": {"invoice": {"vendor": "Acme", "total": 849.2, "due_date": None, "line_items": [{"qty": 2, "ok": True}]}},
    "unicode": {"summary": "Grüße aus Köln — 東京 🚀", "ids": ["ä", "ß"], "nested": {"ñ": [1.5, -0.25, {}]}},
    "list": [1, "two", 3.0, None, [], {"k": "v"}],
    "empty": {},
}


@pytest.fixture(params=["memory", "s3"])
def blobs(request) -> BlobStore:
    if request.param == "memory":
        return MemoryBlobs()
    aws, session = request.getfixturevalue("aws"), request.getfixturevalue("boto_session")
    return S3BlobStore(session.client("s3"), aws.bucket)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_blobs_put_then_get_returns_an_equal_document(blobs, name):
    document = DOCUMENTS[name]

    blobs.put_json(f"results/{name}.json", document)

    assert blobs.get_json(f"results/{name}.json") == document


def test_blobs_put_json_returns_the_size_in_bytes_not_characters(blobs):
    document = DOCUMENTS["unicode"]

    size = blobs.put_json("results/unicode.json", document)

    assert isinstance(size, int)
    assert size > len(json.dumps(document, separators=(",", ":"), ensure_ascii=False))  # non-ASCII: more bytes than characters


def test_blobs_put_json_overwrites_and_stores_a_copy(blobs):
    document = {"v": 1, "items": ["a"]}
    blobs.put_json("inputs/doc.json", document)
    document["items"].append("changed after put")
    blobs.put_json("inputs/other.json", {"v": 0})

    first = blobs.get_json("inputs/doc.json")
    first["items"].append("changed after get")

    assert blobs.get_json("inputs/doc.json") == {"v": 1, "items": ["a"]}
    blobs.put_json("inputs/doc.json", {"v": 2})
    assert blobs.get_json("inputs/doc.json") == {"v": 2}


def test_blobs_put_bytes_stores_the_bytes_as_given_and_returns_their_size(blobs, request):
    data = bytes(range(256)) * 3  # not UTF-8, not JSON

    size = blobs.put_bytes("results/job_1/vectors.npy", data, content_type="application/octet-stream")

    assert size == len(data)
    if isinstance(blobs, MemoryBlobs):
        assert blobs.files["results/job_1/vectors.npy"] == (data, "application/octet-stream")
    else:
        stored = request.getfixturevalue("boto_session").client("s3").get_object(
            Bucket=request.getfixturevalue("aws").bucket, Key="results/job_1/vectors.npy")
        assert stored["Body"].read() == data and stored["ContentType"] == "application/octet-stream"


def test_blobs_exists_says_whether_a_document_or_file_is_stored_without_reading_it(blobs):
    blobs.put_json("results/here.json", {"a": 1})
    blobs.put_bytes("results/job_1/file.bin", b"\x00\x01", content_type="application/octet-stream")
    assert blobs.exists("results/here.json") and blobs.exists("results/job_1/file.bin")
    assert not blobs.exists("results/gone.json") and not blobs.exists("results/here")


def test_blobs_get_of_a_missing_key_raises_blob_not_found(blobs):
    with pytest.raises(BlobNotFoundError, match="results/gone.json"):
        blobs.get_json("results/gone.json")


def test_blobs_url_for_is_a_string_naming_the_key(blobs):
    url = blobs.url_for("results/job_1.json")

    assert isinstance(url, str) and "results/job_1.json" in url


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_fake_and_s3_give_the_same_size_and_s3_stores_that_many_bytes_of_utf8_json(aws, boto_session, name):
    document = DOCUMENTS[name]
    s3 = boto_session.client("s3")

    fake_size = MemoryBlobs().put_json("results/doc.json", document)
    s3_size = S3BlobStore(s3, aws.bucket).put_json("results/doc.json", document)

    assert fake_size == s3_size
    stored = s3.get_object(Bucket=aws.bucket, Key="results/doc.json")
    body = stored["Body"].read()
    assert stored["ContentLength"] == len(body) == s3_size
    assert json.loads(body.decode("utf-8")) == document
    compact = json.dumps(document, separators=(",", ":"))
    assert body in {compact.encode(), json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")}
