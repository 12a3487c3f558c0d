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

from jobadapters.dynamo import DynamoJobStore
from jobadapters.s3 import S3BlobStore
from jobadapters.sqs import SqsJobQueue, decode
from jobcore.errors import ConflictError, EnqueueError
from jobcore.model import Job, JobStatus, Mode, Usage, Webhook, transition
from jobcore.ports import BlobStore, JobQueue, JobStore
from tests.fakes import MemoryBlobs, MemoryJobStore, MemoryQueue

NOW_MS = 1_700_000_000_000


def every_field_job(job_id: str = "job_contract") -> Job:
    """A job with every field set away from its default: floats, nesting, unicode, a webhook, usage."""
    return Job(
        job_id=job_id, tenant_id="tenant-zürich", task="documents.summarize", status=JobStatus.SUCCEEDED,
        lane="cpu", route_reason="cpu: batch task — nobody waits on it ✓", mode=Mode.ASYNC,
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
        result_ref="results/job_contract.json", result_bytes=1234,
        error={"type": "model_unavailable", "message": "model answered 529: Overloaded — retry later"},
        usage=Usage(input_tokens=1_000, output_tokens=250, model_calls=3),
        cost={
            "estimate": {"total": 0.0123, "currency": "USD", "lane": "cpu", "breakdown": {"claude": 0.01, "compute": 0.0023}},
            "actual": {"total": 0.004370, "basis": "1.141 s of a 1 vCPU / 4096 MB Fargate Spot worker × ¼"},
        },
        expires_at=NOW_MS // 1000 + 30 * 86_400, version=7,
    )


def queued_job(job_id: str, *, lane: str = "cpu") -> Job:
    return Job(job_id=job_id, tenant_id="tenant-a", task="documents.summarize", status=JobStatus.QUEUED, lane=lane,
               route_reason=f"{lane}: test", created_at=NOW_MS, updated_at=NOW_MS)


# --- JobStore -------------------------------------------------------------------------------------

@pytest.fixture(params=["memory", "dynamodb"])
def store(request) -> JobStore:
    if request.param == "memory":
        return MemoryJobStore()
    aws, session = request.getfixturevalue("aws"), request.getfixturevalue("boto_session")
    return DynamoJobStore(session.resource("dynamodb").Table(aws.table))


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


@pytest.mark.parametrize("lane", ["gpu", "inline", "no-such-lane"])
def test_queue_enqueue_for_a_lane_without_a_queue_raises_and_sends_nothing(queue, lane):
    with pytest.raises(EnqueueError, match=lane):
        queue.queue.enqueue(queued_job("job_nowhere", lane=lane))

    assert queue.received() == []


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
