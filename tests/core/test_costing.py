"""The cost model against figures worked out by hand here, from the prices in jobcore/prices.json.

Prices restated in these tests are the file's (as of its date); each expected figure shows its arithmetic.
"""

from __future__ import annotations

import json

import pytest

from jobcore.costing import (
    CostModel,
    break_even_rate_per_min,
    claude_cost,
    ec2_hours,
    fargate_hourly,
    job_requests,
    lambda_compute,
    lambda_requests,
    request_charges,
    worker_hourly,
)
from jobcore.lanes import Ec2Compute, LambdaCompute
from jobcore.model import Usage
from jobcore.pricing import Prices, default_prices
from tests.fakes import LANES, make_lanes
from tools.workloads import fargate_task

# Per-job request charges, by hand: API Gateway 3.50/M + router Lambda 0.20/M + DynamoDB reads 0.125/M,
# plus DynamoDB writes at 0.625/M (2 inline, 3 queued) and SQS 3 x 0.40/M when queued (the result lives in
# the job item: no S3 PUT).
INLINE_REQUESTS = 3.5e-6 + 0.2e-6 + 2 * 0.625e-6 + 0.125e-6  # 5.075e-6
QUEUED_REQUESTS = 3.5e-6 + 0.2e-6 + 3 * 0.625e-6 + 0.125e-6 + 3 * 0.4e-6  # 6.9e-6
SPOT_WORKER_HOUR = (1 * 0.04048 + 4 * 0.004445) * (1 - 0.65)  # 1 vCPU / 4 GB Spot: 0.020391/h


@pytest.fixture(scope="module")
def prices() -> Prices:
    return default_prices()


# -- prices ----------------------------------------------------------------------------------------

def test_the_price_file_is_dated_and_parsed(prices):
    assert prices.as_of and prices.region == "us-east-1" and prices.currency == "USD"
    assert prices.lambda_.gb_second["arm64"] == 0.0000133334
    assert prices.ec2.instances["g5.xlarge"].gpu_model == "A10G"
    assert default_prices() is prices  # parsed once per process


def test_overrides_merge_deeply_and_leave_the_original_alone(prices):
    cheaper = prices.with_overrides({"fargate": {"spot_discount": 0.70}, "lambda": {"gb_second": {"arm64": 0.00001}}})
    assert cheaper.fargate.spot_discount == 0.70
    assert cheaper.lambda_.gb_second == {"arm64": 0.00001, "x86_64": 0.0000166667}
    assert cheaper.fargate.rates["x86_64"].vcpu_hour == 0.04048
    assert prices.fargate.spot_discount == 0.65


def test_an_unknown_override_key_is_refused_by_its_dotted_name(prices):
    with pytest.raises(ValueError, match=r"fargate\.spot_discunt"):
        prices.with_overrides({"fargate": {"spot_discunt": 0.7}})


def test_overrides_may_add_a_model_or_an_instance_type(prices):
    more = prices.with_overrides({
        "claude": {"models": {"claude-next": {"input_per_million": 2, "output_per_million": 10}}},
        "ec2": {"instances": {"g6e.xlarge": {"hour": 1.861, "vcpu": 4, "memory_gib": 32, "gpus": 1, "gpu_model": "L40S"}}},
    })
    assert claude_cost(more, "claude-next", Usage(1_000_000, 1_000_000)) == pytest.approx(12.0)
    assert more.ec2.instances["g6e.xlarge"].gpus == 1


def test_a_malformed_override_names_the_key(prices):
    with pytest.raises(ValueError, match=r"fargate\.min_billed_s must be a non-negative number"):
        prices.with_overrides({"fargate": {"min_billed_s": "sixty"}})


# -- primitives ------------------------------------------------------------------------------------

def test_lambda_invoice_month_by_hand(prices):
    # 10,000 x 30 s x 1 GB = 300,000 GB-s x 0.0000133334 = 4.00002; 10,000 x 0.20/M = 0.002
    compute = 10_000 * lambda_compute(prices, duration_s=30, memory_mb=1024)
    assert compute == pytest.approx(4.00002)
    assert lambda_requests(prices, 10_000) == pytest.approx(0.002)


def test_lambda_bills_started_milliseconds_at_the_architecture_price(prices):
    # 0.0004 s bills as 1 ms; 2 GB x 1 ms x 0.0000166667 (x86)
    assert lambda_compute(prices, duration_s=0.0004, memory_mb=2048, arch="x86_64") == pytest.approx(0.001 * 2 * 0.0000166667)


def test_fargate_hour_on_demand_and_spot(prices):
    # 1 vCPU x 0.04048 + 4 GB x 0.004445 = 0.05826 an hour; Spot 65% off: 0.020391
    assert fargate_hourly(prices, vcpu=1, memory_mb=4096, spot=False) == pytest.approx(0.05826)
    assert fargate_hourly(prices, vcpu=1, memory_mb=4096, spot=True) == pytest.approx(SPOT_WORKER_HOUR)
    assert fargate_hourly(prices, vcpu=1, memory_mb=4096, spot=False, arch="arm64") == pytest.approx(0.03238 + 4 * 0.00356)


def test_fargate_spot_has_no_arm64(prices):
    with pytest.raises(ValueError, match="x86_64"):
        fargate_hourly(prices, vcpu=1, memory_mb=2048, spot=True, arch="arm64")


def test_a_fargate_task_bills_at_least_a_minute(prices):
    # 10 s bills as 60 s: 0.05826 / 60
    assert fargate_task(prices, vcpu=1, memory_mb=4096, seconds=10, spot=False) == pytest.approx(0.05826 / 60)


def test_four_hours_of_a_g5_xlarge(prices):
    assert ec2_hours(prices, "g5.xlarge", 4) == pytest.approx(4.024)  # 4 x 1.006


def test_claude_tokens_by_model_and_the_default_for_unknown_models(prices):
    # 1,500 x 3/M + 400 x 15/M = 0.0045 + 0.006
    assert claude_cost(prices, "claude-sonnet-4-5", Usage(1500, 400)) == pytest.approx(0.0105)
    assert claude_cost(prices, "claude-haiku-4-5", Usage(1500, 400)) == pytest.approx(0.0015 + 0.002)
    assert claude_cost(prices, "claude-opus-4-5", Usage(1500, 400)) == pytest.approx(0.0075 + 0.01)
    assert claude_cost(prices, "claude-unheard-of", Usage(1500, 400)) == pytest.approx(0.0105)


def test_request_charges_by_hand(prices):
    # 1M API calls 3.50 + 1M SQS 0.40 + 1M writes 0.625 + 1M reads 0.125 + 1k PUT 0.005 + 1k GET 0.0004
    total = request_charges(prices, api_gateway=1e6, sqs=1e6, dynamodb_writes=1e6, dynamodb_reads=1e6, s3_puts=1e3, s3_gets=1e3)
    assert total == pytest.approx(3.5 + 0.4 + 0.625 + 0.125 + 0.005 + 0.0004)
    assert job_requests(prices, queued=False) == pytest.approx(INLINE_REQUESTS)
    assert job_requests(prices, queued=True) == pytest.approx(QUEUED_REQUESTS)


# -- per job ---------------------------------------------------------------------------------------

def test_estimate_inline(prices):
    cost = CostModel(prices, LANES).estimate(
        lane="inline", model_id="claude-sonnet-4-5", expected_duration_s=8, input_tokens=1000, output_tokens=500)
    # 1,000 x 3/M + 500 x 15/M; 8 s x 1 GB x 0.0000133334
    assert cost["breakdown"] == pytest.approx({"claude": 0.0105, "compute": 8 * 0.0000133334, "requests": INLINE_REQUESTS})
    assert cost["total"] == pytest.approx(0.0105 + 8 * 0.0000133334 + INLINE_REQUESTS)
    assert cost["currency"] == "USD" and "router Lambda" in cost["basis"]


def test_estimate_cpu_takes_a_share_of_the_spot_worker(prices):
    cost = CostModel(prices, LANES).estimate(
        lane="cpu", model_id="claude-sonnet-4-5", expected_duration_s=8, input_tokens=0, output_tokens=0)
    # 8 s of a 0.020391/h worker shared by 8 jobs
    assert cost["breakdown"]["compute"] == pytest.approx(8 / 3600 * SPOT_WORKER_HOUR / 8)
    assert cost["breakdown"]["requests"] == pytest.approx(QUEUED_REQUESTS)


def test_estimate_cpu_on_demand_worker(prices):
    cost = CostModel(prices, make_lanes(spot=False, worker_concurrency=1)).estimate(
        lane="cpu", model_id="claude-sonnet-4-5", expected_duration_s=3600, input_tokens=0, output_tokens=0)
    assert cost["breakdown"]["compute"] == pytest.approx(0.05826)


def test_actual_gpu_takes_the_whole_instance_for_the_duration(prices):
    cost = CostModel(prices, LANES).actual(lane="gpu", model_id="claude-sonnet-4-5", usage=Usage(), duration_s=4 * 3600)
    assert cost["breakdown"] == pytest.approx({"claude": 0.0, "compute": 4.024, "requests": QUEUED_REQUESTS})


def test_actual_prices_the_tokens_used_and_flags_an_unknown_model(prices):
    cost = CostModel(prices, LANES).actual(
        lane="inline", model_id="claude-from-the-future", usage=Usage(2000, 1000, 1), duration_s=3.5)
    assert cost["breakdown"]["claude"] == pytest.approx(2000 * 3e-6 + 1000 * 15e-6)
    assert cost["breakdown"]["compute"] == pytest.approx(3.5 * 0.0000133334)
    assert "unknown model: priced as claude-sonnet-4-6" in cost["basis"]
    assert json.loads(json.dumps(cost)) == cost


def test_an_unknown_gpu_instance_is_refused_naming_the_lane(prices):
    with pytest.raises(ValueError, match=r"lanes.gpu.compute.instance: instance type 'p9.huge' is not in the price file"):
        CostModel(prices, make_lanes(gpu_instance="p9.huge"))


def test_a_gpu_lane_running_two_jobs_at_once_charges_each_half_the_instance(prices):
    cost = CostModel(prices, make_lanes(gpu_concurrency=2)).actual(lane="gpu", model_id="claude-sonnet-4-5", usage=Usage(),
                                                                  duration_s=4 * 3600)
    assert cost["breakdown"]["compute"] == pytest.approx(4 * 1.006 / 2)
    assert "shared by 2 jobs" in cost["basis"]


def test_a_disabled_lane_is_still_priced_for_the_catalogue_but_an_unknown_lane_is_refused(prices):
    model = CostModel(prices, make_lanes(gpu_enabled=False))
    assert model.estimate(lane="gpu", model_id="m", expected_duration_s=1, input_tokens=0, output_tokens=0)["total"] > 0
    with pytest.raises(ValueError, match="no lane named 'tpu'"):
        model.estimate(lane="tpu", model_id="m", expected_duration_s=1, input_tokens=0, output_tokens=0)


def test_the_hourly_worker_price_by_compute(prices):
    assert worker_hourly(prices, Ec2Compute(instance="g6.xlarge")) == pytest.approx(0.8048)
    with pytest.raises(ValueError, match="per request"):
        worker_hourly(prices, LambdaCompute(memory_mb=1024))


# -- break-even rate -------------------------------------------------------------------------------

@pytest.mark.parametrize("duration_s", [8, 6, 60])
def test_break_even_rate_by_hand(prices, duration_s):
    saving = duration_s * 0.0000133334 + INLINE_REQUESTS - QUEUED_REQUESTS  # per request moved to the worker
    worker_month = 730 * SPOT_WORKER_HOUR  # 14.885
    expected = worker_month / saving / (730 * 60)  # 8 s: 3.24/min
    rate = break_even_rate_per_min(prices, expected_duration_s=duration_s, inline=LANES.inline, worker=LANES.get("cpu"))
    assert rate == pytest.approx(expected)


def test_break_even_for_claude_messages_is_about_three_a_minute(prices):
    assert CostModel(prices, LANES).break_even_per_min(8) == pytest.approx(3.2415, abs=1e-3)


def test_no_break_even_when_even_a_busy_worker_costs_more_per_request(prices):
    # A 128 MB router bills 0.125 GB x 0.0000133334 = 1.7e-6 a second; a one-job 1 vCPU / 4 GB Spot worker
    # costs 0.020391 / 3600 = 5.7e-6 a second even when busy: it never pays, at any rate.
    lanes = make_lanes(router_memory_mb=128, worker_concurrency=1)
    assert break_even_rate_per_min(prices, expected_duration_s=8, inline=lanes.inline, worker=lanes.get("cpu")) is None


# -- the Message Batches discount and prompt caching -----------------------------------------------

def test_the_batch_discount_and_the_caching_multipliers_are_in_the_price_file(prices):
    assert prices.claude.batch_discount == 0.5
    caching = prices.claude.caching
    assert (caching.write_5m_multiplier, caching.write_1h_multiplier, caching.read_multiplier) == (1.25, 2.0, 0.1)
    minimum = {name: model.min_cacheable_tokens for name, model in prices.claude.models.items()}
    assert minimum == {"claude-sonnet-4-6": 1024, "claude-sonnet-4-5": 1024, "claude-haiku-4-5": 4096, "claude-opus-4-5": 4096}


def test_batch_and_caching_overrides_merge_and_a_typo_is_refused(prices):
    negotiated = prices.with_overrides({"claude": {"batch": {"discount": 0.6}, "prompt_caching": {"read_multiplier": 0.05}}})
    assert negotiated.claude.batch_discount == 0.6 and negotiated.claude.caching.read_multiplier == 0.05
    assert negotiated.claude.caching.write_5m_multiplier == 1.25
    with pytest.raises(ValueError, match=r"claude\.prompt_caching\.read_multiplyer"):
        prices.with_overrides({"claude": {"prompt_caching": {"read_multiplyer": 0.05}}})
    with pytest.raises(ValueError, match=r"claude\.batch\.discount is a fraction below 1"):
        prices.with_overrides({"claude": {"batch": {"discount": 1}}})


def test_a_model_added_without_its_minimum_cacheable_length_gets_the_default_models(prices):
    more = prices.with_overrides({"claude": {"models": {
        "claude-next": {"input_per_million": 2, "output_per_million": 10},
        "claude-tiny": {"input_per_million": 1, "output_per_million": 2, "min_cacheable_tokens": 512},
    }}})
    assert more.claude.models["claude-next"].min_cacheable_tokens == 1024  # the default model's (claude-sonnet-4-6)
    assert more.claude.models["claude-tiny"].min_cacheable_tokens == 512


def test_claude_cost_with_cache_writes_reads_and_the_batch_discount(prices):
    # claude-sonnet-4-5, $3/M in, $15/M out: 300 in + 1,200 written at 1.25 x + 400 out
    written = Usage(input_tokens=300, output_tokens=400, cache_creation_input_tokens=1200)
    assert claude_cost(prices, "claude-sonnet-4-5", written) == pytest.approx((300 * 3 + 1200 * 3.75 + 400 * 15) / 1e6)
    # the same prefix read: 1,200 at 0.1 x
    read = Usage(input_tokens=300, output_tokens=400, cache_read_input_tokens=1200)
    assert claude_cost(prices, "claude-sonnet-4-5", read) == pytest.approx((300 * 3 + 1200 * 0.3 + 400 * 15) / 1e6)
    # written with the 1-hour TTL: 2 x
    hour = Usage(input_tokens=300, output_tokens=400, cache_creation_input_tokens=1200, cache_creation_1h_input_tokens=1200)
    assert claude_cost(prices, "claude-sonnet-4-5", hour) == pytest.approx((300 * 3 + 1200 * 6 + 400 * 15) / 1e6)
    # batch: everything at half price, caching included
    assert claude_cost(prices, "claude-sonnet-4-5", read, batch=True) == pytest.approx((300 * 3 + 1200 * 0.3 + 400 * 15) / 2e6)
    assert claude_cost(prices, "claude-haiku-4-5", Usage(1500, 400), batch=True) == pytest.approx((1500 * 1 + 400 * 5) / 2e6)


def test_the_actual_cost_prices_cached_tokens_and_its_basis_says_so(prices):
    usage = Usage(input_tokens=300, output_tokens=400, model_calls=1, cache_read_input_tokens=1200, cache_creation_input_tokens=50)
    cost = CostModel(prices, LANES).actual(lane="cpu", model_id="claude-sonnet-4-5", usage=usage, duration_s=4)
    assert cost["breakdown"]["claude"] == pytest.approx((300 * 3 + 50 * 3.75 + 1200 * 0.3 + 400 * 15) / 1e6)
    assert "claude-sonnet-4-5: 300 in / 400 out tokens, 50 cache-write tokens, 1,200 cache-read tokens;" in cost["basis"]
    assert "batch" not in cost["basis"]


def test_the_batch_estimate_is_tokens_at_half_price_and_no_compute(prices):
    cost = CostModel(prices, LANES).batch_estimate(model_id="claude-sonnet-4-5", input_tokens=1000, output_tokens=500)
    assert cost["breakdown"] == pytest.approx({"claude": 0.0105 / 2, "compute": 0.0, "requests": QUEUED_REQUESTS})
    assert cost["basis"].startswith(
        "batch: Message Batches API, no compute of ours; claude-sonnet-4-5: 1,000 in / 500 out tokens; batch: 50 % off;")
