"""Benchmark of job control under failure: jobs while workers are killed, and how fast a cancel stops a run.

    python -m bench.bench_control [--jobs 1000] [--kills 5] [--cancels 20]

1. Submits ``--jobs`` queued jobs (each with a webhook) while killing the cpu worker with SIGKILL at
   random moments ``--kills`` times (the local runtime restarts it, as ECS would replace the task), then
   waits for every job to settle. Reports succeeded, failed, lost (never settled), duplicated (a job
   that reported two different outcomes) and re-run (claimed again after its worker died).
2. Submits ``--cancels`` multi-call jobs (documents.summarize of 50 documents against a slow model),
   cancels each once it runs, and reports the time from the cancel to ``canceled`` (p50, p95).

Goals (bench/README.md): 0 lost, 0 duplicated; cancel p95 under 5 s. It never fails a build.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.report import percentile
from local.client import call
from local.pipeline import LocalPipeline, Options

GOAL_CANCEL_P95_S = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--cancels", type=int, default=20)
    parser.add_argument("--settle", type=float, default=600.0)
    return parser.parse_args(argv)


def kill_and_settle(pipeline: LocalPipeline, api: str, args: argparse.Namespace) -> dict[str, Any]:
    body = {"task": "claude.messages", "mode": "async", "webhook": {"url": pipeline.webhooks.url},
            "input": {"max_tokens": 20, "messages": [{"role": "user", "content": "Ping."}]}}
    kill_at = sorted(random.sample(range(args.jobs), min(args.kills, args.jobs)))
    ids: list[str] = []
    with ThreadPoolExecutor(8) as pool:
        for start in range(0, args.jobs, 50):
            batch = list(pool.map(lambda _: call("POST", f"{api}/v1/jobs", body), range(min(50, args.jobs - start))))
            ids += [job["id"] for status, _, job in batch if status == 202]
            while kill_at and kill_at[0] < len(ids):
                kill_at.pop(0)
                os.kill(pipeline.pids()["worker-cpu"], signal.SIGKILL)
    deadline = time.perf_counter() + args.settle
    states: dict[str, dict[str, Any]] = {}
    pending = set(ids)
    while pending and time.perf_counter() < deadline:
        for job_id in list(pending):
            _, _, job = call("GET", f"{api}/v1/jobs/{job_id}")
            states[job_id] = job
            if job["status"] not in {"queued", "running", "canceling"}:
                pending.discard(job_id)
        time.sleep(0.5)
    outcomes: dict[str, set[str]] = defaultdict(set)
    for event in pipeline.webhooks.events:
        outcomes[event["data"]["id"]].add(event["type"])
    return {
        "jobs": args.jobs, "accepted": len(ids), "worker_kills": args.kills,
        "succeeded": sum(1 for j in states.values() if j["status"] == "succeeded"),
        "failed": sum(1 for j in states.values() if j["status"] == "failed"),
        "lost": len(pending),
        "duplicated": sum(1 for kinds in outcomes.values() if len(kinds) > 1),
        "re_run_after_a_kill": sum(1 for j in states.values() if j.get("attempts", 0) > 1),
    }


def cancel_latency(pipeline: LocalPipeline, api: str, count: int) -> dict[str, Any]:
    documents = [{"id": str(i), "text": f"Document {i}. " * 20} for i in range(50)]
    body = {"task": "documents.summarize", "input": {"documents": documents}}
    latencies = []
    for _ in range(count):
        _, _, job = call("POST", f"{api}/v1/jobs", body)
        while call("GET", f"{api}/v1/jobs/{job['id']}")[2]["status"] == "queued":
            time.sleep(0.05)
        started = time.perf_counter()
        status, _, canceled = call("POST", f"{api}/v1/jobs/{job['id']}/cancel")
        while canceled["status"] not in {"canceled", "succeeded", "failed"}:
            canceled = call("GET", f"{api}/v1/jobs/{job['id']}?wait=10")[2]
        if canceled["status"] == "canceled":
            latencies.append(time.perf_counter() - started)
    return {
        "cancels": count, "confirmed": len(latencies),
        "p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pipeline = LocalPipeline(Options(standin_latency_s=0.05))
    with pipeline as endpoints:
        kills = kill_and_settle(pipeline, endpoints.api_url, args)
        assert pipeline.standin is not None, "the bench runs on the stand-in"
        pipeline.standin.configure(latency_s=1.0)  # each summary call takes a second: runs last ~7 s
        cancel = cancel_latency(pipeline, endpoints.api_url, args.cancels)
    met = kills["lost"] == 0 and kills["duplicated"] == 0 and cancel["p95_s"] is not None and cancel["p95_s"] < GOAL_CANCEL_P95_S
    report = {"kills": kills, "cancel": cancel, "goal_met": met}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
