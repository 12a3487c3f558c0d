"""Benchmark of the batch lane: many ``mode: "batch"`` jobs through the local pipeline's collector and the Claude
stand-in's Message Batches API.

    python -m bench.bench_batch [--jobs 200] [--window 0] [--batch-delay 1]

Submits ``--jobs`` claude.messages jobs with ``mode: "batch"`` (16 at a time), waits for every one to finish,
and reports how many succeeded, the batches made and their requests (mean, max), and the time from submission
to the finished job (p50, p95). ``--window`` is ``batch_window_s`` (seconds the collector waits for a fuller
batch), ``--batch-delay`` how long the stand-in takes to process a batch. The collector passes every second
here (every minute in AWS, where a batch takes minutes to hours: these figures measure the pipeline's own
overhead, not the API's). It never fails a build.
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--window", type=int, default=0, help="batch_window_s")
    parser.add_argument("--batch-delay", type=float, default=1.0, help="the stand-in's seconds per batch")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = Options(config={"batch_window_s": args.window}, standin_batch_delay_s=args.batch_delay)
    with LocalPipeline(options) as endpoints:
        api = endpoints.api_url
        submitted: dict[str, float] = {}

        def submit(i: int) -> None:
            body = {"task": "claude.messages", "mode": "batch",
                    "input": {"max_tokens": 40, "messages": [{"role": "user", "content": f"Question {i}: what is a batch?"}]}}
            started = time.monotonic()
            status, _, job = call("POST", f"{api}/v1/jobs", body)
            if status != 202:
                raise SystemExit(f"submission {i} answered {status}: {job}")
            submitted[job["id"]] = started

        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(submit, range(args.jobs)))
        submit_s = time.monotonic() - began
        finished: dict[str, tuple[float, dict[str, Any]]] = {}
        deadline = time.monotonic() + 300
        while len(finished) < len(submitted) and time.monotonic() < deadline:
            for job_id in [j for j in submitted if j not in finished]:
                _, _, job = call("GET", f"{api}/v1/jobs/{job_id}")
                if job["status"] in {"succeeded", "failed", "canceled", "expired"}:
                    finished[job_id] = (time.monotonic(), job)
            time.sleep(0.2)
    latencies = [finished[j][0] - submitted[j] for j in finished]
    jobs = [job for _, job in finished.values()]
    per_batch: dict[str, int] = {}
    for job in jobs:
        per_batch[job.get("batch_id") or "-"] = per_batch.get(job.get("batch_id") or "-", 0) + 1
    report = {
        "jobs": args.jobs, "window_s": args.window, "standin_batch_delay_s": args.batch_delay,
        "submitted_in_s": round(submit_s, 2),
        "succeeded": sum(job["status"] == "succeeded" for job in jobs), "lost": args.jobs - len(finished),
        "batches": len(per_batch), "requests_per_batch_mean": round(statistics.mean(per_batch.values()), 1),
        "requests_per_batch_max": max(per_batch.values()),
        "submit_to_result_p50_s": round(percentile(latencies, 0.5), 2),
        "submit_to_result_p95_s": round(percentile(latencies, 0.95), 2),
    }
    print(json.dumps(report))
    if report["lost"] or report["succeeded"] != args.jobs:
        print("not every job succeeded", file=sys.stderr)


if __name__ == "__main__":
    main()
