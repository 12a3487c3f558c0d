"""A job's model calls are paced as its tenant's, on its path (queued or inline), wherever the paced model sits among
the model's wrappers (failover between providers, the inline deadline, metering), and the time they waited for
grants is in the job's record; threads the job starts for its calls carry the binding with them."""

from __future__ import annotations

from typing import Any

from jobcore.breaker import BreakerPolicy, Breakers, MemoryBreakerStore
from jobcore.capacity import Amount, CapacityConfig, RateLimits, SharedBucket
from jobcore.capacity_pacer import Grant, PacedModel, Pacer, current_pacing, pacing
from jobcore.failover import FailoverModel
from jobcore.model import Job, JobStatus
from jobcore.providers import ANTHROPIC
from jobcore.requests import SubmitRequest
from jobcore.tasks import ModelRequest, RunContext
from jobcore.tasks.base import call_all
from tests.fakes import MemoryCapacityStore, MemoryQueue, ScriptedModel, harness, make_service, text_response

LIMITS = RateLimits(rpm=120, itpm=40_000, otpm=16_000)  # a request every 500 ms
MODEL = "claude-sonnet-4-6"
MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


class RecordingPacer(Pacer):
    """A Pacer that notes for whom each grant was asked."""

    asked: list[tuple[str, bool, float]]

    def acquire(self, model_id: str, tenant: str, demand: Amount, *, inline: bool, max_wait_s: float,
                provider: str = ANTHROPIC) -> Grant | None:
        self.asked.append((tenant, inline, max_wait_s))
        return super().acquire(model_id, tenant, demand, inline=inline, max_wait_s=max_wait_s, provider=provider)


def recording_pacer(h, family: str, levels: Amount, *, limits_key: str | None = None) -> RecordingPacer:
    store = MemoryCapacityStore()
    store.buckets[family] = SharedBucket(levels, h.clock.ms(), version=1)
    config = CapacityConfig(limits={limits_key or family: LIMITS})
    pacer = RecordingPacer(store, config, h.clock.ms, wait=lambda _c, s: h.clock.advance(s))
    pacer.asked = []
    return pacer


def test_a_queued_job_is_paced_as_its_tenant_through_failover_and_its_wait_is_recorded():
    """GIVEN two providers behind FailoverModel, the first paced, its budget's requests spent
    WHEN a worker runs a queued job of tenant t
    THEN its call asks for a grant as t, queued (not as tenant "-"), waits for the requests to refill, and the
    job succeeds with that wait in its capacity_wait_ms."""
    h = harness()
    pacer = recording_pacer(h, "sonnet-4", Amount(0, 40_000, 16_000))
    first, second = ScriptedModel([text_response("paced")]), ScriptedModel()
    breakers = Breakers(MemoryBreakerStore(), BreakerPolicy(), h.clock.ms)
    llm = FailoverModel([("anthropic", PacedModel(first, pacer, MODEL)), ("bedrock", second)], breakers)
    job = Job(job_id="job_1", tenant_id="t", task="claude.messages", status=JobStatus.QUEUED, lane="cpu",
              route_reason="cpu: test", created_at=h.clock.ms(), updated_at=h.clock.ms(), input={"model": MODEL, **MESSAGES})
    h.store.create(job)

    h.runner.process("job_1", ctx=RunContext(llm=llm, model_id=MODEL), receive_count=1, max_receives=5)

    done = h.store.get("job_1")
    assert done.status is JobStatus.SUCCEEDED and len(first.calls) == 1 and not second.calls
    assert pacer.asked == [("t", False, 30.0)]
    assert done.capacity_wait_ms >= 500
    assert current_pacing() is None  # the binding ends with the run


def test_an_inline_job_is_paced_as_its_tenant_inside_the_deadline_model_and_its_wait_is_recorded():
    """GIVEN admission on, the budget's requests spent (an inline call may use the whole bucket)
    WHEN a job runs inline (its model wrapped in the inline deadline)
    THEN its call asks for a grant as its tenant, inline, within the inline budget, and the job's record shows the wait."""
    h = harness()
    pacer = recording_pacer(h, "claude-default", Amount(0, 40_000, 16_000), limits_key="*")
    model = ScriptedModel(default=lambda params: text_response("ok"))
    service, h = make_service(llm=FailoverModel([("anthropic", PacedModel(model, pacer, "claude-default"))], None),
                              queue=MemoryQueue(), h=h, pacer=pacer)

    done = service.submit(SubmitRequest(task="claude.messages", input=MESSAGES), tenant_id="tenant-b")

    assert done.status_code == 200 and done.job.status is JobStatus.SUCCEEDED and len(model.calls) == 1
    budget_s = service.policy.lanes.inline.time_limit_s
    assert pacer.asked == [("tenant-b", True, budget_s)]
    assert h.store.get(done.job.job_id).capacity_wait_ms >= 500


def test_threads_started_for_a_jobs_calls_carry_its_binding_and_add_to_its_wait():
    """The tasks' pool (``call_all``, each call in a copy of the starter's context) runs a job's calls in threads of
    its own: each sees the job's binding, and their waits add up in it."""
    seen: list[Any] = []

    class Recording:
        def create(self, params: Any, *, timeout_s: float | None = None) -> dict[str, Any]:
            current = current_pacing()
            seen.append(current)
            assert current is not None
            current.waited(250)
            return text_response(params["messages"][0]["content"])

    requests = [ModelRequest(f"r{i}", {"model": MODEL, **MESSAGES}) for i in range(2)]
    with pacing("t", inline=False) as job:
        answers = call_all(requests, RunContext(llm=Recording(), model_id=MODEL, concurrency=2))
    assert set(answers) == {"r0", "r1"}
    assert seen == [job, job] and job.waited_ms == 500
