"""The batch lane's ports (``BatchStore``, ``BatchInbox``), each run over the in-memory fake and the real adapter
(DynamoDB and SQS on moto): what :class:`jobcore.batches.Collector` relies on, the fake and the adapter must give.

The collector trusts ``MemoryBatchStore`` and ``MemoryInbox`` (tests/fakes.py) in its unit tests; these suites
pin the fakes to the adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from jobadapters import schema
from jobadapters.dynamo import DynamoBatchStore, DynamoJobStore
from jobadapters.sqs import SqsBatchInbox, SqsJobQueue
from jobcore.batches import MAX_JOBS_PER_BATCH
from jobcore.errors import ConflictError
from jobcore.model import Job, JobStatus
from jobcore.ports import BatchInbox, BatchRecord, BatchStore, JobStore
from tests.adapters.support import wait_until
from tests.fakes import MemoryBatchStore, MemoryInbox, MemoryJobStore

NOW_MS = 1_700_000_000_000
DAY_MS = 86_400_000
TTL_DAYS = 30


def record(batch_id: str = "msgbatch_01contract", **changes: object) -> BatchRecord:
    fields: dict[str, object] = dict(
        batch_id=batch_id, created_at=NOW_MS, expires_at=NOW_MS + DAY_MS, model_id="claude-sonnet-4-5",
        jobs=(("job_" + "a" * 32, 3), ("job_" + "b" * 32, 1), ("job_" + "c" * 32, 12)),
    )
    fields.update(changes)
    return BatchRecord(**fields)  # type: ignore[arg-type]


def every_field_record(batch_id: str = "msgbatch_01every") -> BatchRecord:
    """A record with every field set away from its default."""
    return record(batch_id, status="open", cancel_requested_at=NOW_MS + 5_123, ended_at=NOW_MS + 7_777,
                  counts={"processing": 0, "succeeded": 14, "errored": 1, "canceled": 0, "expired": 1}, version=4,
                  model_id="claude-haiku-4-5")


# --- BatchStore -----------------------------------------------------------------------------------

@dataclass
class BatchStoreUnderTest:
    batches: BatchStore
    jobs: JobStore  # the job store next to it: the same table for DynamoDB
    item: Callable[[str], dict | None]  # the stored item of a batch (DynamoDB), None for the fake


@pytest.fixture(params=["memory", "dynamodb"])
def batch_store(request) -> BatchStoreUnderTest:
    if request.param == "memory":
        return BatchStoreUnderTest(MemoryBatchStore(), MemoryJobStore(), lambda batch_id: None)
    aws, session = request.getfixturevalue("aws"), request.getfixturevalue("boto_session")
    table = session.resource("dynamodb").Table(aws.table)

    def item(batch_id: str) -> dict | None:
        return table.get_item(Key={schema.JOBS_PARTITION_KEY: schema.BATCH_ITEM_PREFIX + batch_id}).get("Item")

    return BatchStoreUnderTest(DynamoBatchStore(table, ttl_days=TTL_DAYS), DynamoJobStore(table), item)


def test_the_record_used_for_the_round_trip_sets_every_field():
    defaults = BatchRecord(batch_id="x", created_at=0, expires_at=0, model_id="m", jobs=())
    made = every_field_record()
    unset = [name for name in ("status", "cancel_requested_at", "ended_at", "counts", "version")
             if getattr(made, name) == getattr(defaults, name)]
    assert unset == ["status"]  # "open" is what create writes; a done record round-trips below


def test_create_then_get_round_trips_every_field(batch_store):
    made = every_field_record()
    batch_store.batches.create_batch(made)

    assert batch_store.batches.get_batch(made.batch_id) == made


def test_a_done_record_round_trips_through_save(batch_store):
    made = record()
    batch_store.batches.create_batch(made)
    done = replace(made, status="done", ended_at=NOW_MS + 60_000, counts={"succeeded": 16}, version=1)

    batch_store.batches.save_batch(done, expected_version=0)

    assert batch_store.batches.get_batch(made.batch_id) == done


def test_a_record_with_the_most_jobs_a_batch_holds_round_trips(batch_store):
    """The collector puts up to MAX_JOBS_PER_BATCH jobs in one record: it must fit one item."""
    jobs = tuple((f"job_{n:032x}", 1 + n % 7) for n in range(MAX_JOBS_PER_BATCH))
    made = record(jobs=jobs)
    batch_store.batches.create_batch(made)

    assert batch_store.batches.get_batch(made.batch_id) == made


def test_get_of_a_missing_batch_is_none(batch_store):
    assert batch_store.batches.get_batch("msgbatch_nope") is None


def test_create_of_an_existing_id_conflicts_and_keeps_the_first(batch_store):
    first = record()
    batch_store.batches.create_batch(first)

    with pytest.raises(ConflictError):
        batch_store.batches.create_batch(replace(first, model_id="other", jobs=(("job_x", 1),)))

    assert batch_store.batches.get_batch(first.batch_id) == first
    assert batch_store.batches.open_batches() == [first.batch_id]


def test_save_with_the_expected_version_persists_and_a_stale_one_conflicts_changing_nothing(batch_store):
    made = record()
    batch_store.batches.create_batch(made)
    canceled = replace(made, cancel_requested_at=NOW_MS + 1_000, version=1)
    batch_store.batches.save_batch(canceled, expected_version=0)

    with pytest.raises(ConflictError):  # a second writer that read version 0
        batch_store.batches.save_batch(replace(made, status="done", version=1), expected_version=0)

    assert batch_store.batches.get_batch(made.batch_id) == canceled
    assert batch_store.batches.open_batches() == [made.batch_id]  # the refused done save closed nothing


def test_save_of_a_record_never_created_conflicts_and_creates_nothing(batch_store):
    with pytest.raises(ConflictError):
        batch_store.batches.save_batch(record(version=1), expected_version=0)

    assert batch_store.batches.get_batch(record().batch_id) is None
    assert batch_store.batches.open_batches() == []


def test_the_open_set_lists_created_records_until_each_is_saved_done(batch_store):
    store = batch_store.batches
    assert store.open_batches() == []
    ids = ["msgbatch_03", "msgbatch_01", "msgbatch_02"]
    for batch_id in ids:
        store.create_batch(record(batch_id))
    assert sorted(store.open_batches()) == sorted(ids)

    first = store.get_batch("msgbatch_01")
    assert first is not None
    store.save_batch(replace(first, cancel_requested_at=NOW_MS + 1, version=1), expected_version=0)  # not done: stays open
    assert sorted(store.open_batches()) == sorted(ids)

    second = store.get_batch("msgbatch_02")
    assert second is not None
    store.save_batch(replace(second, status="done", version=1), expected_version=0)
    assert sorted(store.open_batches()) == ["msgbatch_01", "msgbatch_03"]
    assert store.get_batch("msgbatch_02") is not None  # closed, not forgotten


def test_closing_is_idempotent_and_closing_the_last_leaves_an_empty_set(batch_store):
    store = batch_store.batches
    made = record()
    store.create_batch(made)
    done = replace(made, status="done", ended_at=NOW_MS + 10, version=1)
    store.save_batch(done, expected_version=0)
    assert store.open_batches() == []

    again = replace(done, counts={"succeeded": 16}, version=2)  # a pass that died after closing saves it again
    store.save_batch(again, expected_version=1)

    assert store.open_batches() == []
    assert store.get_batch(made.batch_id) == again
    store.create_batch(record("msgbatch_later"))  # the set works on after being emptied
    assert store.open_batches() == ["msgbatch_later"]


def test_the_records_expiry_is_the_apis_in_milliseconds_not_the_tables_ttl(batch_store):
    """``expires_at`` is the API's (epoch ms, 24 h after creation; the collector settles past it); the table's own
    TTL attribute (epoch seconds) must neither replace it nor be replaced by it."""
    made = record(created_at=NOW_MS + 123, expires_at=NOW_MS + 123 + DAY_MS)
    batch_store.batches.create_batch(made)
    batch_store.batches.save_batch(replace(made, status="done", version=1), expected_version=0)

    read = batch_store.batches.get_batch(made.batch_id)
    assert read is not None and read.expires_at == NOW_MS + 123 + DAY_MS and read.created_at == NOW_MS + 123
    item = batch_store.item(made.batch_id)
    if item is not None:  # DynamoDB: the item expires with the jobs, TTL_DAYS after the batch was created
        assert int(item[schema.TTL_ATTRIBUTE]) == (NOW_MS + 123) // 1000 + TTL_DAYS * 86_400


def test_records_and_the_open_set_are_never_read_as_jobs(batch_store):
    made = record()
    batch_store.batches.create_batch(made)
    job_store = batch_store.jobs

    for key in (made.batch_id, schema.BATCH_ITEM_PREFIX + made.batch_id, schema.OPEN_BATCHES_KEY):
        assert job_store.get(key) is None, key
    assert job_store.watched(until_ms=NOW_MS + 10 * DAY_MS, limit=100) == []
    assert job_store.due_deliveries(until_ms=NOW_MS + 10 * DAY_MS, limit=100) == []
    for tenant in ("batch", schema.BATCH_ITEM_PREFIX, "tenant-a"):
        assert job_store.list_jobs(tenant, status=None, limit=100, after=None) == ([], None)


def test_a_job_and_a_batch_with_the_same_id_do_not_overwrite_each_other(batch_store):
    job = Job(job_id="msgbatch_same", tenant_id="tenant-a", task="claude.messages", status=JobStatus.QUEUED, lane="batch",
              route_reason="batch: test", created_at=NOW_MS, updated_at=NOW_MS)
    batch_store.jobs.create(job)
    made = record("msgbatch_same")
    batch_store.batches.create_batch(made)

    assert batch_store.jobs.get("msgbatch_same") == job
    assert batch_store.batches.get_batch("msgbatch_same") == made


# --- BatchInbox -----------------------------------------------------------------------------------

@dataclass
class InboxUnderTest:
    inbox: BatchInbox
    send: Callable[[str | None], None]  # a job's message, or (None) one that is not a job message
    lapse: Callable[[], None]  # let the visibility timeout pass (SQS: it does so on its own, in a second)


def job_for(job_id: str) -> Job:
    return Job(job_id=job_id, tenant_id="tenant-a", task="claude.messages", status=JobStatus.QUEUED, lane="batch",
               route_reason="batch: test", created_at=NOW_MS, updated_at=NOW_MS)


@pytest.fixture(params=["memory", "sqs"])
def inbox(request) -> InboxUnderTest:
    if request.param == "memory":
        fake = MemoryInbox()
        return InboxUnderTest(fake, lambda job_id: fake.put(job_id), fake.lapse)
    request.getfixturevalue("aws")
    sqs = request.getfixturevalue("boto_session").client("sqs")
    # The batch lane's queue, with a 1 s visibility timeout so that a message not deleted comes back within the test.
    url = sqs.create_queue(QueueName="contract-batch", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    queue = SqsJobQueue(sqs, {"batch": url})

    def send(job_id: str | None) -> None:
        if job_id is None:
            sqs.send_message(QueueUrl=url, MessageBody="not a job message")
        else:
            queue.enqueue(job_for(job_id))  # as the router and the collector send it

    return InboxUnderTest(SqsBatchInbox(sqs, url), send, lambda: None)


def drain(under: InboxUnderTest, *, limit: int = 10) -> list[tuple[str | None, str]]:
    """Receive until nothing is waiting; every message received (not deleted)."""
    taken: list[tuple[str | None, str]] = []
    while messages := under.inbox.receive(limit=limit):
        assert 1 <= len(messages) <= limit
        taken.extend(messages)
    return taken


def test_an_empty_inbox_receives_nothing(inbox):
    assert inbox.inbox.receive(limit=10) == []


def test_receive_gives_at_most_the_limit_and_every_message_once(inbox):
    ids = [f"job_{n:032x}" for n in range(5)]
    for job_id in ids:
        inbox.send(job_id)

    first = inbox.inbox.receive(limit=2)
    assert 1 <= len(first) <= 2
    rest = drain(inbox, limit=2)

    received = [job_id for job_id, _ in first + rest]
    assert sorted(received) == ids  # each once: a received message is hidden
    receipts = [receipt for _, receipt in first + rest]
    assert len(set(receipts)) == len(receipts) and all(isinstance(r, str) and r for r in receipts)


def test_a_message_that_is_not_a_job_message_is_received_with_no_job_id(inbox):
    inbox.send(None)
    inbox.send("job_real")

    received = drain(inbox)

    assert sorted(job_id or "" for job_id, _ in received) == ["", "job_real"]
    for _, receipt in received:
        inbox.inbox.delete(receipt)  # the collector deletes a poison message
    inbox.lapse()
    assert drain(inbox) == []


def test_a_deleted_message_never_comes_back_and_one_not_deleted_does(inbox):
    inbox.send("job_deleted")
    inbox.send("job_kept")
    received = drain(inbox)
    assert sorted(job_id or "" for job_id, _ in received) == ["job_deleted", "job_kept"]
    for job_id, receipt in received:
        if job_id == "job_deleted":
            inbox.inbox.delete(receipt)
    assert inbox.inbox.receive(limit=10) == []  # the kept one is still hidden

    inbox.lapse()  # the pass that received it died: its visibility timeout passes
    back = wait_until(lambda: inbox.inbox.receive(limit=10), timeout_s=10, what="the message not deleted")

    assert [job_id for job_id, _ in back] == ["job_kept"]
    inbox.inbox.delete(back[0][1])  # the new receipt deletes it
    inbox.lapse()
    assert drain(inbox) == []


def test_a_released_message_comes_back_at_once_with_delay_zero(inbox):
    inbox.send("job_released")
    [(job_id, receipt)] = inbox.inbox.receive(limit=10)

    inbox.inbox.release(receipt, delay_s=0)

    assert [job_id for job_id, _ in inbox.inbox.receive(limit=10)] == ["job_released"]


def test_the_inbox_reads_what_the_job_queue_sends():
    """The collector re-queues a job with the fake inbox's ``enqueue`` (its JobQueue); SqsJobQueue on the batch lane's
    queue is the adapter's (the ``send`` above): both come back as the job's id."""
    fake = MemoryInbox()
    fake.enqueue(job_for("job_requeued"))
    assert [job_id for job_id, _ in fake.receive(limit=10)] == ["job_requeued"]
