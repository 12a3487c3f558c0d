"""The workload comparison of ``make cost`` (tools/workloads.py), against figures worked out by hand.

Prices restated here are jobcore/prices.json's (as of its date); each expected figure shows its arithmetic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobcore.pricing import Prices, default_prices
from tests.core.test_costing import INLINE_REQUESTS  # worked out by hand there, once
from tools.workloads import WorkloadTask, compare, load_workload

SEED = Path(__file__).resolve().parents[1] / "workloads" / "seed-article.json"
ROUTER = {"inline_budget_s": 20, "router_memory_mb": 1024}


@pytest.fixture(scope="module")
def prices() -> Prices:
    return default_prices()


@pytest.fixture(scope="module")
def seed(prices: Prices):
    return compare(load_workload(json.loads(SEED.read_text()), prices), prices, **ROUTER)


def test_fine_tune_runs_only_on_a_gpu_instance(seed):
    row = next(r for r in seed.tasks if r.task.name == "fine-tune-7b")
    assert row.options["lambda"].cannot_run == (
        "14,400 s is over Lambda's 900 s limit", "needs 16,384 MB, over Lambda's 10,240 MB", "needs a GPU: Lambda has none",
    )
    assert row.options["fargate"].cannot_run == ("needs a GPU: Fargate offers none",)
    assert row.cheapest == "ec2" and row.options["ec2"].route == "EC2 g5.xlarge (A10G)"
    assert row.options["ec2"].cost.compute == pytest.approx(4.024)
    assert row.options["hybrid"].cost == row.options["ec2"].cost


def test_invoices_lambda_versus_spot_worker_by_hand(seed):
    row = next(r for r in seed.tasks if r.task.name == "invoice-processing")
    lam = row.options["lambda"].cost
    assert lam.compute == pytest.approx(4.00002) and lam.claude == pytest.approx(105.0)  # 10,000 x 0.0105
    assert lam.requests == pytest.approx(10_000 * INLINE_REQUESTS)
    # 1,250 task runs (8 invoices each) x 60 s minimum = 20.83 h of 0.25 vCPU / 1 GB at 65% off
    spot_hour = (0.25 * 0.04048 + 1 * 0.004445) * 0.35
    assert row.options["fargate-spot"].cost.compute == pytest.approx(1250 * 60 / 3600 * spot_hour)
    assert row.cheapest == "fargate-spot"
    assert row.hybrid_reason == "cpu: expected 30.0 s > inline budget 20 s"


def test_continuous_documents_always_on_by_hand(seed):
    row = next(r for r in seed.tasks if r.task.name == "continuous-documents")
    assert row.task.monthly_volume == 100 * 730 * 3600  # rate_per_s 100
    # 100/s x 2 s = 200 jobs in flight, one per 0.5 vCPU / 1 GB task, all month
    spot_hour = (0.5 * 0.04048 + 1 * 0.004445) * 0.35
    assert row.options["fargate-spot"].cost.compute == pytest.approx(200 * 730 * spot_hour)
    assert row.options["lambda"].cost.compute == pytest.approx(262_800_000 * 2 * 0.0000133334)
    # c7g.xlarge holds 8 such tasks: 25 instances x 730 h x 0.145
    assert row.options["ec2"].route == "EC2 c7g.xlarge"
    assert row.options["ec2"].cost.compute == pytest.approx(25 * 730 * 0.145)
    assert row.cheapest == "fargate-spot"
    assert row.hybrid_reason.startswith("cpu: arriving at 6,000/min")


def test_totals_name_the_tasks_a_strategy_cannot_run(seed):
    totals = seed.totals()
    assert totals["lambda"][1] == ("fine-tune-7b",)
    assert totals["ec2"][1] == () and totals["hybrid"][1] == ()
    json.dumps(seed.to_dict())


def test_a_short_rare_task_stays_inline_in_the_hybrid(prices):
    task = WorkloadTask(name="rare", duration_s=5, memory_mb=512, monthly_volume=1000)
    row = compare([task], prices, **ROUTER).tasks[0]
    assert row.hybrid_reason.startswith("inline:")
    assert row.options["hybrid"].route == "inline: router Lambda arm64 1,024 MB"
    # the router's 1 GB, not the task's 512 MB: 1,000 x 5 s x 1 GB
    assert row.options["hybrid"].cost.compute == pytest.approx(1000 * 5 * 0.0000133334)


def test_lambda_memory_follows_the_vcpu_a_task_needs(prices):
    task = WorkloadTask(name="cpu-heavy", duration_s=10, memory_mb=512, vcpu=2, monthly_volume=1)
    assert compare([task], prices, **ROUTER).tasks[0].options["lambda"].route == "Lambda arm64 3,538 MB"  # 2 x 1,769


@pytest.mark.parametrize("spec, message", [
    ({"name": "x", "duration_s": 1, "memory_mb": 128}, r"tasks\[0\]\.monthly_volume: missing"),
    ({"name": "x", "duration_s": 1, "memory_mb": 128, "monthly_volume": 1, "gpus": 1}, r"tasks\[0\]\.gpus: unknown field"),
    ({"name": "x", "duration_s": 0, "memory_mb": 128, "monthly_volume": 1}, r"duration_s: must be positive"),
    ({"name": "x", "duration_s": 1, "memory_mb": 128, "monthly_volume": 1, "rate_per_s": 1}, "not both"),
])
def test_a_bad_workload_names_the_field(prices, spec, message):
    with pytest.raises(ValueError, match=message):
        load_workload({"tasks": [spec]}, prices)


def test_a_task_longer_than_any_queue_allows_is_unroutable_in_the_hybrid_but_priced_elsewhere(prices):
    task = WorkloadTask(name="week-long", duration_s=7 * 86_400, memory_mb=2048, vcpu=1, monthly_volume=1)
    row = compare([task], prices, **ROUTER).tasks[0]
    assert row.options["hybrid"].cost is None and "no lane offers that" in row.hybrid_reason
    assert row.options["fargate"].cost is not None


def test_the_claude_bill_cut_by_the_batch_lane_and_by_caching_by_hand(seed):
    row = next(r for r in seed.tasks if r.task.name == "invoice-processing")
    cuts = {cut.name: cut for cut in row.cuts}
    today = row.options["hybrid"].cost
    assert cuts["today"].total == today.total and cuts["today"].saves == 0
    # Message Batches: every token at half price; no worker; 10,000 queued jobs' request charges
    queued = 10_000 * (INLINE_REQUESTS + 0.625e-6 + 3 * 0.4e-6)
    assert cuts["batch lane"].claude == pytest.approx(52.5)
    assert cuts["batch lane"].total == pytest.approx(52.5 + queued)
    # Caching: 300 uncached in, 1,200 prefix read by 68% (0.1 x $3/M) and written by 32% (1.25 x $3/M), 400 out
    per_job = (300 * 3 + 1200 * (0.68 * 0.3 + 0.32 * 3.75) + 400 * 15) / 1e6
    assert cuts["prompt caching"].claude == pytest.approx(10_000 * per_job)
    assert cuts["prompt caching"].total == pytest.approx(today.total - 105.0 + 10_000 * per_job)
    assert cuts["batch lane + caching"].claude == pytest.approx(10_000 * per_job / 2)
    assert cuts["prompt caching"].saves == pytest.approx(today.total - cuts["prompt caching"].total)
    # By hand: caching changes only the tokens, so it saves $105.00 of list-price Claude less the cached bill
    assert cuts["today"].claude == pytest.approx(105.0)
    assert cuts["prompt caching"].saves == pytest.approx(105.0 - 10_000 * per_job)  # $19.15
    assert cuts["prompt caching"].saves == pytest.approx(19.15, abs=0.005)


def test_a_prefix_under_the_models_minimum_is_not_cached_and_a_task_without_tokens_has_no_cuts(prices):
    short = WorkloadTask(name="short-prefix", duration_s=5, memory_mb=512, monthly_volume=1000, input_tokens=1500,
                         output_tokens=100, model="claude-haiku-4-5", cached_prefix_tokens=1200, cache_hit_rate=0.9)
    cuts = {cut.name: cut for cut in compare([short], prices, **ROUTER).tasks[0].cuts}
    assert cuts["prompt caching"].total is None
    assert cuts["prompt caching"].note == "not cacheable: a 1,200-token prefix is under claude-haiku-4-5's 4,096-token minimum"
    assert "batch lane + caching" not in cuts and cuts["batch lane"].claude == pytest.approx(1000 * (1500 + 500) / 2e6)
    plain = WorkloadTask(name="cpu", duration_s=5, memory_mb=512, monthly_volume=1000)
    assert compare([plain], prices, **ROUTER).tasks[0].cuts == ()


@pytest.mark.parametrize("extra, message", [
    ({"cache_hit_rate": 1.5}, r"cache_hit_rate: must be a fraction from 0 to 1"),
    ({"cached_prefix_tokens": 2000}, r"cached_prefix_tokens: must be at most input_tokens \(1,500\)"),
])
def test_a_bad_caching_assumption_names_the_field(prices, extra, message):
    spec = {"name": "x", "duration_s": 1, "memory_mb": 128, "monthly_volume": 1, "input_tokens": 1500, **extra}
    with pytest.raises(ValueError, match=message):
        load_workload({"tasks": [spec]}, prices)
