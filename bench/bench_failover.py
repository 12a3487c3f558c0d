"""Failover at the issue's size (issue 22): with ``model_providers`` ``["anthropic", "bedrock"]`` and the Anthropic
stand-in answering 529 for 60 s, 100 queued and 20 inline jobs, submitted while it does, all succeed (0 failed, 0
stuck), the calls made while Anthropic's breaker was open are Bedrock's, and traffic returns to Anthropic once it
answers again and the breakers' cool-down (30 s, the deployment's default) has passed.

    python -m bench.bench_failover [--quick] [--out FILE]

Both providers are the one stand-in (the Messages API and Bedrock's InvokeModel path, 0.5 s a call). ``--quick``:
20 queued and 5 inline jobs over 15 s of 529s, a 5 s cool-down. Never fails a build: it reports its goals.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.bench_capacity import span_s, wait_for, warm
from bench.report import Goal, Section, epoch_s, publish
from jobcore.model import TERMINAL
from local.client import call
from local.pipeline import LocalPipeline, Options

LATENCY_S = 0.5
JOB = {"task": "claude.messages", "input": {"max_tokens": 100, "messages": [{"role": "user", "content": "Summarize: failover."}]}}


@dataclass(frozen=True)
class Scale:
    queued: int = 100
    inline: int = 20
    down_s: float = 60.0
    cool_down_s: float = 30.0
    after: int = 10  # jobs submitted once Anthropic answers again and the cool-down has passed


QUICK = Scale(queued=20, inline=5, down_s=15.0, cool_down_s=5.0, after=4)


def post(api: str, mode: str) -> dict[str, Any]:
    """The job as the POST answered it (a sync job: finished, with its usage)."""
    for _ in range(30):  # a 503 (the router busy on a loaded machine) is retried, as a client would
        status, _, job = call("POST", f"{api}/v1/jobs", {**JOB, "mode": mode})
        if status != 503:
            break
        time.sleep(1)
    assert status in (200, 202), (status, job)
    return job


def submit_one(api: str, mode: str) -> str:
    return str(post(api, mode)["id"])


def providers(job: dict[str, Any]) -> set[str]:
    return set((job.get("usage") or {}).get("by_provider", {}))


def run(scale: Scale) -> Section:
    options = Options(standin_latency_s=LATENCY_S, breaker_cool_down_s=scale.cool_down_s,
                      config={"model_providers": ["anthropic", "bedrock"]})
    local = LocalPipeline(options)
    with local as endpoints:
        api, standin = endpoints.api_url, local.standin
        assert standin is not None
        warm(api)
        standin.configure(fail_status=529, fail_for_s=scale.down_s)
        down_at, outage_ends = time.monotonic(), time.time() + scale.down_s
        # Spread over the outage's first two thirds: queued jobs submitted in a steady stream, inline ones among them.
        spread_s = scale.down_s * 2 / 3
        plan = sorted([(spread_s * i / scale.queued, "async") for i in range(scale.queued)]
                      + [(spread_s * (i + 0.5) / scale.inline, "sync") for i in range(scale.inline)])
        with ThreadPoolExecutor(8) as pool:
            futures = []
            for at, mode in plan:
                time.sleep(max(0.0, down_at + at - time.monotonic()))
                futures.append(pool.submit(submit_one, api, mode))
            ids = [future.result() for future in futures]
        during = wait(api, ids, timeout_s=600)
        # After the outage and the cool-down, the first probe that Anthropic answers closes the breakers (shared through
        # the table): one job at a time until one is Anthropic's, then the rest, all expected on Anthropic.
        time.sleep(max(0.0, down_at + scale.down_s + scale.cool_down_s - time.monotonic()))
        returned_after_s = None
        for _ in range(60):
            if providers(post(api, "sync")) == {"anthropic"}:  # answered inline: the POST's answer is the finished job
                returned_after_s = time.monotonic() - (down_at + scale.down_s + scale.cool_down_s)
                break
            time.sleep(0.5)
        after_ids = [submit_one(api, "sync" if i % 2 else "async") for i in range(scale.after)]
        after = wait(api, after_ids, timeout_s=300)
        stats = standin.stats()
    return report(scale, ids, during, after_ids, after, stats, outage_ends, returned_after_s)


def wait(api: str, ids: list[str], *, timeout_s: float) -> dict[str, dict[str, Any]]:
    """The jobs' views by id once all are terminal (or at the timeout: the unfinished ones are the stuck)."""
    return {job["id"]: job for job in wait_for(api, ids, timeout_s=timeout_s)}


def report(scale: Scale, ids: list[str], during: dict[str, dict[str, Any]], after_ids: list[str],
           after: dict[str, dict[str, Any]], stats: dict[str, Any], outage_ends: float,
           returned_after_s: float | None) -> Section:
    jobs = [during.get(i, {}) for i in ids]
    failed = sum(job.get("status") == "failed" for job in jobs)
    stuck = sum(job.get("status") not in TERMINAL for job in jobs)
    on_bedrock = sum("bedrock" in providers(job) for job in jobs)
    # A job whose run started while Anthropic refused every call cannot have been answered by Anthropic alone.
    in_outage = [job for job in jobs if job.get("started_at") and epoch_s(job["started_at"]) < outage_ends]
    missed = [job["id"] for job in in_outage if "bedrock" not in providers(job)]
    back = [after.get(i, {}) for i in after_ids]
    back_ok = sum(job.get("status") == "succeeded" and providers(job) == {"anthropic"} for job in back)
    inline = [job for job in jobs if job.get("route", {}).get("lane") == "inline"]
    finished = [job for job in jobs if job.get("finished_at")]
    span = span_s(finished) if finished else float("nan")
    refused = stats["by_status"].get("529", 0)
    goals = [
        Goal(f"{scale.queued} queued + {scale.inline} inline jobs during {scale.down_s:g} s of 529s: none failed",
             str(failed), failed == 0),
        Goal("none stuck (every job terminal)", str(stuck), stuck == 0),
        Goal("jobs run during the outage that name Bedrock for their calls", f"{len(in_outage) - len(missed)} of {len(in_outage)}",
             bool(in_outage) and not missed),
        Goal(f"after the outage and the {scale.cool_down_s:g} s cool-down, a job answered by Anthropic again",
             "never" if returned_after_s is None else f"{returned_after_s:.1f} s after the cool-down", returned_after_s is not None),
        Goal("then every job answered by Anthropic", f"{back_ok} of {len(back)}", back_ok == len(back)),
    ]
    lines = [
        "| jobs | succeeded | failed | stuck | with Bedrock calls | inline (sync) jobs | Anthropic 529s | Bedrock 200s | span |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {len(jobs)} | {sum(j.get('status') == 'succeeded' for j in jobs)} | {failed} | {stuck} | {on_bedrock} | "
        f"{len(inline)} | {refused} | {stats['bedrock']['by_status'].get('200', 0)} | {span:.0f} s |",
        "",
        f"Anthropic's 529s were {refused} for {len(jobs)} jobs: each process's breaker opened after its first run of "
        "refusals, and its calls went to Bedrock until the cool-down let one probe through.",
    ]
    return Section("Failover: Anthropic overloaded, Bedrock answering", goals, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer jobs, a shorter outage and cool-down")
    parser.add_argument("--out", help="also write the report (markdown) to this file")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else Scale()
    started = time.perf_counter()
    section = run(scale)
    publish([section], quick=args.quick, started=started, out=args.out,
            detail=f"the stand-in at {LATENCY_S:g} s a call, Anthropic answering 529 for {scale.down_s:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
