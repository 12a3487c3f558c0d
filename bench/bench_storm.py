"""Benchmark of a rate-limit storm: queued jobs while the model answers 429 for a minute, then recovers.

    python -m bench.bench_storm [--jobs 40] [--storm-s 60] [--retry-after 1] [--settle 900]

Starts the local pipeline (the deployment's configuration: 5 receives per message, the runner's back-off),
makes the Claude stand-in answer every call with 429 and ``retry-after: 1`` for ``--storm-s`` seconds
(``{"fail": {"status": 429, "for_s": …, "retry_after": 1}}``), submits ``--jobs`` queued jobs right away,
then polls every job until it settles (or ``--settle`` seconds pass). Reports succeeded, failed, lost
(not settled), how many attempts they took, the model calls by status, whether the jobs' views said why
they waited, and the time to drain: from the storm's end to the last job's end.

Goal (bench/README.md): 0 failed, 0 lost. Before the fix, the 429's one second replaced the back-off, and
every job spent its five receives within about 30 s and failed. It never fails a build.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.report import epoch_s
from jobcore.model import TERMINAL
from local.client import call
from local.pipeline import LocalPipeline, Options

SETTLED = TERMINAL  # a job's last states


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--storm-s", type=float, default=60.0, help="how long the model answers 429, seconds")
    parser.add_argument("--retry-after", type=float, default=1.0, help="the 429s' retry-after header, seconds")
    parser.add_argument("--settle", type=float, default=900.0, help="how long to wait for every job to settle")
    return parser.parse_args(argv)


def warm_up(api: str, body: dict[str, Any], timeout_s: float = 120.0) -> None:
    _, _, job = call("POST", f"{api}/v1/jobs", body)
    deadline = time.time() + timeout_s
    while job["status"] not in SETTLED and time.time() < deadline:
        _, _, job = call("GET", f"{api}/v1/jobs/{job['id']}?wait=5")
    assert job["status"] == "succeeded", f"the warm-up job did not succeed: {job}"


def storm(pipeline: LocalPipeline, api: str, args: argparse.Namespace) -> dict[str, Any]:
    assert pipeline.standin is not None, "the bench runs on the stand-in"
    body = {"task": "claude.messages", "mode": "async",
            "input": {"max_tokens": 20, "messages": [{"role": "user", "content": "Say something short."}]}}
    warm_up(api, body)  # the worker is polling: the storm starts on a running pipeline
    pipeline.standin.reset()
    pipeline.standin.configure(fail_status=429, fail_for_s=args.storm_s, retry_after=args.retry_after)
    started = time.time()
    storm_ends = started + args.storm_s
    with ThreadPoolExecutor(8) as pool:
        submitted = list(pool.map(lambda _: call("POST", f"{api}/v1/jobs", body), range(args.jobs)))
    ids = [job["id"] for status, _, job in submitted if status == 202]
    waiting_seen: set[str] = set()
    states: dict[str, dict[str, Any]] = {}
    pending = set(ids)
    deadline = time.time() + args.settle
    while pending and time.time() < deadline:
        for job_id in list(pending):
            _, _, job = call("GET", f"{api}/v1/jobs/{job_id}")
            states[job_id] = job
            if job.get("waiting"):
                waiting_seen.add(job_id)
            if job["status"] in SETTLED:
                pending.discard(job_id)
        time.sleep(1.0)
    settled = [job for job in states.values() if job["status"] in SETTLED]
    last_end = max((epoch_s(job["finished_at"]) for job in settled if job.get("finished_at")), default=None)
    calls = pipeline.standin.stats()["by_status"]
    failures = Counter(job["error"]["message"] for job in settled if job["status"] == "failed")
    return {
        "jobs": args.jobs, "accepted": len(ids), "storm_s": args.storm_s, "retry_after_s": args.retry_after,
        "succeeded": sum(job["status"] == "succeeded" for job in settled),
        "failed": sum(job["status"] == "failed" for job in settled),
        "lost": len(pending),
        "attempts": dict(sorted(Counter(job["attempts"] for job in settled).items())),
        "said_why_they_waited": len(waiting_seen),
        "model_calls": {"total": sum(calls.values()), **calls},
        "drain_after_storm_s": round(last_end - storm_ends, 1) if last_end else None,
        "first_submit_to_last_settled_s": round(last_end - started, 1) if last_end else None,
        "failure_reasons": dict(failures.most_common(3)),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pipeline = LocalPipeline(Options())
    with pipeline as endpoints:
        report = storm(pipeline, endpoints.api_url, args)
    report["goal_met"] = report["failed"] == 0 and report["lost"] == 0
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
