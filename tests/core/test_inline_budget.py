"""The router's inline concurrency budget (jobcore.concurrency): past it, a job that would run inline is queued."""

from __future__ import annotations

import pytest

from jobcore.concurrency import inline_slots, slot_shards
from jobcore.errors import InlineBusyError
from jobcore.model import JobStatus, Mode
from jobcore.requests import SubmitRequest
from tests import fakes
from tests.fakes import MemoryQueue, text_response

MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "Say hi."}]}


class CountedSlots:
    """InlineSlots in memory: ``limit`` at once; records what was taken and given back."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held, self.taken, self.given = limit, 0, 0, 0

    def take(self) -> str | None:
        if self.held >= self.limit:
            return None
        self.held += 1
        self.taken += 1
        return f"slot-{self.taken}"

    def give_back(self, token: str) -> None:
        self.held -= 1
        self.given += 1


def submit(service, mode=Mode.AUTO, **kwargs):
    return service.submit(SubmitRequest(task="claude.messages", input=MESSAGES, mode=mode, **kwargs), tenant_id="tenant-a")


def test_an_inline_run_holds_a_slot_while_it_runs_and_gives_it_back():
    slots = CountedSlots(limit=1)
    service, h = fakes.make_service(inline_slots=slots)
    service.llm = fakes.ScriptedModel(default=lambda params: (slots.held == 1 or pytest.fail("no slot held")) and text_response("hi"))

    job = submit(service).job

    assert job.status is JobStatus.SUCCEEDED and job.lane == "inline"
    assert (slots.taken, slots.given, slots.held) == (1, 1, 0)


def test_with_every_slot_in_use_the_job_is_queued_with_the_reason_and_its_queue_deadline():
    slots = CountedSlots(limit=0)
    queue = MemoryQueue()
    service, h = fakes.make_service(queue=queue, inline_slots=slots)

    submitted = submit(service, max_queue_s=30)
    job = submitted.job

    assert submitted.status_code == 202 and job.status is JobStatus.QUEUED and job.lane == "cpu"
    assert job.route_reason.startswith("cpu: every inline slot of the router is in use") and "(inline:" in job.route_reason
    assert (job.started_at, job.attempts, job.lease_owner) == (None, 0, None)
    assert job.queue_deadline_at == job.created_at + 30_000
    assert queue.sent == [(job.job_id, "cpu")] and h.store.get(job.job_id) == job
    assert service.llm.calls == [] and slots.given == 0


def test_a_sync_job_with_every_slot_in_use_is_refused_with_a_retry_and_not_recorded():
    service, h = fakes.make_service(inline_slots=CountedSlots(limit=0))
    with pytest.raises(InlineBusyError) as refused:
        submit(service, mode=Mode.SYNC)
    assert refused.value.job_id is None and refused.value.retry_after_s > 0 and "mode auto" in str(refused.value)
    assert h.store.jobs == {}


def test_a_queued_job_takes_no_slot():
    slots = CountedSlots(limit=0)
    service, _ = fakes.make_service(inline_slots=slots)
    assert submit(service, mode=Mode.ASYNC).job.lane == "cpu" and slots.taken == 0


def test_the_budget_leaves_a_tenth_to_short_requests_and_enough_counters_for_the_fastest_turnover():
    assert inline_slots(1000) == 900 and inline_slots(1) == 1
    # 900 slots of 1 s runs: 1,800 counter writes a second, at most 800 on each counter item.
    assert slot_shards(900) == 3 and slot_shards(10) == 1
