"""The job lifecycle: which moves are allowed, and what each move records."""

import pytest

from jobcore.errors import InvalidTransitionError
from jobcore.limits import MAX_QUEUED_S, QUEUE_RETENTION_S
from jobcore.model import ALLOWED, TERMINAL, Job, JobStatus, Mode, Usage, Webhook, queued_limit_at, transition, watch_at


def make_job(status: JobStatus = JobStatus.QUEUED, **changes) -> Job:
    fields = dict(
        job_id="job_1", tenant_id="t1", task="claude.messages", status=status, lane="cpu",
        route_reason="cpu: test", created_at=1_000, updated_at=1_000,
    )
    fields.update(changes)
    return Job(**fields)


def test_every_terminal_state_is_final():
    for status in TERMINAL:
        for target in JobStatus:
            with pytest.raises(InvalidTransitionError):
                transition(make_job(status), target, now_ms=2_000)


def test_non_terminal_states_have_rules_and_terminal_ones_none():
    assert set(ALLOWED) == {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELING}
    assert JobStatus.SUCCEEDED.terminal and not JobStatus.RUNNING.terminal and not JobStatus.CANCELING.terminal


@pytest.mark.parametrize("to", sorted(set(JobStatus) - {JobStatus.CANCELED}))
def test_a_job_being_canceled_can_only_end_canceled(to):
    canceling = make_job(JobStatus.CANCELING)
    with pytest.raises(InvalidTransitionError):
        transition(canceling, to, now_ms=2_000)
    assert transition(canceling, JobStatus.CANCELED, now_ms=2_000).status is JobStatus.CANCELED


def test_the_lease_ends_with_the_run_and_the_sweeper_watches_what_needs_it():
    running = make_job(JobStatus.RUNNING, lease_owner="worker-1", lease_expires_at=9_000)
    assert watch_at(running) == 9_000 and watch_at(transition(running, JobStatus.CANCELING, now_ms=2_000)) == 9_000
    done = transition(running, JobStatus.SUCCEEDED, now_ms=2_000)
    assert (done.lease_owner, done.lease_expires_at, watch_at(done)) == (None, None, None)
    queued = make_job(JobStatus.QUEUED, queue_deadline_at=5_000)
    assert watch_at(queued) == 5_000
    # Every queued job is watched: at the latest until its queue's retention nears its end, at once if unsent.
    limit = 1_000 + MAX_QUEUED_S * 1000
    assert watch_at(make_job(JobStatus.QUEUED)) == queued_limit_at(queued) == limit < 1_000 + QUEUE_RETENTION_S * 1000
    assert watch_at(make_job(JobStatus.QUEUED, queue_deadline_at=limit + 1)) == limit
    assert watch_at(make_job(JobStatus.QUEUED, unsent_since=3_000, queue_deadline_at=5_000)) == 3_000


def test_a_claim_clears_an_unsent_mark():
    running = transition(make_job(JobStatus.QUEUED, unsent_since=3_000), JobStatus.RUNNING, now_ms=4_000)
    assert running.unsent_since is None


def test_queued_cannot_succeed_without_running():
    with pytest.raises(InvalidTransitionError, match="queued to succeeded"):
        transition(make_job(), JobStatus.SUCCEEDED, now_ms=2_000)


def test_starting_counts_the_attempt_and_stamps_start_and_version():
    running = transition(make_job(), JobStatus.RUNNING, now_ms=2_000)
    assert (running.status, running.attempts, running.started_at, running.version, running.updated_at) == (
        JobStatus.RUNNING, 1, 2_000, 1, 2_000)
    again = transition(running, JobStatus.RUNNING, now_ms=3_000)  # a redelivered message re-claims
    assert again.attempts == 2 and again.version == 2


def test_finishing_stamps_finished_at_and_keeps_changes():
    running = transition(make_job(), JobStatus.RUNNING, now_ms=2_000)
    done = transition(running, JobStatus.SUCCEEDED, now_ms=5_000, result_ref="results/job_1.json")
    assert done.finished_at == 5_000 and done.result_ref == "results/job_1.json"
    assert done.started_at == 2_000


def test_dict_roundtrip_keeps_every_field():
    job = make_job(
        JobStatus.RUNNING, mode=Mode.ASYNC, webhook=Webhook("https://example.com/h", ("failed",)),
        usage=Usage(3, 4, 1), metadata={"k": "v"}, cost={"estimate": {"total": 0.5}}, hints={"memory_mb": 512},
    )
    assert Job.from_dict(job.to_dict()) == job
    assert job.to_dict()["status"] == "running" and job.to_dict()["webhook"]["events"] == ["failed"]


def test_usage_adds_every_count_and_old_items_without_cache_counts_still_read():
    total = Usage(10, 5, 1, cache_creation_input_tokens=100) + Usage(1, 2, 1, cache_read_input_tokens=100, cache_creation_1h_input_tokens=3)
    assert total == Usage(11, 7, 2, cache_creation_input_tokens=100, cache_read_input_tokens=100, cache_creation_1h_input_tokens=3)
    old = make_job(JobStatus.SUCCEEDED).to_dict() | {"usage": {"input_tokens": 3, "output_tokens": 4, "model_calls": 1}}
    assert Job.from_dict(old).usage == Usage(3, 4, 1)
    cached = make_job(usage=Usage(3, 4, 1, cache_read_input_tokens=2_000))
    assert Job.from_dict(cached.to_dict()).usage.cache_read_input_tokens == 2_000
