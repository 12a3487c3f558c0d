"""A worker's lease in its own item (DynamoJobStore, ``lease#<job id>``) on moto: the claim puts it there, a renewal
writes it alone, the sweeper finds a dead worker's job by it, the run's end takes it out of the watch index, and
what a crash between two writes leaves behind is mended (by the next renewal, or by the sweep)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from jobadapters import schema
from jobadapters.dynamo import DynamoJobStore, _item
from jobadapters.schema import IndexShards
from jobcore.model import JobStatus, transition
from jobcore.sweeper import Sweeper
from tests import fakes
from tests.adapters.support import NOW_MS, make_job

LEASE_MS = 60_000


def raw(table: Any, key: str) -> dict[str, Any] | None:
    return table.get_item(Key={schema.JOBS_PARTITION_KEY: key}, ConsistentRead=True).get("Item")


def claimed(store: DynamoJobStore, job_id: str = "job_1", *, owner: str = "worker-a") -> Any:
    store.create(make_job(job_id))
    job, ok = store.claim(job_id, owner=owner, now_ms=NOW_MS, lease_expires_at=NOW_MS + LEASE_MS)
    assert ok
    return job


def test_a_claim_takes_the_job_out_of_the_watch_index_and_puts_its_lease_item_in(store, table):
    claimed(store)
    item, lease = raw(table, "job_1"), raw(table, "lease#job_1")
    assert schema.WATCH_INDEX_SORT_KEY not in item and item[schema.LEASE_APART_MARK] == 1
    assert (lease["lease_owner"], lease["lease_attempt"], lease["lease_expires_at"]) == ("worker-a", 1, NOW_MS + LEASE_MS)
    assert lease[schema.WATCH_INDEX_SORT_KEY] == NOW_MS + LEASE_MS and "tenant_id" not in lease and "status" not in lease
    assert store.watched(until_ms=NOW_MS + LEASE_MS, limit=10) == [("job_1", NOW_MS + LEASE_MS)]


def test_a_renewal_writes_the_lease_item_alone(store, table):
    claimed(store)
    before = raw(table, "job_1")
    assert store.renew_lease("job_1", owner="worker-a", until_ms=NOW_MS + 80_000)
    assert raw(table, "job_1") == before  # the job item, whatever its size, is not written
    assert raw(table, "lease#job_1")["lease_expires_at"] == NOW_MS + 80_000
    assert store.get("job_1").lease_expires_at == NOW_MS + 80_000


def test_a_worker_that_dies_after_its_claim_is_found_by_its_lease_item_and_its_job_queued_again(store, table):
    claimed(store)
    assert store.renew_lease("job_1", owner="worker-a", until_ms=NOW_MS + 80_000)  # then it dies
    h = fakes.harness()
    h.runner.context.store, queue = store, fakes.MemoryQueue()
    h.clock.now_ms = NOW_MS + 80_000 + 4_000  # within the sweeper's grace: alive as far as it knows
    assert not Sweeper(runner=h.runner, queue=queue, max_attempts=3).sweep()
    h.clock.now_ms = NOW_MS + 80_000 + 6_000
    report = Sweeper(runner=h.runner, queue=queue, max_attempts=3).sweep()
    assert report.requeued == ["job_1"] and queue.sent == [("job_1", "cpu")]
    job = store.get("job_1")
    assert job.status is JobStatus.QUEUED and job.lease_owner is None
    lease = raw(table, "lease#job_1")
    assert "lease_owner" not in lease and schema.WATCH_INDEX_SORT_KEY not in lease  # ended: its renewals fail
    assert not store.renew_lease("job_1", owner="worker-a", until_ms=NOW_MS + 200_000)
    assert [job_id for job_id, _ in store.watched(until_ms=NOW_MS + 10**10, limit=10)] == ["job_1"]  # queued: its own entry


class LeaseWritesFail:
    """The table, refusing the lease items' puts (a throttle, or the process dying between the two writes)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def put_item(self, **kwargs: Any) -> Any:
        if kwargs["Item"][schema.JOBS_PARTITION_KEY].startswith(schema.LEASE_ITEM_PREFIX):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem")
        return self._table.put_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def test_a_claim_whose_lease_item_was_not_written_stands_and_its_first_renewal_writes_it(store, table):
    failing = DynamoJobStore(LeaseWritesFail(table))
    failing.create(make_job("job_1"))
    job, ok = failing.claim("job_1", owner="worker-a", now_ms=NOW_MS, lease_expires_at=NOW_MS + LEASE_MS)
    assert ok and job.status is JobStatus.RUNNING and raw(table, "lease#job_1") is None
    # Meanwhile the job item holds the claim's lease: a second claim is told to wait for its end.
    refused, ok = store.claim("job_1", owner="worker-b", now_ms=NOW_MS + 1, lease_expires_at=NOW_MS + LEASE_MS + 1)
    assert not ok and (refused.lease_owner, refused.lease_expires_at) == ("worker-a", NOW_MS + LEASE_MS)
    assert store.renew_lease("job_1", owner="worker-a", until_ms=NOW_MS + 80_000)
    assert raw(table, "lease#job_1")["lease_owner"] == "worker-a"
    assert store.get("job_1").lease_expires_at == NOW_MS + 80_000
    assert store.watched(until_ms=NOW_MS + 10**10, limit=10) == [("job_1", NOW_MS + 80_000)]


def test_a_lease_item_a_crash_left_behind_leaves_the_watch_index_when_the_sweep_meets_it(store, table):
    job = claimed(store)
    # The run ended, written by a process that died before ending the lease item.
    done = transition(job, JobStatus.SUCCEEDED, now_ms=NOW_MS + 1_000)
    table.put_item(Item=_item(done, IndexShards()))
    assert store.watched(until_ms=NOW_MS + 10**10, limit=10) == []
    lease = raw(table, "lease#job_1")
    assert "lease_owner" not in lease and schema.WATCH_INDEX_SORT_KEY not in lease


def test_a_lease_item_of_the_job_s_current_run_is_not_taken_for_one_left_behind(store, table):
    claimed(store)
    store.renew_lease("job_1", owner="worker-a", until_ms=NOW_MS + 70_000)
    assert store.watched(until_ms=NOW_MS + 10**10, limit=10) == [("job_1", NOW_MS + 70_000)]
    assert raw(table, "lease#job_1")["lease_owner"] == "worker-a"


def test_an_item_written_before_the_lease_item_keeps_its_lease_in_itself_until_its_owner_renews_it(store, table):
    """A job claimed by the code before (its lease and its watch entry in the job item) reads, is watched and is
    swept as then; its owner's first renewal with this code moves the lease into its own item."""
    old = transition(make_job("job_old"), JobStatus.RUNNING, now_ms=NOW_MS, lease_owner="worker-a",
                     lease_expires_at=NOW_MS + LEASE_MS)
    table.put_item(Item=_item(old, IndexShards()))
    assert store.get("job_old") == old
    assert store.watched(until_ms=NOW_MS + LEASE_MS, limit=10) == [("job_old", NOW_MS + LEASE_MS)]
    assert not store.renew_lease("job_old", owner="worker-b", until_ms=NOW_MS + 90_000)
    assert store.renew_lease("job_old", owner="worker-a", until_ms=NOW_MS + 90_000)
    assert store.get("job_old") == replace(old, lease_expires_at=NOW_MS + 90_000)
    assert store.watched(until_ms=NOW_MS + 10**10, limit=10) == [("job_old", NOW_MS + 90_000)]
    assert schema.WATCH_INDEX_SORT_KEY not in raw(table, "job_old")
