"""Benchmark of the local pipeline: what the router adds to an inline call, and worker throughput.

    python -m bench.bench_pipeline [--latency 1.0] [--inline 30] [--queued 40] [--concurrency 8]

The Claude stand-in answers after a fixed latency, so everything above it is the pipeline's own
cost (gateway emulation, router, DynamoDB and S3 in moto, the SDK). Goals are in bench/README.md;
this prints the figures and whether each goal was met. It never fails a build: speed is measured
here, not asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.report import percentile
from local.client import call
from local.pipeline import LocalPipeline, Options

# Goals, on the 2-core development machine (see bench/README.md).
GOAL_INLINE_OVERHEAD_P50_MS = 150.0
GOAL_WORKER_EFFICIENCY = 0.6  # of the ideal concurrency / latency jobs per second


def inline_overheads(api: str, count: int, latency_s: float) -> list[float]:
    messages = [{"role": "user", "content": "Hello there."}]
    body = {"task": "claude.messages", "mode": "sync", "input": {"max_tokens": 50, "messages": messages}}
    call("POST", f"{api}/v1/jobs", body)  # warm-up: imports, connections
    overheads = []
    for _ in range(count):
        started = time.perf_counter()
        status, _, job = call("POST", f"{api}/v1/jobs", body)
        assert status == 200, job
        overheads.append((time.perf_counter() - started - latency_s) * 1000)
    return overheads


def queued_throughput(api: str, count: int) -> dict[str, Any]:
    body = {"task": "claude.messages", "mode": "async", "input": {"max_tokens": 50, "messages": [{"role": "user", "content": "Queue me."}]}}
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = [job["id"] for _, _, job in pool.map(lambda _: call("POST", f"{api}/v1/jobs", body), range(count))]
    pending, jobs = set(ids), {}
    while pending:
        for job_id in list(pending):
            _, _, job = call("GET", f"{api}/v1/jobs/{job_id}")
            if job["status"] not in {"queued", "running"}:
                jobs[job_id] = job
                pending.discard(job_id)
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    succeeded = sum(job["status"] == "succeeded" for job in jobs.values())
    return {"jobs": count, "succeeded": succeeded, "seconds": round(elapsed, 2), "jobs_per_s": round(count / elapsed, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0, help="the stand-in's answer latency, seconds")
    parser.add_argument("--inline", type=int, default=30, help="inline jobs to time")
    parser.add_argument("--queued", type=int, default=40, help="queued jobs to push through the worker")
    parser.add_argument("--concurrency", type=int, default=8, help="the worker's jobs at once")
    args = parser.parse_args(argv)
    options = Options(standin_latency_s=args.latency, config={"worker_concurrency": args.concurrency})
    with LocalPipeline(options) as endpoints:
        overheads = inline_overheads(endpoints.api_url, args.inline, args.latency)
        throughput = queued_throughput(endpoints.api_url, args.queued)
    ideal = args.concurrency / args.latency
    report = {
        "stand_in_latency_s": args.latency,
        "inline_overhead_ms": {
            "p50": round(statistics.median(overheads), 1), "p95": round(percentile(overheads, 0.95), 1),
            "max": round(max(overheads), 1),
        },
        "queued": {**throughput, "ideal_jobs_per_s": round(ideal, 2), "efficiency": round(throughput["jobs_per_s"] / ideal, 2)},
    }
    report["goals"] = {
        f"inline overhead p50 <= {GOAL_INLINE_OVERHEAD_P50_MS:g} ms": report["inline_overhead_ms"]["p50"] <= GOAL_INLINE_OVERHEAD_P50_MS,
        f"worker efficiency >= {GOAL_WORKER_EFFICIENCY:g}": report["queued"]["efficiency"] >= GOAL_WORKER_EFFICIENCY,
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
