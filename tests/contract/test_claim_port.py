"""JobStore.claim, on the fake and on DynamoDB: a worker's claim of a queued job in one conditional write,
exactly the transition the runner would write; any other job comes back as it stands, unwritten."""

from __future__ import annotations

import pytest

from jobcore.model import JobStatus, ModelWait, transition
from tests.adapters.support import NOW_MS, make_job

LEASE_UNTIL = NOW_MS + 60_000


def claim(store, job_id: str = "job_1", *, now_ms: int = NOW_MS):
    return store.claim(job_id, owner="worker-a", now_ms=now_ms, lease_expires_at=LEASE_UNTIL)


@pytest.mark.parametrize("retried", [False, True])
def test_a_queued_job_is_claimed_as_the_runner_would_write_it_and_is_watched_by_its_lease(store, retried):
    job = make_job(queue_deadline_at=NOW_MS + 5_000, metadata={"k": "v"}, version=3,
                   attempts=2 if retried else 0, error={"type": "unavailable", "message": "the last attempt's"} if retried else None)
    store.create(job)

    claimed, ok = claim(store)

    expected = transition(job, JobStatus.RUNNING, now_ms=NOW_MS, lease_owner="worker-a", lease_expires_at=LEASE_UNTIL)
    assert ok and claimed == expected == store.get("job_1")
    assert ("job_1", LEASE_UNTIL) in store.watched(until_ms=LEASE_UNTIL, limit=10)
    store.save(transition(expected, JobStatus.SUCCEEDED, now_ms=NOW_MS + 1), expected_version=expected.version)  # its version


def test_a_claim_clears_a_mark_that_the_jobs_message_was_unsent_as_the_transition_does(store):
    job = make_job(unsent_since=NOW_MS - 60_000)
    store.create(job)

    claimed, ok = claim(store)

    expected = transition(job, JobStatus.RUNNING, now_ms=NOW_MS, lease_owner="worker-a", lease_expires_at=LEASE_UNTIL)
    assert ok and expected.unsent_since is None and claimed == expected == store.get("job_1")


@pytest.mark.parametrize("why", ["running", "succeeded", "canceling", "past its deadline", "waiting for the model"])
def test_any_other_job_comes_back_as_it_stands_without_a_write(store, why):
    changes = {
        "running": dict(status=JobStatus.RUNNING, lease_owner="worker-b", lease_expires_at=NOW_MS + 1),
        "succeeded": dict(status=JobStatus.SUCCEEDED, result_json='{"a":1}'),
        "canceling": dict(status=JobStatus.CANCELING, lease_owner="worker-b"),
        "past its deadline": dict(queue_deadline_at=NOW_MS - 1),
        "waiting for the model": dict(model_wait=ModelWait(since=NOW_MS - 9, waits=1, reason="429", next_attempt_at=NOW_MS + 9)),
    }[why]
    job = make_job(version=2, **changes)
    store.create(job)

    found, ok = claim(store)

    assert not ok and found == job == store.get("job_1")


def test_a_missing_job_comes_back_as_none_and_is_not_created(store):
    assert claim(store, "job_missing") == (None, False)
    assert store.get("job_missing") is None


def test_two_claims_of_one_job_one_wins(store):
    store.create(make_job())
    first, second = claim(store), claim(store)
    assert first[1] and not second[1] and second[0] == first[0]  # the loser sees the winner's claim
