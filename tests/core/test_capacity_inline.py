"""Inline jobs under admission: they go ahead of queued work and may use its reserve; one that cannot get a grant
within the inline budget falls back to the queue (auto), delayed until the next grant, or is refused with a
Retry-After computed from the bucket (sync)."""

from __future__ import annotations

import pytest

from jobcore.capacity import Amount, CapacityConfig, RateLimits, SharedBucket
from jobcore.capacity_pacer import PacedModel, Pacer
from jobcore.errors import SyncUnavailableError
from jobcore.model import JobStatus, Mode
from jobcore.requests import SubmitRequest
from jobcore.views import job_view
from tests.fakes import MemoryCapacityStore, MemoryQueue, ScriptedModel, harness, make_service, text_response

LIMITS = RateLimits(rpm=120, itpm=40_000, otpm=16_000)
MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def paced_service(levels: Amount):
    h = harness()
    store = MemoryCapacityStore()
    store.buckets["claude-default"] = SharedBucket(levels, h.clock.ms(), version=1)
    pacer = Pacer(store, CapacityConfig(limits={"*": LIMITS}), h.clock.ms, wait=lambda _c, s: h.clock.advance(s))
    model = ScriptedModel(default=lambda params: text_response("ok"))
    queue = MemoryQueue()
    service, h = make_service(llm=PacedModel(model, pacer, "claude-default"), queue=queue, h=h, pacer=pacer)
    return service, h, model, queue


def submit(service, mode: Mode = Mode.AUTO):
    return service.submit(SubmitRequest(task="claude.messages", input=MESSAGES, mode=mode), tenant_id="tenant-b")


def test_an_inline_job_uses_the_reserve_that_queued_work_left():
    """GIVEN queued work that has spent the bucket down to the inline reserve (10 % of each limit)
    THEN an inline job is granted at once and answers 200."""
    service, _, model, _ = paced_service(LIMITS.capacity.scaled(0.1))
    done = submit(service)
    assert done.status_code == 200 and done.job.status is JobStatus.SUCCEEDED and len(model.calls) == 1


def test_an_inline_job_without_a_grant_in_its_budget_is_queued_until_the_next_grant_expected():
    """GIVEN a bucket 10 minutes in debt on input tokens
    WHEN an auto job is submitted
    THEN the model is not called; the job is queued (202), delayed until its grant is expected, its view saying so."""
    service, h, model, queue = paced_service(Amount(120, -400_000, 16_000))
    queued = submit(service)
    capacity = service.capacity(tenant_id="tenant-b")
    assert capacity["admission"] == "on" and capacity["waiting"]["jobs"] == 1
    assert capacity["budgets"][0]["limits"] == LIMITS.to_dict() and capacity["budgets"][0]["in_use"]["input_tokens"] == 1
    assert service.capacity(tenant_id="tenant-a")["waiting"]["jobs"] == 0  # only one's own jobs
    assert queued.status_code == 202 and queued.job.status is JobStatus.QUEUED and not model.calls
    job = h.store.get(queued.job.job_id)
    assert job.model_wait.capacity and job.model_wait.next_attempt_at > h.clock.ms() + 590_000
    assert job_view(job)["waiting"].startswith("model capacity (input tokens); next grant expected at")
    assert queue.delays[0] >= 590


def test_a_sync_job_without_a_grant_is_refused_with_a_retry_after_from_the_bucket():
    service, _, model, _ = paced_service(Amount(120, -40_000, 16_000))  # a minute in debt
    with pytest.raises(SyncUnavailableError) as refused:
        submit(service, Mode.SYNC)
    assert 60 <= refused.value.retry_after_s <= 62 and not model.calls
