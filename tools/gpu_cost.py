"""Where the GPU pays off: ``embeddings.encode`` priced per 1,000 texts on the GPU lane and on the CPU lane.

    python -m tools.gpu_cost [--gpu-texts-per-s N] [--cpu-texts-per-s-per-vcpu N] [--json]

The lanes are the deployment's (cdk.json: the GPU lane's instance type, the CPU lane's Fargate size and
Spot setting), the prices ``jobcore/prices.json``'s, the throughputs the task's own figures
(``jobcore.tasks.embeddings``) unless given. Each job size is priced twice: on a warm lane (a worker is
already up) and on an idle one (scaled to zero: the job also pays its worker's start-up). A lane whose
job would run past its time limit cannot take it at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "lambda_src") not in sys.path:  # `python -m tools.gpu_cost` from a bare checkout
    sys.path.insert(0, str(ROOT / "lambda_src"))

from jobcore.costing import BatchRun, batch_run, worker_hourly
from jobcore.lanes import FargateCompute, Lane, Lanes
from jobcore.pricing import Prices, default_prices
from jobcore.tasks.embeddings import CPU_TEXTS_PER_S_PER_VCPU, GPU_TEXTS_PER_S
from tools.cost import deployment_lanes, money

JOB_SIZES = (1_000, 10_000, 100_000, 1_000_000)
# An idle lane's first task, until it reads its first message (assumptions; see docs/routing-and-cost.md):
# a GPU instance boots, joins the cluster and pulls a multi-GB CUDA image; a Fargate task pulls a slim one.
GPU_START_S = 300.0
CPU_START_S = 60.0


@dataclass(frozen=True)
class LaneRate:
    lane: Lane
    texts_per_s: float
    start_s: float

    def run(self, prices: Prices, texts: int, *, cold: bool) -> BatchRun:
        return batch_run(prices, self.lane.compute, items=texts, items_per_s=self.texts_per_s,
                         start_s=self.start_s if cold else None)

    def fits(self, texts: int) -> bool:
        """The job (without start-up, which happens before it is received) finishes within the lane's limit."""
        return texts / self.texts_per_s <= self.lane.time_limit_s


def lane_rates(lanes: Lanes, *, gpu_texts_per_s: float, cpu_texts_per_s_per_vcpu: float) -> tuple[LaneRate, LaneRate]:
    gpu = next(lane for lane in lanes if lane.gpu)
    cpu = lanes.fallback
    if not isinstance(cpu.compute, FargateCompute):
        raise ValueError(f"lanes.{cpu.name}: expected a Fargate lane")
    return (LaneRate(gpu, gpu_texts_per_s, GPU_START_S),
            LaneRate(cpu, cpu_texts_per_s_per_vcpu * cpu.compute.vcpu, CPU_START_S))


def break_even_texts(prices: Prices, gpu: LaneRate, cpu: LaneRate) -> float | None:
    """Texts per job above which the GPU lane, started for the job, costs less than a CPU worker started
    for it (None: never, at these throughputs)."""
    gpu_hour, cpu_hour = worker_hourly(prices, gpu.lane.compute), worker_hourly(prices, cpu.lane.compute)
    per_text = cpu_hour / cpu.texts_per_s - gpu_hour / gpu.texts_per_s  # what the GPU saves per text
    fixed = gpu_hour * gpu.start_s - cpu_hour * cpu.start_s  # what it costs more to start
    if per_text <= 0:
        return None
    return max(0.0, fixed / per_text)


def gpu_cheaper_above_texts_per_s(prices: Prices, gpu: LaneRate, cpu: LaneRate) -> float:
    """The GPU throughput above which a text costs less on the GPU lane than on the CPU lane."""
    return worker_hourly(prices, gpu.lane.compute) / (worker_hourly(prices, cpu.lane.compute) / cpu.texts_per_s)


def compare(prices: Prices, lanes: Lanes, *, gpu_texts_per_s: float, cpu_texts_per_s_per_vcpu: float) -> dict[str, Any]:
    gpu, cpu = lane_rates(lanes, gpu_texts_per_s=gpu_texts_per_s, cpu_texts_per_s_per_vcpu=cpu_texts_per_s_per_vcpu)
    rows = []
    for texts in JOB_SIZES:
        row: dict[str, Any] = {"texts": texts}
        for rate in (gpu, cpu):
            warm, cold = rate.run(prices, texts, cold=False), rate.run(prices, texts, cold=True)
            row[rate.lane.name] = {
                "fits_time_limit": rate.fits(texts), "seconds": round(warm.seconds, 1),
                "warm_cost": warm.cost, "cold_cost": cold.cost, "warm_per_1000": warm.per_thousand(texts),
                "cold_per_1000": cold.per_thousand(texts),
            }
        rows.append(row)
    largest_cpu_job = int(cpu.texts_per_s * cpu.lane.time_limit_s)
    return {
        "prices_as_of": prices.as_of, "currency": prices.currency,
        "lanes": {rate.lane.name: {"compute": _compute(rate.lane), "texts_per_s": rate.texts_per_s, "start_s": rate.start_s,
                                   "hourly": worker_hourly(prices, rate.lane.compute),
                                   "time_limit_s": rate.lane.time_limit_s} for rate in (gpu, cpu)},
        "jobs": rows,
        "gpu_cheaper_per_text_above_texts_per_s": gpu_cheaper_above_texts_per_s(prices, gpu, cpu),
        "gpu_cheaper_above_texts_per_job_idle": break_even_texts(prices, gpu, cpu),
        "largest_cpu_job_texts": largest_cpu_job,
    }


def _compute(lane: Lane) -> str:
    c = lane.compute
    if isinstance(c, FargateCompute):
        return f"Fargate{' Spot' if c.spot else ''} {c.vcpu:g} vCPU / {c.memory_mb:,} MB"
    return getattr(c, "instance", c.kind)


def render(result: dict[str, Any]) -> str:
    lanes = result["lanes"]
    gpu_name, cpu_name = list(lanes)
    lines = [f"embeddings.encode: GPU lane vs CPU lane, compute only, prices as of {result['prices_as_of']}"]
    for name, lane in lanes.items():
        lines.append(f"  {name}: {lane['compute']}, {money(lane['hourly'])}/h, {lane['texts_per_s']:,.0f} texts/s, "
                     f"{lane['start_s']:.0f} s to start when idle, jobs up to {lane['time_limit_s']:,.0f} s")
    lines.append("")
    lines.append(f"  {'texts/job':>10}  {'lane':<5} {'run':>9} {'per 1,000 warm':>15} {'per 1,000 idle':>15} {'job, idle lane':>15}")
    for row in result["jobs"]:
        for name in (gpu_name, cpu_name):
            cell = row[name]
            if not cell["fits_time_limit"]:
                lines.append(f"  {row['texts']:>10,}  {name:<5} {_duration(cell['seconds']):>9}  cannot run: past the "
                             f"lane's {lanes[name]['time_limit_s']:,.0f} s limit")
                continue
            lines.append(f"  {row['texts']:>10,}  {name:<5} {_duration(cell['seconds']):>9} {money(cell['warm_per_1000']):>15} "
                         f"{money(cell['cold_per_1000']):>15} {money(cell['cold_cost']):>15}")
    lines.append("")
    threshold = result["gpu_cheaper_per_text_above_texts_per_s"]
    gpu_rate = lanes[gpu_name]["texts_per_s"]
    last = result["jobs"][-1]
    per_1000 = f"{money(last[gpu_name]['warm_per_1000'])} vs {money(last[cpu_name]['warm_per_1000'])} per 1,000 on warm lanes"
    if gpu_rate <= threshold:
        lines.append(f"  Per text, the {cpu_name} lane is cheaper ({per_1000}) unless the GPU encodes more than "
                     f"{threshold:,.0f} texts/s (assumed: {gpu_rate:,.0f}): the GPU buys speed, and runs the jobs "
                     f"the {cpu_name} lane cannot.")
    else:
        idle = result["gpu_cheaper_above_texts_per_job_idle"]
        lines.append(f"  Per text, the {gpu_name} lane is cheaper ({per_1000}): it pays off above {threshold:,.0f} texts/s, "
                     f"and encodes {gpu_rate:,.0f}.")
        lines.append(f"  On idle lanes (scaled to zero) it pays off above {idle:,.0f} texts per job: below that, "
                     "its start-up costs more than it saves.")
    lines.append(f"  The {cpu_name} lane cannot take jobs above {result['largest_cpu_job_texts']:,} texts at all "
                 f"(its time limit); the {gpu_name} lane runs them in minutes.")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:,.1f} s" if seconds < 600 else f"{seconds / 60:,.0f} min"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-texts-per-s", type=float, default=GPU_TEXTS_PER_S)
    parser.add_argument("--cpu-texts-per-s-per-vcpu", type=float, default=CPU_TEXTS_PER_S_PER_VCPU)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.gpu_texts_per_s <= 0 or args.cpu_texts_per_s_per_vcpu <= 0:
        print("gpu_cost: throughputs must be positive", file=sys.stderr)
        return 2
    result = compare(default_prices(), deployment_lanes(), gpu_texts_per_s=args.gpu_texts_per_s,
                     cpu_texts_per_s_per_vcpu=args.cpu_texts_per_s_per_vcpu)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
