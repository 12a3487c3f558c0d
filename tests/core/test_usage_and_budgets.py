"""Usage per tenant (counted once, by the terminal write), the usage query and view, the budget check at submission,
and the cap a job's max_cost_usd puts on its model calls."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import replace

import pytest
from fakes import LANES, MemoryUsageStore, ScriptedModel, make_service, text_response

from jobcore import usage
from jobcore.costing import CostModel
from jobcore.errors import BudgetExceededError, ConflictError, InvalidInputError, ModelUnavailableError, StoreUnavailableError
from jobcore.metering import MeteredModel, ceiling, check_submission
from jobcore.model import Job, JobStatus, Usage
from jobcore.pricing import default_prices
from jobcore.requests import parse_submit
from jobcore.tasks import RunContext
from jobcore.tasks.base import usage_of
from jobcore.views import render

SHORT = {"task": "claude.messages", "input": {"max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}}


def cost_model() -> CostModel:
    return CostModel(default_prices(), LANES)


def service_with_usage(script=(), **fields):
    service, h = make_service(script, cost_model=cost_model(), **fields)
    h.runner.context.usage = h.store.usage
    h.runner.cost_model = cost_model()
    return service, h


# --- counting -----------------------------------------------------------------------------------


def test_a_finished_job_adds_its_outcome_tokens_time_and_cost_to_its_tenants_day():
    service, h = service_with_usage([text_response("hello", input_tokens=120, output_tokens=30)])
    done = service.submit(parse_submit(SHORT), tenant_id="t1").job
    assert done.status is JobStatus.SUCCEEDED

    (item,) = h.runner.usage.items.values()
    day = usage.day_of(done.finished_at)
    assert list(h.runner.usage.items) == [("t1", day)]
    assert item["claude.messages|inline|jobs_succeeded"] == 1
    assert item["claude.messages|inline|input_tokens"] == 120 and item["claude.messages|inline|output_tokens"] == 30
    assert item["claude.messages|inline|cost_micro_usd"] == usage.micro_usd(done.cost["actual"]["total"])


def test_a_job_is_counted_once_even_when_a_later_write_loses():
    service, h = service_with_usage([text_response("a")])
    done = service.submit(parse_submit(SHORT), tenant_id="t1").job
    with pytest.raises(ConflictError):
        h.runner.finish(replace(done, status=JobStatus.RUNNING, version=done.version - 1), JobStatus.FAILED)
    (item,) = h.runner.usage.items.values()
    assert sum(v for k, v in item.items() if "|jobs_" in k) == 1


def test_the_usage_view_groups_by_day_task_or_lane_and_keeps_tenants_apart():
    service, h = service_with_usage(llm=ScriptedModel(default=lambda p: text_response("x", input_tokens=10, output_tokens=5)))
    for tenant, count in (("t1", 3), ("t2", 2)):
        for _ in range(count):
            service.submit(parse_submit(SHORT), tenant_id=tenant)
        h.clock.advance(86_400)
    view = service.usage(tenant_id="t1", params={"group_by": "task", "from": "2023-11-01", "to": "2023-11-30"})
    assert view["total"]["jobs"] == {"total": 3, "succeeded": 3}
    assert view["total"]["tokens"] == {"input": 30, "output": 15, "cache_read": 0, "cache_write": 0}
    assert [group["task"] for group in view["groups"]] == ["claude.messages"]
    by_day = service.usage(tenant_id="t2", params={"from": "2023-11-01", "to": "2023-11-30"})
    assert [group["jobs"]["total"] for group in by_day["groups"]] == [2]


class CountingUsageStore(MemoryUsageStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[str]] = []

    def read(self, tenant_id, days):
        self.reads.append(list(days))
        return super().read(tenant_id, days)


def test_the_usage_view_with_a_budget_reads_the_days_once_and_counts_only_this_months_spend():
    """GET /v1/usage over last month and this one, for a tenant with a budget: one read of the days asked for and
    this month's; the report covers both months, the budget only this month's spend."""
    service, h = service_with_usage(llm=ScriptedModel(default=lambda p: text_response("x", input_tokens=10, output_tokens=5)))
    h.runner.context.usage = h.store.usage = store = CountingUsageStore()
    november = service.submit(parse_submit(SHORT), tenant_id="t1").job  # 2023-11-14
    h.clock.advance(17 * 86_400)
    december = service.submit(parse_submit(SHORT), tenant_id="t1").job  # 2023-12-01
    assert usage.day_of(november.finished_at)[:7] == "2023-11" and usage.day_of(december.finished_at) == "2023-12-01"
    service.budgets_usd = {"t1": 10.0}
    store.reads.clear()

    view = service.usage(tenant_id="t1", params={"from": "2023-11-01", "to": "2023-12-01"})

    assert len(store.reads) == 1 and len(store.reads[0]) == len(set(store.reads[0])) == 31
    assert view["total"]["jobs"] == {"total": 2, "succeeded": 2}
    spent = december.cost["actual"]["total"]
    assert view["budget"]["month_spent_usd"] == pytest.approx(spent, abs=1e-6)
    assert view["budget"]["remaining_usd"] == pytest.approx(10.0 - spent, abs=1e-6)
    # A range that leaves out this month still reads it, in the same read, for the budget.
    store.reads.clear()
    earlier = service.usage(tenant_id="t1", params={"from": "2023-11-01", "to": "2023-11-30"})
    assert len(store.reads) == 1 and "2023-12-01" in store.reads[0]
    assert earlier["total"]["jobs"]["total"] == 1 and earlier["budget"]["month_spent_usd"] == view["budget"]["month_spent_usd"]


@pytest.mark.parametrize("params, field", [
    ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
    ({"from": "2026-01-01", "to": "2026-06-01"}, "from"),
    ({"from": "yesterday"}, "from"),
    ({"group_by": "tenant"}, "group_by"),
    ({"until": "2026-01-01"}, "query.until"),
    ({"to": ""}, "to"),  # given empty is not absent: the schema's date format refuses it (the API fuzz found it)
    ({"from": ""}, "from"),
    ({"group_by": ""}, "group_by"),
])
def test_a_bad_usage_query_names_its_field(params, field):
    with pytest.raises(InvalidInputError) as raised:
        usage.parse_query(params, now_ms=1_767_225_600_000)
    assert raised.value.field == field


def test_the_default_range_is_this_month_so_far():
    query = usage.parse_query({}, now_ms=int(dt.datetime(2026, 3, 17, 12, tzinfo=dt.UTC).timestamp() * 1000))
    assert (query.first.isoformat(), query.last.isoformat(), query.group_by) == ("2026-03-01", "2026-03-17", "day")


# --- budgets at submission ----------------------------------------------------------------------


def test_check_submission_names_the_figures():
    check_submission(estimate_usd=1.0, max_cost_usd=1.0, budget_usd=5.0, month_spent_usd=4.0)  # exactly at both limits
    with pytest.raises(BudgetExceededError) as over_cap:
        check_submission(estimate_usd=1.5, max_cost_usd=1.0, budget_usd=None, month_spent_usd=0)
    assert over_cap.value.figures == {"estimate_usd": 1.5, "max_cost_usd": 1.0}
    with pytest.raises(BudgetExceededError) as over_budget:
        check_submission(estimate_usd=1.0, max_cost_usd=None, budget_usd=5.0, month_spent_usd=4.5)
    assert over_budget.value.figures["remaining_usd"] == 0.5


def test_the_submission_that_would_pass_the_monthly_budget_is_refused_and_the_one_before_it_is_not():
    service, h = service_with_usage(llm=ScriptedModel(default=lambda p: text_response("x")))
    estimate = service.submit(parse_submit(SHORT), tenant_id="free").job.cost["estimate"]["total"]
    # Room for one estimate and a micro-dollar: the first job fits, the second would pass it (the first spent more).
    service.budgets_usd = {"capped": estimate + 0.000001}
    accepted = [service.submit(parse_submit(SHORT), tenant_id="capped").job]
    assert all(job.status is JobStatus.SUCCEEDED for job in accepted)
    with pytest.raises(BudgetExceededError) as refused:
        service.submit(parse_submit(SHORT), tenant_id="capped")
    spent = sum(job.cost["actual"]["total"] for job in accepted)
    assert refused.value.figures["month_spent_usd"] == pytest.approx(spent, abs=1e-6)
    assert service.submit(parse_submit(SHORT), tenant_id="free").job.status is JobStatus.SUCCEEDED  # another tenant's own


def test_max_cost_usd_under_the_estimate_is_refused_before_anything_is_recorded():
    service, h = service_with_usage([text_response("x")])
    with pytest.raises(BudgetExceededError):
        service.submit(parse_submit({**SHORT, "max_cost_usd": 0.000001}), tenant_id="t1")
    assert not h.store.jobs


@pytest.mark.parametrize("value", [0, -1, "1", 10**7])
def test_max_cost_usd_must_be_a_positive_number(value):
    with pytest.raises(InvalidInputError, match="max_cost_usd"):
        parse_submit({**SHORT, "max_cost_usd": value})


# --- the cap on a running job -------------------------------------------------------------------


def price(model, used: Usage) -> float:
    return used.input_tokens * 3e-6 + used.output_tokens * 15e-6


def test_a_call_whose_ceiling_would_pass_the_cap_is_refused_between_calls():
    params = {"max_tokens": 100, "messages": [{"role": "user", "content": "x" * 50}]}
    one_call = price(None, ceiling(params))
    llm = ScriptedModel(default=lambda p: text_response("y", input_tokens=60, output_tokens=100))
    meter = MeteredModel(llm, price=price, usage_of=usage_of, cap_usd=one_call * 1.5)
    meter.create(params)  # fits: nothing spent yet
    with pytest.raises(BudgetExceededError, match="max_cost_usd"):
        meter.create(params)  # spent + its ceiling would pass the cap
    assert len(llm.calls) == 1 and meter.usage.model_calls == 1
    assert meter.spent_usd <= one_call * 1.5


def test_calls_in_flight_count_against_the_cap():
    params = {"max_tokens": 100, "messages": [{"role": "user", "content": "x"}]}
    entered, release = threading.Event(), threading.Event()

    def slow(p):
        entered.set()
        release.wait(5)
        return text_response("y")

    meter = MeteredModel(ScriptedModel(default=slow), price=price, usage_of=usage_of, cap_usd=price(None, ceiling(params)) * 1.5)
    first = threading.Thread(target=meter.create, args=(params,))
    first.start()
    assert entered.wait(5)
    with pytest.raises(BudgetExceededError):
        meter.create(params)  # the first call's ceiling is reserved while it runs
    release.set()
    first.join(5)


def test_the_ceiling_bounds_the_input_by_its_bytes_and_the_output_by_max_tokens():
    params = {"max_tokens": 700, "system": "s", "messages": [{"role": "user", "content": "héllo"}]}
    bound = ceiling(params)
    assert bound.output_tokens == 700 and bound.input_tokens > len("héllo".encode())


def test_a_capped_run_fails_with_budget_exceeded_and_records_what_it_used():
    responses = [text_response("a", input_tokens=10, output_tokens=5)] * 8
    service, h = service_with_usage(responses)
    body = {"task": "documents.summarize", "input": {"documents": [{"id": str(i), "text": "word " * 20} for i in range(3)]}}
    job = service.submit(parse_submit(body), tenant_id="t1").job
    capped = replace(job, status=JobStatus.RUNNING, max_cost_usd=job.cost["estimate"]["total"] / 1000)
    h.store.save(capped, expected_version=job.version)
    outcome = h.runner.execute(capped, RunContext(llm=ScriptedModel(responses), model_id="claude-default", concurrency=1))
    assert outcome.job.status is JobStatus.FAILED and outcome.job.error["type"] == "budget_exceeded"


# --- every attempt counts, the job once -------------------------------------------------------------


TWO_DOCS = {"documents": [{"id": "a", "text": "first"}, {"id": "b", "text": "second"}], "max_words": 5, "instructions": ""}


def queued_summary(h, **fields):
    job = Job(job_id="job_1", tenant_id="t1", task="documents.summarize", status=JobStatus.QUEUED, lane="cpu",
              route_reason="cpu: test", created_at=h.clock.ms(), updated_at=h.clock.ms(), input=TWO_DOCS, **fields)
    h.store.create(job)
    return job


def work(h, script, *, receive_count=1):
    """One worker attempt at job_1, its model calls one at a time (in the script's order)."""
    model = ScriptedModel(list(script))
    ctx = RunContext(llm=model, model_id="claude-default", concurrency=1)
    return h.runner.process("job_1", ctx=ctx, receive_count=receive_count, max_receives=5), model


def test_a_job_retried_after_a_crash_counts_both_attempts_in_its_view_its_usage_and_its_tenants_counters():
    """GIVEN a job whose first attempt had a model call answered, then crashed (a bug, not the model) WHEN its
    second attempt succeeds THEN its view, GET /v1/usage and the counters hold both attempts' tokens and cost."""
    service, h = service_with_usage()
    queued_summary(h)
    first, _ = work(h, [text_response("a", input_tokens=1000, output_tokens=100), RuntimeError("the worker's bug")])
    assert not first.delete
    retried = h.store.get("job_1")
    assert retried.status is JobStatus.QUEUED and retried.usage.model_calls == 1 and retried.usage.input_tokens == 1000
    first_cost = retried.cost["actual"]["total"]
    assert first_cost > 0 and retried.cost["actual"]["runs"] == 1
    assert h.store.usage.items == {}  # not finished: nothing counted yet

    h.clock.advance(30_000)
    second, _ = work(h, [text_response("a", input_tokens=10, output_tokens=1), text_response("b", input_tokens=10, output_tokens=1)],
                     receive_count=2)
    done = h.store.get("job_1")
    assert second.delete and done.status is JobStatus.SUCCEEDED
    assert done.usage.model_calls == 3 and done.usage.input_tokens == 1020 and done.usage.output_tokens == 102
    actual = done.cost["actual"]
    assert actual["runs"] == 2 and actual["total"] > first_cost and "2 runs" in actual["basis"]
    shown = render(done, h.blobs)
    assert shown["usage"]["model_calls"] == 3 and shown["cost"]["actual"]["total"] == actual["total"]

    view = service.usage(tenant_id="t1", params={"from": "2023-11-01", "to": "2023-11-30"})
    assert view["total"]["jobs"] == {"total": 1, "succeeded": 1} and view["total"]["model_calls"] == 3
    assert view["total"]["tokens"]["input"] == 1020
    assert view["total"]["cost_usd"] == pytest.approx(actual["total"], abs=1e-6)


def test_answers_kept_from_a_model_outage_are_counted_by_the_attempt_that_got_them_not_again():
    """The model goes down after one answer: the answer is kept and the job waits; the next attempt makes only the
    call that failed. Each call is counted once, by the attempt that made it."""
    service, h = service_with_usage()
    queued_summary(h)
    outage = ModelUnavailableError("model answered 529: overloaded", status=529)
    work(h, [text_response("a", input_tokens=100, output_tokens=10), outage])
    waiting = h.store.get("job_1")
    assert waiting.model_wait is not None and waiting.usage.model_calls == 1
    h.clock.advance(waiting.model_wait.next_attempt_at - h.clock.ms())
    _, model = work(h, [text_response("b", input_tokens=7, output_tokens=3)])
    done = h.store.get("job_1")
    assert done.status is JobStatus.SUCCEEDED and len(model.calls) == 1
    assert (done.usage.model_calls, done.usage.input_tokens, done.usage.output_tokens) == (2, 107, 13)
    (item,) = h.store.usage.items.values()
    assert item["documents.summarize|cpu|input_tokens"] == 107 and item["documents.summarize|cpu|jobs_succeeded"] == 1


def test_max_cost_usd_counts_what_earlier_attempts_spent():
    """GIVEN a job whose first attempt spent c on the model WHEN its cap leaves less than one call's ceiling above c
    THEN its next attempt is stopped before that call, though the call alone would fit under the cap."""
    service, h = service_with_usage()
    queued_summary(h)
    _, model = work(h, [text_response("a", input_tokens=200_000, output_tokens=100), RuntimeError("crash")])
    retried = h.store.get("job_1")
    spent = retried.cost["actual"]["breakdown"]["claude"]
    one_call = cost_model().actual(lane="cpu", model_id="claude-default", usage=ceiling(model.calls[1][0]),
                                   duration_s=0)["breakdown"]["claude"]
    assert spent > one_call  # the cap below lets one call through on its own, not after what was spent
    h.store.save(replace(retried, max_cost_usd=spent + one_call / 2, version=retried.version + 1), expected_version=retried.version)

    _, again = work(h, [text_response("a")], receive_count=2)
    failed = h.store.get("job_1")
    assert again.calls == [] and failed.status is JobStatus.FAILED and failed.error["type"] == "budget_exceeded"
    assert "by earlier attempts" in failed.error["message"]
    assert failed.usage.model_calls == 1 and failed.cost["actual"]["runs"] == 2


def test_a_process_that_dies_after_the_terminal_write_lands_leaves_the_job_counted_once():
    """The terminal write lands (job and counters together) and the process dies before it hears so (the write
    raises): the job stands, counted; the message comes back and finds it finished: not counted again."""
    service, h = service_with_usage()
    queued_summary(h)
    real_save = h.store.save

    def lands_then_dies(job, *, expected_version, usage=None):
        real_save(job, expected_version=expected_version, usage=usage)
        if usage is not None:
            raise StoreUnavailableError("the job store is unavailable (throttled or unreachable); retry shortly")

    h.store.save = lands_then_dies
    work(h, [text_response("a"), text_response("b")])
    h.store.save = real_save
    again, model = work(h, [], receive_count=2)
    assert again.delete and model.calls == []
    (item,) = h.store.usage.items.values()
    assert item["documents.summarize|cpu|jobs_succeeded"] == 1 and item["documents.summarize|cpu|model_calls"] == 2


def test_a_terminal_write_that_never_lands_counts_nothing_and_the_retry_counts_the_job_once():
    service, h = service_with_usage()
    queued_summary(h)
    real_save = h.store.save

    def down(job, *, expected_version, usage=None):
        raise StoreUnavailableError("the job store is unavailable (throttled or unreachable); retry shortly")

    h.store.save = down
    with pytest.raises(StoreUnavailableError):
        work(h, [text_response("a"), text_response("b")])
    assert h.store.usage.items == {} and h.store.get("job_1").status is JobStatus.RUNNING
    h.store.save = real_save
    h.clock.advance(h.runner.lease_ms + 1)
    work(h, [text_response("a"), text_response("b")], receive_count=2)
    (item,) = h.store.usage.items.values()
    assert item["documents.summarize|cpu|jobs_succeeded"] == 1 and item["documents.summarize|cpu|model_calls"] == 2
