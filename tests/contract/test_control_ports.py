"""The JobStore's job-control methods, one suite over the in-memory fake and DynamoDB on moto:
list, leases, the sweeper's watch index and idempotency keys. The fake must answer as DynamoDB does."""

from __future__ import annotations

from dataclasses import replace

from jobcore.idempotency import new_record
from jobcore.limits import MAX_QUEUED_S, QUEUE_RETENTION_S
from jobcore.model import Job, JobStatus, transition
from jobcore.ports import Cursor, JobStore
from tests.contract.test_ports import NOW_MS, queued_job


def made(store: JobStore, job_id: str, *, tenant: str = "tenant-a", at: int = NOW_MS, **changes) -> Job:
    job = replace(queued_job(job_id), tenant_id=tenant, created_at=at, updated_at=at, **changes)
    store.create(job)
    return job


def running(store: JobStore, job: Job, *, owner: str = "worker-a", until: int = NOW_MS + 60_000) -> Job:
    claimed = transition(job, JobStatus.RUNNING, now_ms=NOW_MS, lease_owner=owner, lease_expires_at=until)
    store.save(claimed, expected_version=job.version)
    return claimed


# -- list ------------------------------------------------------------------------------------------

def test_list_jobs_newest_first_in_pages_only_the_tenants(store):
    ids = [made(store, f"job_{i:02d}", at=NOW_MS + i).job_id for i in range(5)]
    made(store, "job_other", tenant="tenant-b", at=NOW_MS + 10)
    page, after = store.list_jobs("tenant-a", status=None, limit=2, after=None)
    assert [j.job_id for j in page] == ids[::-1][:2] and after == Cursor(NOW_MS + 3, "job_03")
    page, after = store.list_jobs("tenant-a", status=None, limit=2, after=after)
    assert [j.job_id for j in page] == ids[::-1][2:4]
    page, after = store.list_jobs("tenant-a", status=None, limit=2, after=after)
    assert [j.job_id for j in page] == ids[:1] and after is None


def test_list_jobs_filters_by_status_across_pages(store):
    for i in range(6):
        job = made(store, f"job_{i:02d}", at=NOW_MS + i)
        if i % 3 == 0:
            running(store, job)
    seen, after = [], None
    while True:
        page, after = store.list_jobs("tenant-a", status=JobStatus.RUNNING, limit=1, after=after)
        seen += [j.job_id for j in page]
        if after is None:
            break
    assert seen == ["job_03", "job_00"]


def test_list_jobs_never_lists_idempotency_records(store):
    made(store, "job_a")
    store.reserve_key(new_record(tenant_id="tenant-a", key="k", job_id="job_a", body={}, now_ms=NOW_MS))
    page, _ = store.list_jobs("tenant-a", status=None, limit=10, after=None)
    assert [j.job_id for j in page] == ["job_a"]


# -- leases and the watch index --------------------------------------------------------------------

def test_renew_lease_extends_it_without_a_new_version_for_its_owner_only(store):
    job = running(store, made(store, "job_a"))
    assert store.renew_lease("job_a", owner="worker-a", until_ms=NOW_MS + 90_000) is True
    renewed = store.get("job_a")
    assert renewed.lease_expires_at == NOW_MS + 90_000 and renewed.version == job.version
    assert store.renew_lease("job_a", owner="worker-a", until_ms=NOW_MS + 95_000) is True  # again: the lease alone
    assert store.get("job_a").lease_expires_at == NOW_MS + 95_000 and store.get("job_a").version == job.version
    assert store.renew_lease("job_a", owner="worker-b", until_ms=NOW_MS + 99_000) is False
    assert store.renew_lease("job_missing", owner="worker-a", until_ms=NOW_MS) is False


def test_a_claimed_lease_is_renewed_and_read_back_and_ends_with_the_run(store):
    made(store, "job_a")
    claimed, ok = store.claim("job_a", owner="worker-a", now_ms=NOW_MS, lease_expires_at=NOW_MS + 60_000)
    assert ok and claimed.lease_expires_at == NOW_MS + 60_000
    assert store.renew_lease("job_a", owner="worker-a", until_ms=NOW_MS + 80_000) is True
    assert store.renew_lease("job_a", owner="worker-b", until_ms=NOW_MS + 99_000) is False
    held = store.get("job_a")
    assert (held.lease_owner, held.lease_expires_at, held.version) == ("worker-a", NOW_MS + 80_000, claimed.version)
    # A second claim is refused, the job coming back with its lease as renewed (the runner waits for its end).
    refused, ok = store.claim("job_a", owner="worker-b", now_ms=NOW_MS + 1, lease_expires_at=NOW_MS + 60_001)
    assert not ok and refused.lease_expires_at == NOW_MS + 80_000
    assert store.watched(until_ms=NOW_MS + 79_999, limit=10) == []
    assert store.watched(until_ms=NOW_MS + 80_000, limit=10) == [("job_a", NOW_MS + 80_000)]
    store.save(transition(held, JobStatus.SUCCEEDED, now_ms=NOW_MS + 2), expected_version=held.version)
    assert store.renew_lease("job_a", owner="worker-a", until_ms=NOW_MS + 99_000) is False
    assert store.watched(until_ms=NOW_MS + 10**9, limit=10) == []


def test_a_renewed_lease_survives_a_cancel_and_the_canceled_job_leaves_the_watch(store):
    job = running(store, made(store, "job_a"))
    assert store.renew_lease("job_a", owner="worker-a", until_ms=NOW_MS + 90_000) is True
    canceling = transition(store.get("job_a"), JobStatus.CANCELING, now_ms=NOW_MS)
    store.save(canceling, expected_version=job.version)
    assert store.renew_lease("job_a", owner="worker-a", until_ms=NOW_MS + 100_000) is True  # its run ends first
    assert store.get("job_a").lease_expires_at == NOW_MS + 100_000
    assert store.watched(until_ms=NOW_MS + 10**9, limit=10) == [("job_a", NOW_MS + 100_000)]
    done = transition(store.get("job_a"), JobStatus.CANCELED, now_ms=NOW_MS)
    store.save(done, expected_version=canceling.version)
    assert store.renew_lease("job_a", owner="worker-a", until_ms=NOW_MS + 2) is False
    assert store.watched(until_ms=NOW_MS + 10**9, limit=10) == []


def test_a_lease_taken_over_by_another_runner_is_the_new_one(store):
    """A dead worker's job claimed again by a save: the old owner's renewals fail, the new owner's hold."""
    job = running(store, made(store, "job_a"))
    assert store.renew_lease("job_a", owner="worker-a", until_ms=NOW_MS + 61_000) is True
    old = store.get("job_a")
    taken = transition(old, JobStatus.RUNNING, now_ms=NOW_MS + 70_000, lease_owner="worker-b",
                       lease_expires_at=NOW_MS + 130_000)
    store.save(taken, expected_version=job.version)
    assert store.renew_lease("job_a", owner="worker-a", until_ms=NOW_MS + 140_000) is False
    assert store.renew_lease("job_a", owner="worker-b", until_ms=NOW_MS + 150_000) is True
    now = store.get("job_a")
    assert (now.lease_owner, now.lease_expires_at, now.attempts) == ("worker-b", NOW_MS + 150_000, 2)
    assert store.watched(until_ms=NOW_MS + 10**9, limit=10) == [("job_a", NOW_MS + 150_000)]


def test_lease_states_reads_the_status_and_owner_of_the_jobs_that_exist_without_a_write(store):
    job = running(store, made(store, "job_run"))
    made(store, "job_queued")
    canceling = transition(job, JobStatus.CANCELING, now_ms=NOW_MS)
    store.save(canceling, expected_version=job.version)
    many = [f"job_{n}" for n in range(150)]  # more than one BatchGetItem takes
    for job_id in many[:3]:
        made(store, job_id)

    states = store.lease_states(["job_run", "job_queued", "job_missing", "job_run", *many])

    assert states == {"job_run": (JobStatus.CANCELING, "worker-a"), "job_queued": (JobStatus.QUEUED, None),
                      **{job_id: (JobStatus.QUEUED, None) for job_id in many[:3]}}
    assert store.get("job_run") == canceling  # nothing written
    assert store.lease_states([]) == {}


def test_watched_lists_leases_and_queue_deadlines_due_earliest_first(store):
    running(store, made(store, "job_run"), until=NOW_MS + 30_000)
    made(store, "job_deadline", queue_deadline_at=NOW_MS + 10_000)
    made(store, "job_plain")
    assert store.watched(until_ms=NOW_MS + 5_000, limit=10) == []
    assert store.watched(until_ms=NOW_MS + 60_000, limit=10) == [("job_deadline", NOW_MS + 10_000), ("job_run", NOW_MS + 30_000)]
    assert store.watched(until_ms=NOW_MS + 60_000, limit=1) == [("job_deadline", NOW_MS + 10_000)]


def test_every_queued_job_is_watched_an_unsent_one_at_once_any_other_before_its_queue_could_drop_it(store):
    made(store, "job_plain")
    made(store, "job_unsent", unsent_since=NOW_MS + 1)
    made(store, "job_late_deadline", queue_deadline_at=NOW_MS + QUEUE_RETENTION_S * 1000)
    limit = NOW_MS + MAX_QUEUED_S * 1000
    assert store.watched(until_ms=NOW_MS + 60_000, limit=10) == [("job_unsent", NOW_MS + 1)]
    assert store.watched(until_ms=limit, limit=10) == [
        ("job_unsent", NOW_MS + 1), ("job_late_deadline", limit), ("job_plain", limit)]


def test_a_renewed_lease_moves_in_the_watch_index_and_a_finished_job_leaves_it(store):
    job = running(store, made(store, "job_run"), until=NOW_MS + 30_000)
    store.renew_lease("job_run", owner="worker-a", until_ms=NOW_MS + 90_000)
    assert store.watched(until_ms=NOW_MS + 60_000, limit=10) == []
    assert store.watched(until_ms=NOW_MS + 90_000, limit=10) == [("job_run", NOW_MS + 90_000)]
    store.save(transition(store.get("job_run"), JobStatus.SUCCEEDED, now_ms=NOW_MS), expected_version=job.version)
    assert store.watched(until_ms=NOW_MS + 10**9, limit=10) == []


# -- idempotency keys ------------------------------------------------------------------------------

def test_reserve_key_once_then_the_first_record_comes_back(store):
    first = new_record(tenant_id="t", key="k", job_id="job_1", body={"a": 1}, now_ms=NOW_MS)
    assert store.reserve_key(first) is None
    second = new_record(tenant_id="t", key="k", job_id="job_2", body={"a": 2}, now_ms=NOW_MS + 5)
    held = store.reserve_key(second)
    assert held == first
    store.complete_key(first.record_id, status_code=202)
    assert store.reserve_key(second) == replace(first, status_code=202)
    assert store.get(first.record_id) is None  # a key is not a job


def test_a_released_key_can_be_reserved_again(store):
    first = new_record(tenant_id="t", key="k", job_id="job_1", body={}, now_ms=NOW_MS)
    store.reserve_key(first)
    store.release_key(first.record_id)
    again = new_record(tenant_id="t", key="k", job_id="job_2", body={}, now_ms=NOW_MS + 1)
    assert store.reserve_key(again) is None
    assert store.reserve_key(first).job_id == "job_2"
