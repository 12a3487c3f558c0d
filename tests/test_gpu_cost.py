"""Pricing ``embeddings.encode`` on the GPU lane against the CPU lane: ``jobcore.costing.batch_run`` and the
``tools.gpu_cost`` command, on the deployment's lanes (cdk.json) and the dated price file."""

from __future__ import annotations

import json

import pytest

from jobcore.costing import SECONDS_PER_HOUR, batch_run, worker_hourly
from jobcore.lanes import Ec2Compute, FargateCompute
from jobcore.pricing import default_prices
from tests.fakes import make_lanes
from tools import gpu_cost

PRICES = default_prices()
G5 = Ec2Compute(instance="g5.xlarge")
SPOT = FargateCompute(vcpu=1.0, memory_mb=2048, spot=True)


def test_a_warm_lane_bills_the_jobs_own_seconds():
    run = batch_run(PRICES, G5, items=10_000, items_per_s=2_000)
    assert run.seconds == 5.0
    assert run.cost == pytest.approx(5.0 / SECONDS_PER_HOUR * PRICES.ec2.instances["g5.xlarge"].hour)
    assert run.per_thousand(10_000) == pytest.approx(run.cost / 10)


def test_an_idle_lane_bills_the_start_up_and_at_least_the_minimum():
    tiny = batch_run(PRICES, G5, items=10, items_per_s=2_000, start_s=0)
    assert tiny.cost == pytest.approx(PRICES.ec2.min_billed_s / SECONDS_PER_HOUR * PRICES.ec2.instances["g5.xlarge"].hour)
    cold = batch_run(PRICES, SPOT, items=2_000, items_per_s=20, start_s=60)
    assert cold.seconds == 160 and cold.cost == pytest.approx(160 / SECONDS_PER_HOUR * worker_hourly(PRICES, SPOT))


@pytest.mark.parametrize("kwargs", [{"items": 0, "items_per_s": 1}, {"items": 1, "items_per_s": 0},
                                    {"items": 1, "items_per_s": 1, "start_s": -1}])
def test_nonsense_runs_are_refused(kwargs):
    with pytest.raises(ValueError):
        batch_run(PRICES, G5, **kwargs)


def compared(gpu_texts_per_s=2_000.0, cpu_per_vcpu=20.0):
    return gpu_cost.compare(PRICES, make_lanes(worker_memory_mb=2048, cpu_time_limit_s=900),
                            gpu_texts_per_s=gpu_texts_per_s, cpu_texts_per_s_per_vcpu=cpu_per_vcpu)


def test_the_break_even_throughput_makes_a_text_cost_the_same_on_both_lanes():
    result = compared()
    threshold = result["gpu_cheaper_per_text_above_texts_per_s"]
    at_threshold = compared(gpu_texts_per_s=threshold)["jobs"][-1]
    assert at_threshold["gpu"]["warm_per_1000"] == pytest.approx(at_threshold["cpu"]["warm_per_1000"])


def test_on_idle_lanes_the_gpu_pays_off_above_the_break_even_job_size():
    result = compared()
    texts = result["gpu_cheaper_above_texts_per_job_idle"]
    gpu, cpu = gpu_cost.lane_rates(make_lanes(worker_memory_mb=2048, cpu_time_limit_s=900), gpu_texts_per_s=2_000,
                                   cpu_texts_per_s_per_vcpu=20)
    below, above = int(texts * 0.9), int(texts * 1.1)
    assert gpu.run(PRICES, below, cold=True).cost > cpu.run(PRICES, below, cold=True).cost
    assert gpu.run(PRICES, above, cold=True).cost < cpu.run(PRICES, above, cold=True).cost


def test_a_slow_gpu_never_pays_off_per_text():
    assert compared(gpu_texts_per_s=100)["gpu_cheaper_above_texts_per_job_idle"] is None


def test_jobs_past_the_cpu_lanes_time_limit_cannot_run_there():
    result = compared()
    assert result["largest_cpu_job_texts"] == 20 * 900
    fits = {row["texts"]: (row["gpu"]["fits_time_limit"], row["cpu"]["fits_time_limit"]) for row in result["jobs"]}
    assert fits[10_000] == (True, True) and fits[100_000] == (True, False)


def test_the_command_prints_where_the_gpu_pays_off(capsys):
    assert gpu_cost.main([]) == 0
    out = capsys.readouterr().out
    assert "embeddings.encode: GPU lane vs CPU lane" in out
    assert "g5.xlarge" in out and "Fargate Spot 1 vCPU / 2,048 MB" in out  # cdk.json's lanes
    assert "pays off above" in out and "cannot run: past the lane's 900 s limit" in out


def test_the_command_speaks_json_and_refuses_bad_throughputs(capsys):
    assert gpu_cost.main(["--json", "--gpu-texts-per-s", "8000"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["lanes"]["gpu"]["texts_per_s"] == 8000
    assert gpu_cost.main(["--cpu-texts-per-s-per-vcpu", "0"]) == 2
