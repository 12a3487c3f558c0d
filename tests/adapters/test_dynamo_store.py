"""DynamoJobStore against moto: every write conditional, every value back as it went in."""

from __future__ import annotations

import dataclasses
import types
import zlib

import pytest
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError, ConnectTimeoutError
from botocore.stub import Stubber

from jobadapters import schema
from jobadapters.dynamo import DynamoJobStore, DynamoUsageStore
from jobcore.deliveries import HANDOVER_GRACE_MS, DeliveryState
from jobcore.errors import ConflictError, StoreUnavailableError
from jobcore.model import JobStatus, transition
from tests.adapters.support import NOW_MS, make_job, rich_job
from tests.fakes import make_job_for_delivery


def test_created_job_reads_back_equal_with_floats_nesting_usage_and_webhook(store):
    job = rich_job()

    store.create(job)
    back = store.get(job.job_id)

    assert back == job
    assert back.cost["estimate"]["usd"] == 0.0123 and isinstance(back.cost["estimate"]["usd"], float)
    assert back.input["weights"] == [0.25, 1.5, -3.125]
    assert back.input["nested"] == {"deep": {"ok": True, "none": None}}
    assert back.webhook.events == ("succeeded", "failed")
    assert back.usage.model_calls == 3 and isinstance(back.usage.input_tokens, int)


def test_item_is_stored_under_the_schema_keys_with_ttl_in_epoch_seconds(store, table):
    job = rich_job()

    store.create(job)

    item = table.get_item(Key={"job_id": job.job_id})["Item"]
    assert item["tenant_id"] == "tenant-a" and item["created_at"] == NOW_MS
    assert item["expires_at"] == job.expires_at
    assert item["status"] == "succeeded"


def test_unknown_job_is_none(store):
    assert store.get("job_missing") is None


def test_creating_the_same_job_twice_conflicts_and_keeps_the_first(store):
    first = make_job("job_dup")
    store.create(first)

    with pytest.raises(ConflictError):
        store.create(dataclasses.replace(first, tenant_id="tenant-b"))

    assert store.get("job_dup").tenant_id == "tenant-a"


def test_save_with_a_stale_expected_version_conflicts_and_changes_nothing(store):
    job = make_job("job_stale")
    store.create(job)
    running = transition(job, JobStatus.RUNNING, now_ms=NOW_MS + 1)
    store.save(running, expected_version=0)

    with pytest.raises(ConflictError):
        store.save(transition(job, JobStatus.CANCELED, now_ms=NOW_MS + 2), expected_version=0)

    assert store.get("job_stale") == running


def test_save_with_the_current_version_persists_the_new_state(store):
    job = make_job("job_ok")
    store.create(job)

    running = transition(job, JobStatus.RUNNING, now_ms=NOW_MS + 5)
    store.save(running, expected_version=job.version)

    back = store.get("job_ok")
    assert back.status is JobStatus.RUNNING and back.version == 1
    assert back.started_at == NOW_MS + 5 and back.attempts == 1


def test_save_of_a_job_that_was_never_created_conflicts(store):
    with pytest.raises(ConflictError):
        store.save(make_job("job_ghost", version=1), expected_version=0)


def test_two_workers_racing_on_one_job_only_one_transition_wins(aws, boto_session, store):
    """GIVEN two workers (separate clients) that both read the queued job
    WHEN both try to claim it
    THEN the first write wins and the second is refused, so the job runs once."""
    store.create(make_job("job_race"))
    other = DynamoJobStore(boto_session.resource("dynamodb").Table(aws.table))
    seen_by_a, seen_by_b = store.get("job_race"), other.get("job_race")

    claim_a = transition(seen_by_a, JobStatus.RUNNING, now_ms=NOW_MS + 1, route_reason="worker a")
    claim_b = transition(seen_by_b, JobStatus.RUNNING, now_ms=NOW_MS + 2, route_reason="worker b")
    store.save(claim_a, expected_version=seen_by_a.version)
    with pytest.raises(ConflictError):
        other.save(claim_b, expected_version=seen_by_b.version)

    final = other.get("job_race")
    assert final.route_reason == "worker a" and final.version == 1 and final.attempts == 1


def test_a_pending_delivery_puts_the_item_in_the_sparse_due_index_and_a_settled_one_takes_it_out(store, table):
    """The sweep's index holds only jobs whose webhook delivery is pending: the two index attributes are
    written with a pending delivery (sorted by when the sweep must act on it) and gone from the item once
    it is delivered (the put replaces it)."""
    job = make_job_for_delivery("job_outbox", now_ms=NOW_MS)  # handed over as it opened: the sweep waits the grace
    store.create(job)

    item = table.get_item(Key={"job_id": "job_outbox"})["Item"]
    assert item[schema.DELIVERY_INDEX_SORT_KEY] == job.delivery.sweep_at() == NOW_MS + HANDOVER_GRACE_MS
    assert item[schema.DELIVERY_INDEX_PARTITION_KEY] in {f"pending-{shard}" for shard in range(schema.IndexShards().delivery)}
    indexed = table.query(IndexName=schema.DELIVERY_INDEX,
                          KeyConditionExpression=Key(schema.DELIVERY_INDEX_PARTITION_KEY).eq(item[schema.DELIVERY_INDEX_PARTITION_KEY]))
    assert [row["job_id"] for row in indexed["Items"]] == ["job_outbox"]
    assert store.get("job_outbox") == job  # the index attributes never leak into the job

    delivered = dataclasses.replace(job, delivery=dataclasses.replace(
        job.delivery, state=DeliveryState.DELIVERED, next_attempt_at=None, reason="HTTP 204"), version=job.version + 1)
    store.save(delivered, expected_version=job.version)

    item = table.get_item(Key={"job_id": "job_outbox"})["Item"]
    assert schema.DELIVERY_INDEX_PARTITION_KEY not in item and schema.DELIVERY_INDEX_SORT_KEY not in item
    assert item["delivery"]["state"] == "delivered"
    assert store.due_deliveries(until_ms=NOW_MS + 10**9, limit=10) == []


def test_jobs_without_a_pending_delivery_carry_no_index_attributes(store, table):
    store.create(rich_job())

    item = table.get_item(Key={"job_id": "job_rich"})["Item"]
    assert schema.DELIVERY_INDEX_PARTITION_KEY not in item and schema.DELIVERY_INDEX_SORT_KEY not in item


def test_due_deliveries_spans_every_shard(store):
    """Enough jobs that every shard holds some: the earliest come back across shards, in order."""
    due = [NOW_MS + 1_000 * index for index in range(40)]
    for index, at in enumerate(due):
        job = make_job_for_delivery(f"job_shard_{index}", now_ms=at)
        store.create(dataclasses.replace(job, delivery=dataclasses.replace(job.delivery, handed_over=None, handed_over_at=None)))
    shards = {zlib.crc32(f"job_shard_{index}".encode()) % schema.IndexShards().delivery for index in range(40)}
    assert shards == set(range(schema.IndexShards().delivery))

    found = store.due_deliveries(until_ms=NOW_MS + 1_000 * 39, limit=25)

    assert found == [(f"job_shard_{index}", at) for index, at in enumerate(due[:25])]


# --- an unavailable table: our error, in our words --------------------------------------------------


@pytest.mark.parametrize(("code", "status"), [
    ("ProvisionedThroughputExceededException", 400), ("ThrottlingException", 400), ("InternalServerError", 500),
    ("ServiceUnavailable", 503),
])
def test_a_throttled_or_failing_table_is_unavailable_on_every_call(table, code, status):
    store = DynamoJobStore(table)
    calls = {
        "get_item": lambda: store.get("job_1"),
        "put_item": lambda: store.create(make_job("job_1")),
        "query": lambda: store.list_jobs("tenant-a", status=None, limit=5, after=None),
        "update_item": lambda: store.renew_lease("job_1", owner="w", until_ms=NOW_MS),
    }
    with Stubber(table.meta.client) as stub:
        for operation, call in calls.items():
            stub.add_client_error(operation, service_error_code=code, service_message="raw text: table arn:aws:dynamodb:…",
                                  http_status_code=status)
            with pytest.raises(StoreUnavailableError) as caught:
                call()
            assert str(caught.value) == "the job store is unavailable (throttled or unreachable); retry shortly", operation
            assert isinstance(caught.value.__cause__, ClientError)


def test_an_unreachable_table_is_unavailable(table, monkeypatch):
    def unreachable(**kwargs):
        raise ConnectTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.invalid")

    monkeypatch.setattr(table, "get_item", unreachable)
    with pytest.raises(StoreUnavailableError):
        DynamoJobStore(table).get("job_1")


def test_a_lost_conditional_write_is_still_a_conflict_and_a_missing_table_is_not_hidden(table):
    store = DynamoJobStore(table)
    store.create(make_job("job_1"))
    with pytest.raises(ConflictError):
        store.create(make_job("job_1"))
    with Stubber(table.meta.client) as stub:
        stub.add_client_error("get_item", service_error_code="ResourceNotFoundException", http_status_code=400)
        with pytest.raises(ClientError, match="ResourceNotFoundException"):  # a deployment bug: a 500, logged
            store.get("job_1")


# --- the tenant index: a tenant spread over shards, listed as one ------------------------------------


def _walk(store, tenant, *, status=None, limit):
    """Every page of ``tenant``'s list, in order, as job ids (and the number of pages)."""
    seen, after, pages = [], None, 0
    while True:
        page, after = store.list_jobs(tenant, status=status, limit=limit, after=after)
        seen += [job.job_id for job in page]
        pages += 1
        if after is None:
            return seen, pages
        assert pages < 100, "the cursor does not move"


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_a_tenant_spread_over_shards_lists_newest_first_page_by_page_with_no_job_lost_or_repeated(table, shards):
    """Jobs of one tenant in every shard, several created in the same millisecond (ties broken by id) and
    another tenant's beside them: walked a page at a time, with and without a status filter, the pages
    together are exactly the tenant's jobs, newest first, each once; and a second walk gives the same pages."""
    store = DynamoJobStore(table, shards=schema.IndexShards(tenant=shards))
    jobs = [make_job(f"job_{i:02d}", created_at=NOW_MS + (i // 3) * 10, updated_at=NOW_MS,
                     status=JobStatus.RUNNING if i % 4 == 0 else JobStatus.QUEUED) for i in range(31)]
    for job in jobs:
        store.create(job)
    store.create(make_job("job_other", tenant_id="tenant-b"))
    newest_first = [j.job_id for j in sorted(jobs, key=lambda j: (j.created_at, j.job_id), reverse=True)]
    running = [job_id for job_id in newest_first if int(job_id[4:]) % 4 == 0]
    assert len({zlib.crc32(j.job_id.encode()) % shards for j in jobs}) == shards  # every shard holds some

    # Pages of 2 and 7 end inside a millisecond's ties (3 jobs each) and between them; 50 holds them all.
    walks = {}
    for limit in (2, 7, 50):
        walks[limit] = _walk(store, "tenant-a", limit=limit)
        assert walks[limit][0] == newest_first
        assert _walk(store, "tenant-a", status=JobStatus.RUNNING, limit=limit)[0] == running
    assert _walk(store, "tenant-a", limit=7) == walks[7]


def test_a_listed_job_carries_what_a_list_shows_and_not_its_input_or_lease(table):
    """The tenant index projects what GET /v1/jobs shows: the input and the lease stay in the item."""
    store = DynamoJobStore(table, shards=schema.IndexShards(tenant=2))
    job = rich_job()
    store.create(dataclasses.replace(job, lease_owner="worker-1", lease_expires_at=NOW_MS + 60_000))
    (listed,), _ = store.list_jobs(job.tenant_id, status=None, limit=5, after=None)
    assert (listed.input, listed.hints, listed.lease_owner) == (None, {}, None)
    assert (listed.metadata, listed.usage, listed.cost, listed.webhook, listed.result_ref) == (
        job.metadata, job.usage, job.cost, job.webhook, job.result_ref)


def test_inline_slots_count_across_executions_and_a_slot_never_given_back_is_forgotten_when_its_window_turns(table):
    """Two routers' slot counters on one table (one shard for 10 slots): the 11th run is refused until one
    gives its slot back; a slot never given back (its execution died) stops counting in the next window."""
    from jobadapters.dynamo import DynamoInlineSlots
    from jobcore.concurrency import SLOT_WINDOW_S

    now = [1_700_000_000.0]
    routers = [DynamoInlineSlots(table, limit=10, clock_s=lambda: now[0], rng=lambda: 0.5) for _ in range(2)]
    held = [routers[i % 2].take() for i in range(10)]
    assert all(held) and routers[0].take() is None and routers[1].take() is None
    routers[1].give_back(held.pop())
    assert routers[0].take() is not None
    assert store_reads_no_job(table, held[0])
    now[0] += SLOT_WINDOW_S
    assert routers[1].take() is not None  # the dead slots of the last window no longer count


@pytest.mark.parametrize("failure", [
    ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem"),
    ConnectTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.invalid"),
])
def test_an_inline_slot_count_that_fails_admits_the_run_and_gives_nothing_back(table, monkeypatch, failure):
    """Only a full window refuses a run (None); any other failure of the count, an AWS error or none, admits it
    uncounted (an empty token, whose give-back writes nothing)."""
    from jobadapters.dynamo import DynamoInlineSlots

    slots = DynamoInlineSlots(table, limit=1, clock_s=lambda: 1_700_000_000.0, rng=lambda: 0.0)
    assert slots.take() is not None and slots.take() is None  # the window's one slot taken: refused

    def failing(**kwargs):
        raise failure

    monkeypatch.setattr(table, "update_item", failing)
    assert slots.take() == ""
    slots.give_back("")  # no write: update_item would raise


def store_reads_no_job(table, key):
    return DynamoJobStore(table).get(key) is None


class BatchGetTable:
    """A table whose BatchGetItem answers from ``items`` and leaves the last key of each first request unprocessed."""

    name = "jobs"

    def __init__(self, items: dict[str, dict]) -> None:
        self.items, self.requests = items, []
        self.meta = types.SimpleNamespace(client=self)

    def batch_get_item(self, *, RequestItems):  # noqa: N803 - boto3's name
        part = RequestItems[self.name]
        self.requests.append(part)
        keys = [key[schema.JOBS_PARTITION_KEY] for key in part["Keys"]]
        assert len(keys) <= 100 and len(set(keys)) == len(keys)
        first_try = len(self.requests) % 2 == 1 and len(keys) > 1
        answered, left = (keys[:-1], keys[-1:]) if first_try else (keys, [])
        answer = {"Responses": {self.name: [self.items[key] for key in answered if key in self.items]}}
        if left:
            answer["UnprocessedKeys"] = {self.name: {**part, "Keys": [{schema.JOBS_PARTITION_KEY: key} for key in left]}}
        return answer


def test_both_batch_reads_chunk_the_keys_ask_again_for_unprocessed_ones_and_keep_their_projection():
    """The job store's lease states and the usage counters share one BatchGetItem loop: 100 keys a call, each key
    once, consistent, unprocessed keys asked for again with the same projection."""
    jobs = {f"job_{n}": {schema.JOBS_PARTITION_KEY: f"job_{n}", "status": "running", "lease_owner": "w"} for n in range(150)}
    table = BatchGetTable(jobs)
    states = DynamoJobStore(table).lease_states([*jobs, "job_0", "job_missing"])
    assert states == {job_id: (JobStatus.RUNNING, "w") for job_id in jobs}
    assert [len(part["Keys"]) for part in table.requests] == [100, 1, 51, 1]
    assert all(part["ConsistentRead"] and part["ProjectionExpression"] == "#pk, #status, lease_owner" for part in table.requests)

    usage_store = DynamoUsageStore(BatchGetTable({}))
    days = [f"2026-01-{d:02d}" for d in range(1, 32)] * 4  # 124 days asked for, 31 of them distinct
    items = {usage_store.key("t", day): {schema.JOBS_PARTITION_KEY: usage_store.key("t", day), schema.USAGE_MARK: True,
                                         "claude.messages|cpu|model_calls": 2} for day in days[:30]}
    usage_store._table.items = items
    found = usage_store.read("t", days)
    assert found == {day: {"claude.messages|cpu|model_calls": 2} for day in days[:30]}
    assert [len(part["Keys"]) for part in usage_store._table.requests] == [31, 1]
    assert "ProjectionExpression" not in usage_store._table.requests[0]


def test_no_item_but_a_job_is_ever_read_as_one(store, table):
    """Every other kind of item on the jobs table (a capacity bucket, a breaker, an inline slot counter, usage
    counters, an idempotency or batch record) reads as no job, by get and by a claim alike."""
    from jobadapters.breaker_store import DynamoBreakerStore
    from jobadapters.capacity_store import DynamoCapacityStore
    from jobadapters.dynamo import DynamoInlineSlots
    from jobcore.breaker import BreakerState
    from jobcore.capacity import RateLimits, SharedBucket
    from jobcore.idempotency import IdempotencyRecord
    from jobcore.usage import UsageEntry

    DynamoCapacityStore(table).swap("sonnet-4", SharedBucket.full(RateLimits(rpm=60, itpm=1_000, otpm=1_000), NOW_MS),
                                    expected_version=0)
    DynamoBreakerStore(table).save("bedrock", BreakerState(opened_at=NOW_MS, version=1), expected_version=0)
    slot = DynamoInlineSlots(table, limit=1, clock_s=lambda: NOW_MS / 1000, rng=lambda: 0.0).take()
    usage_store = DynamoUsageStore(table)
    usage_store.add(UsageEntry(tenant_id="t", day="2026-01-01", task="claude.messages", lane="cpu", counts={"jobs_succeeded": 1}))
    store.reserve_key(IdempotencyRecord(record_id="idem_1", job_id="job_1", body_hash="h", created_at=NOW_MS,
                                        expires_at=NOW_MS // 1000 + 3600))
    keys = [schema.CAPACITY_ITEM_PREFIX + "sonnet-4", schema.BREAKER_ITEM_PREFIX + "bedrock", slot,
            usage_store.key("t", "2026-01-01"), "idem_1"]
    for key in keys:
        assert table.get_item(Key={schema.JOBS_PARTITION_KEY: key}).get("Item"), key  # the item is there
        assert store.get(key) is None, key
        assert store.claim(key, owner="w", now_ms=NOW_MS, lease_expires_at=NOW_MS + 60_000) == (None, False), key
    assert store.lease_states(keys) == {}
