"""Capacity: the pipeline at the model's rate limit, with model admission on and off, side by side.

    python -m bench.bench_capacity [--quick] [--only single|multi|noisy] [--out FILE]

The Claude stand-in enforces Anthropic's limits (120 RPM, 40,000 ITPM: ``local.standin.limits``) and
answers after 1 s. Each scenario runs on a fresh local pipeline, once with ``model_admission`` off and
once on (config key → ``MODEL_ADMISSION``; a build without admission runs "on" as "off", and the report
says so):

* single: 300 queued ``claude.messages`` jobs, 1 and 2 workers. Goodput is the binding limit's use from the
  moment the full bucket is first spent until the last call, from the stand-in's own counters (and per
  whole minute window); 429s per job and jobs failed beside it.
* multi: 100 ``documents.summarize`` jobs of 3 documents (300 calls), 1 worker: the same, plus wasted calls
  (answered calls beyond one per document: answers thrown away when a sibling call was refused).
* noisy: tenant B's 5 jobs submitted 5 s into tenant A's 300-job burst, against B alone on an idle
  pipeline; without a model limit (5 s calls, the worker's slots bind) and with one. A's throughput with B
  idle against A's with B.

A prompt is about 365 tokens: 40,000 ITPM allow about 110 calls a minute, under 120 RPM, so the input-token
limit binds and the request limit is within 10 % of binding. The stand-in and the local AWS's DynamoDB run in processes
of their own (``pipeline()`` says why): the bench measures the pipeline, not one interpreter serving every part of it.
``--quick`` runs a smoke of the machinery (fewer jobs, a quarter of the limits, one worker): its figures are not the
goals'. It never fails a build.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench.report import Goal, Section, epoch_s, publish
from jobcore.model import TERMINAL
from local.client import call
from local.gateway import LOCAL_API_KEY
from local.pipeline import LocalPipeline, Options
from local.standin.limits import ModelLimits
from stacks.config import PipelineConfig

LIMITS = ModelLimits(rpm=120, itpm=40_000)
LATENCY_S = 1.0  # the model's answer time, limited runs
UNLIMITED_LATENCY_S = 5.0  # without a limit the worker's slots bind: 5 s calls, as the issue measured
PROMPT = ("Capacity planning note: the model's rate limit is the pipeline's real bottleneck, not compute. " * 15)[:1_440]
TENANT_B_KEY = "tenant-b-key"
SUBMITTERS = 8  # a tenant's submits in flight at once
ROUTER_ENVIRONMENTS = 2 * SUBMITTERS  # A's and B's at once
# Goals (issue 21), printed beside the measures.
GOAL_GOODPUT = 0.95
GOAL_429_PER_JOB = 0.05
GOAL_B_SLOWDOWN = 1.5
GOAL_A_LOSS = 0.05


@dataclass(frozen=True)
class Scale:
    jobs: int = 300
    multi_jobs: int = 100
    documents: int = 3
    b_jobs: int = 5
    b_after_s: float = 5.0
    workers: tuple[int, ...] = (1, 2)
    limits: ModelLimits = LIMITS


QUICK = Scale(jobs=40, multi_jobs=12, b_jobs=2, b_after_s=2.0, workers=(1,), limits=ModelLimits(rpm=30, itpm=10_000))


def admission_built() -> bool:
    """Whether this build has model admission at all (the ``model_admission`` config key)."""
    return "model_admission" in PipelineConfig.keys()


def messages_job() -> dict[str, Any]:
    return {"task": "claude.messages", "mode": "async",
            "input": {"max_tokens": 200, "messages": [{"role": "user", "content": PROMPT}]}}


def summarize_job(documents: int) -> dict[str, Any]:
    docs = [{"id": f"d{i}", "text": f"Document {i}. {PROMPT}"} for i in range(documents)]
    return {"task": "documents.summarize", "mode": "async", "input": {"documents": docs, "max_words": 40}}


# --- the pipeline ----------------------------------------------------------------------------------

@contextmanager
def pipeline(*, admission: bool, workers: int, limits: ModelLimits | None, latency_s: float) -> Iterator[tuple[str, Any]]:
    """A fresh local pipeline (API URL, its stand-in), admission on or off."""
    # A build without admission refuses the unknown key; there both runs are the same pipeline.
    config = {"model_admission": admission} if admission_built() else {}
    # The stand-in in its own process, as the API is on another machine: in this one its answers waited on moto's
    # work for the interpreter lock (a 1 s answer took 3 to 9 s under a 300-job burst). And the local AWS on two cores,
    # DynamoDB in a process of its own: in one, A's burst saturated it (one core's worth of AWS; moving the whole of
    # it to another process changed nothing), and B's every write queued behind A's, which AWS does not do.
    options = Options(standin_latency_s=latency_s, standin_limits=limits, workers_per_lane=workers, config=config,
                      standin_process=True, dynamodb_process=True, router_warm=ROUTER_ENVIRONMENTS)
    local = LocalPipeline(options)
    with local as endpoints:
        try:
            warm(endpoints.api_url)
            # And the workers: one still importing the SDK when A's burst came spent seconds of a core on it then.
            local.wait_for_workers()
            yield endpoints.api_url, local.standin
        finally:
            # moto's in-process server keeps its state for the process: the next pipeline creates the same names.
            urllib.request.urlopen(urllib.request.Request(f"{endpoints.aws_endpoint}/moto-api/reset", method="POST"), timeout=30).close()


def warm(api: str, environments: int = ROUTER_ENVIRONMENTS) -> None:
    """Let the router's execution environments (started with the pipeline and kept: ``router_warm``, Lambda's
    provisioned concurrency) finish their init before timing anything: on a busy machine a cold one's import can
    outlast the gateway's 29 s, and a submit must not be lost to that. As many as the noisy neighbour's submits use at
    once (A's 8 and B's 8): B's on an idle pipeline found warm ones, so B's beside A's burst must too, or B's time
    measures Lambda cold starts (1-2 s each on this machine), not the pipeline's fairness. Started on demand instead,
    fewer came up here (a request waits a moment for a busy one before starting another) and B's submits started
    the rest under A's burst."""
    for _ in range(5):
        with ThreadPoolExecutor(environments) as pool:
            statuses = list(pool.map(lambda _index: call("GET", f"{api}/v1/tasks")[0], range(environments)))
        if all(status == 200 for status in statuses):
            return


def submit(api: str, body: dict[str, Any], count: int, key: str = LOCAL_API_KEY) -> list[str]:
    def one(_index: int) -> str:
        status, _, job = call("POST", f"{api}/v1/jobs", body, key=key)
        assert status in (200, 201, 202), (status, job)
        return str(job["id"])

    with ThreadPoolExecutor(SUBMITTERS) as pool:
        return list(pool.map(one, range(count)))


def wait_for(api: str, ids: list[str], key: str = LOCAL_API_KEY, timeout_s: float = 3_600) -> list[dict[str, Any]]:
    """Every job's final view, polling the tenant's job list (newest first, pages of 100)."""
    deadline, wanted = time.monotonic() + timeout_s, set(ids)
    while True:
        views = {job["id"]: job for job in list_jobs(api, key) if job["id"] in wanted}
        if all(views.get(job_id, {}).get("status") in TERMINAL for job_id in ids) or time.monotonic() > deadline:
            return [views[job_id] for job_id in ids if job_id in views]
        time.sleep(2)


def list_jobs(api: str, key: str) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        query = "limit=100" + (f"&cursor={cursor}" if cursor else "")
        for _ in range(30):  # a 503 (the store slow under the load: the router's bounded calls) is retried, as by a client
            status, _, page = call("GET", f"{api}/v1/jobs?{query}", key=key)
            if status != 503:
                break
            time.sleep(1)
        assert status == 200, page
        yield from page["jobs"]
        cursor = page.get("next_cursor")
        if not cursor:
            return


def span_s(jobs: list[dict[str, Any]]) -> float:
    """From the first job's creation to the last one's finish, by the jobs' own timestamps."""
    return max(epoch_s(j["finished_at"]) for j in jobs if j["finished_at"]) - min(epoch_s(j["created_at"]) for j in jobs)


# --- figures from the stand-in's counters ------------------------------------------------------------

# The bucket's level below which the limit counts as reached: under the pacer's two reserves (10 % each by default).
REACHED_LEVEL = 0.25


def goodput(limits_stats: dict[str, Any]) -> dict[str, Any]:
    """The binding limit's use once it is reached: from the second after its bucket first fell below
    ``REACHED_LEVEL`` of its capacity (replayed from the timeline) to the last second with a call admitted; per
    whole minute window too. Not "ran dry": the pacer never drains the bucket (it keeps the inline and the fair
    reserves, docs/capacity.md), and a full bucket's first minute is a burst, not the limit's rate.

    ``limits_stats`` is the stand-in's ``stats()["limits"]``; the binding dimension is the one used most."""
    columns = {"requests": 1, "input_tokens": 3, "output_tokens": 4}
    keys = {"requests": "rpm", "input_tokens": "itpm", "output_tokens": "otpm"}
    timeline = limits_stats["timeline"]
    best: dict[str, Any] = {"binding": None, "reached_at_s": None, "goodput": None, "windows": []}
    for name, column in columns.items():
        per_minute = limits_stats["limits"][keys[name]]
        if per_minute is None or not timeline:
            continue
        rate, used = per_minute / 60, {row[0]: row[column] for row in timeline}
        last = max(second for second, *counts in timeline if counts[0])
        level, reached = float(per_minute), None
        for second in range(last + 1):  # the stand-in's bucket, replayed a second at a time
            level -= used.get(second, 0)
            if level <= REACHED_LEVEL * per_minute:
                reached = second + 1
                break
            level = min(float(per_minute), level + rate)
        if reached is None or last + 1 <= reached:
            fraction = sum(used.values()) / (rate * (last + 1))  # never ran dry: its mean use, for the binding choice
            candidate = {"binding": name, "reached_at_s": None, "goodput": None, "mean_use": fraction, "windows": []}
        else:
            spent = sum(used.get(s, 0) for s in range(reached, last + 1))
            fraction = spent / (rate * (last + 1 - reached))
            windows = [sum(used.get(s, 0) for s in range(start, start + 60)) / per_minute
                       for start in range(reached, last + 1 - 59, 60)]
            candidate = {"binding": name, "reached_at_s": reached, "goodput": round(fraction, 3), "mean_use": fraction,
                         "windows": [round(w, 3) for w in windows]}
        rank = (candidate["reached_at_s"] is not None, candidate["mean_use"])  # a limit reached binds before one never reached
        if best["binding"] is None or rank > (best["reached_at_s"] is not None, best["mean_use"]):
            best = candidate
    return best


@dataclass
class Run:
    """One scenario's run: what the jobs and the stand-in say."""

    label: str
    jobs: list[dict[str, Any]]
    stats: dict[str, Any]
    calls_needed: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(job["status"] != "succeeded" for job in self.jobs)

    @property
    def per_job_429(self) -> float:
        return self.stats["by_status"].get("429", 0) / max(1, len(self.jobs))

    @property
    def wasted(self) -> int:
        return max(0, self.stats["by_status"].get("200", 0) - self.calls_needed)

    def goodput(self) -> dict[str, Any]:
        return goodput(self.stats["limits"]) if self.stats.get("limits") else {}

    def jobs_per_min(self) -> float:
        return 60 * len(self.jobs) / span_s(self.jobs)


def run_burst(label: str, body: dict[str, Any], count: int, calls_per_job: int, **setup: Any) -> Run:
    with pipeline(**setup) as (api, standin):
        ids = submit(api, body, count)
        jobs = wait_for(api, ids)
        return Run(label, jobs, standin.stats(), calls_per_job * count)


def run_noisy(scale: Scale, *, admission: bool, limits: ModelLimits | None) -> dict[str, Any]:
    """B alone on an idle pipeline, A alone, then B 5 s into A's burst: B's time and A's throughput."""
    latency = LATENCY_S if limits else UNLIMITED_LATENCY_S
    setup: dict[str, Any] = {"admission": admission, "workers": 1, "limits": limits, "latency_s": latency}
    body = messages_job()
    with pipeline(**setup) as (api, _):
        b_idle = span_s(wait_for(api, submit(api, body, scale.b_jobs, TENANT_B_KEY), TENANT_B_KEY))
    with pipeline(**setup) as (api, _):
        a_alone = wait_for(api, submit(api, body, scale.jobs))
    with pipeline(**setup) as (api, _):
        with ThreadPoolExecutor(1) as pool:
            a_ids = pool.submit(submit, api, body, scale.jobs)
            time.sleep(scale.b_after_s)
            b_ids = submit(api, body, scale.b_jobs, TENANT_B_KEY)
            a_ids_done = a_ids.result()
        b_busy = wait_for(api, b_ids, TENANT_B_KEY)
        a_busy = wait_for(api, a_ids_done)
    a_idle_rate, a_busy_rate = 60 * len(a_alone) / span_s(a_alone), 60 * len(a_busy) / span_s(a_busy)
    return {"b_idle_s": b_idle, "b_busy_s": span_s(b_busy), "a_alone_per_min": a_idle_rate, "a_with_b_per_min": a_busy_rate,
            "failed": sum(j["status"] != "succeeded" for j in [*a_alone, *a_busy, *b_busy])}


# --- the report -------------------------------------------------------------------------------------

def _mode(admission: bool) -> str:
    return "on" if admission else "off"


def burst_lines(runs: list[Run], multi: bool) -> list[str]:
    head = "| run | goodput (binding limit; from s) | per minute window | 429s / job | failed | jobs / min |"
    rows = [head + (" wasted calls |" if multi else ""), "|---" * (7 if multi else 6) + "|"]
    for run in runs:
        g = run.goodput()
        reached = f"{g['goodput']} ({g['binding']}; {g['reached_at_s']} s)" if g.get("goodput") is not None else "limit not reached"
        windows = ", ".join(f"{w:.2f}" for w in g.get("windows", [])) or "–"
        row = (f"| {run.label} | {reached} | {windows} | {run.per_job_429:.2f} | {run.failed} of {len(run.jobs)} "
               f"| {run.jobs_per_min():.1f} |")
        rows.append(row + (f" {run.wasted} of {run.stats['by_status'].get('200', 0)} |" if multi else ""))
    return rows


def burst_goals(runs: list[Run], multi: bool) -> list[Goal]:
    goals = []
    for run in (r for r in runs if "admission on" in r.label):
        g = run.goodput().get("goodput")
        goals.append(Goal(f"{run.label}: goodput ≥ {GOAL_GOODPUT}", str(g), g is not None and g >= GOAL_GOODPUT))
        goals.append(Goal(f"{run.label}: ≤ {GOAL_429_PER_JOB} 429s per job", f"{run.per_job_429:.2f}", run.per_job_429 <= GOAL_429_PER_JOB))
        goals.append(Goal(f"{run.label}: 0 jobs failed", str(run.failed), run.failed == 0))
        if multi:
            goals.append(Goal(f"{run.label}: no wasted calls", str(run.wasted), run.wasted == 0))
    return goals


def single_section(scale: Scale) -> Section:
    body, runs = messages_job(), []
    for workers in scale.workers:
        for admission in (False, True):
            label = f"{scale.jobs} jobs, {workers} worker{'s' if workers > 1 else ''}, admission {_mode(admission)}"
            _progress(label)
            runs.append(run_burst(label, body, scale.jobs, 1, admission=admission, workers=workers,
                                  limits=scale.limits, latency_s=LATENCY_S))
    return Section(f"At the limit: {scale.jobs} queued claude.messages jobs", burst_goals(runs, False), burst_lines(runs, False))


def multi_section(scale: Scale) -> Section:
    body, runs = summarize_job(scale.documents), []
    for admission in (False, True):
        label = f"{scale.multi_jobs} × documents.summarize ({scale.documents} calls), 1 worker, admission {_mode(admission)}"
        _progress(label)
        runs.append(run_burst(label, body, scale.multi_jobs, scale.documents, admission=admission, workers=1,
                              limits=scale.limits, latency_s=LATENCY_S))
    return Section("At the limit: a multi-call task", burst_goals(runs, True), burst_lines(runs, True))


def noisy_section(scale: Scale) -> Section:
    goals: list[Goal] = []
    rows = ["| model limit | admission | B alone (idle) | B during A's burst | × | A alone, jobs/min | A with B | A lowered by | failed |",
            "|---|---|---|---|---|---|---|---|---|"]
    for limits in (None, scale.limits):
        for admission in (False, True):
            name = "none (5 s calls)" if limits is None else f"{limits.rpm} RPM / {limits.itpm:,} ITPM"
            _progress(f"noisy neighbour, limit {name}, admission {_mode(admission)}")
            n = run_noisy(scale, admission=admission, limits=limits)
            slowdown, loss = n["b_busy_s"] / n["b_idle_s"], 1 - n["a_with_b_per_min"] / n["a_alone_per_min"]
            rows.append(f"| {name} | {_mode(admission)} | {n['b_idle_s']:.1f} s | {n['b_busy_s']:.1f} s | {slowdown:.1f} × "
                        f"| {n['a_alone_per_min']:.1f} | {n['a_with_b_per_min']:.1f} | {100 * loss:.1f} % | {n['failed']} |")
            if admission:
                goals.append(Goal(f"B within {GOAL_B_SLOWDOWN}× its idle time, limit {name}", f"{slowdown:.1f} ×",
                                  slowdown <= GOAL_B_SLOWDOWN))
                goals.append(Goal(f"A not lowered > {GOAL_A_LOSS:.0%} by B, limit {name}", f"{100 * loss:.1f} %", loss <= GOAL_A_LOSS))
    return Section(f"Noisy neighbour: tenant B's {scale.b_jobs} jobs {scale.b_after_s:g} s into tenant A's {scale.jobs}", goals, rows)


SECTIONS: dict[str, Callable[[Scale], Section]] = {"single": single_section, "multi": multi_section, "noisy": noisy_section}


def _progress(what: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {what} ...", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer jobs, a quarter of the limits, one worker")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only this part (repeatable)")
    parser.add_argument("--out", help="also write the report (markdown) to this file")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else Scale()
    started = time.perf_counter()
    sections = [SECTIONS[name](scale) for name in args.only or SECTIONS]
    publish(sections, quick=args.quick, started=started, out=args.out,
            detail=f"the stand-in at {scale.limits.rpm} RPM / {scale.limits.itpm:,} ITPM, {LATENCY_S:g} s a call",
            note="" if admission_built() else "This build has no model admission: \"on\" ran as \"off\".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
