"""AWS calls per job by path: what each way through the pipeline costs in round trips to AWS.

    python -m bench.bench_calls

The router's job service and a worker's runner, wired exactly as in AWS (``jobadapters.wiring``), run on
moto in this process with a stand-in model that answers at once; every boto3 call is counted as it is
made (``local.aws_calls``: botocore's ``before-call``, once per API call, retries not counted). Each path
is counted twice: now, and with every result stored in S3 as before results could live in the job item
(``RESULT_IN_ITEM_BYTES`` set to 0); the notes give the counts from before issue 15. The counts are
deterministic (but for the worker's poller row, which includes its idle receives); ``--quick`` changes
nothing. Goal: an inline job makes at most 3 AWS calls (record it, then finish it and add it to its tenant's usage in one
transaction: issue 23).
It never fails a build.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from bench.report import Goal, Section
from jobcore.limits import RESULT_IN_ITEM_BYTES
from local.aws_calls import AwsCalls, summary

GOAL_INLINE_CALLS = 3  # record, then finish it and add it to its tenant's usage counters (one transaction, issue 23)
BUDGETED_TENANT = "tenant-budgeted"
MESSAGES = {"max_tokens": 20, "messages": [{"role": "user", "content": "Ping."}]}
TENANT = "tenant-bench"
LIMIT_KB = RESULT_IN_ITEM_BYTES // 1024
BIG_TEXT_BYTES = 100 * 1024  # a result over it


@dataclass
class StandInModel:
    """A LanguageModel answering every request at once with ``text`` (no network)."""

    text: str = "pong"

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        return {
            "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench",
            "content": [{"type": "text", "text": self.text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }


@contextmanager
def _moto() -> Iterator[tuple[Any, Any]]:
    """moto in this process, with the resources the CDK app makes; (resources, clients)."""
    import boto3
    from moto import mock_aws

    from jobadapters.wiring import AwsClients
    from local import moto_transactions, resources

    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_SESSION_TOKEN": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    cleared = {key: None for key in os.environ if key.startswith("AWS_ENDPOINT_URL") or key == "AWS_PROFILE"}
    moto_transactions.install()  # moto's own raced the worker's concurrent writes (local.moto_transactions)
    with mock.patch.dict(os.environ, env), _without(cleared), mock_aws():
        session = boto3.Session(region_name="us-east-1")
        made = resources.create(session, lanes=_lanes(), max_receives=5)
        clients = AwsClients(session.resource("dynamodb").Table(made.table), session.client("sqs"), session.client("s3"))
        yield made, clients


@contextmanager
def _without(keys: Mapping[str, None]) -> Iterator[None]:
    saved = {key: os.environ.pop(key) for key in keys if key in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _lanes() -> Any:
    from jobcore.lanes import INLINE, FargateCompute, LambdaCompute, Lane, Lanes

    return Lanes((
        Lane(name=INLINE, queued=False, memory_mb=1024, time_limit_s=10, compute=LambdaCompute(memory_mb=1024)),
        Lane(name="cpu", queued=True, memory_mb=4096, time_limit_s=300, concurrency=8,
             compute=FargateCompute(vcpu=1.0, memory_mb=4096, spot=True)),
    ))


def _service(aws: Any, clients: Any) -> tuple[Any, Any, StandInModel]:
    """The router's job service and a cpu worker's runner, as wired in AWS, and the model they call."""
    from jobadapters.settings import RouterSettings
    from jobadapters.wiring import build_runner, build_service

    lanes = _lanes()
    env = {
        "STAGE": "bench", "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket, "LANES": json.dumps(lanes.to_dict()),
        "PRICE_OVERRIDES": "{}", "LANE_QUEUE_URLS": json.dumps({"cpu": aws.queue_urls["cpu"]}),
        "WEBHOOK_QUEUE_URL": aws.webhook_queue_url, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "MODEL_ID": "claude-bench", "JOB_TTL_DAYS": "30", "RESULT_RETENTION_DAYS": "30",  # cdk.json's defaults
        "TENANT_BUDGETS_USD": json.dumps({BUDGETED_TENANT: 100}), "METRICS_FILE": os.devnull,  # the EMF lines: not this report
    }
    service = build_service(RouterSettings.from_env(env), clients, env=env)
    model = StandInModel()
    service.llm = model
    worker = build_runner(clients, aws.bucket, aws.webhook_queue_url, lanes, cost_model=None, role="worker-cpu",
                          result_retention_days=30)
    return service, worker, model


def count_paths() -> dict[str, list[str]]:
    """Each path's calls, in order, on a fresh moto."""
    from jobcore.requests import parse_submit
    from jobcore.tasks import RunContext

    with _moto() as (aws, clients):
        service, worker, model = _service(aws, clients)
        calls = AwsCalls(clients.table, clients.sqs, clients.s3)
        found: dict[str, list[str]] = {}

        def path(name: str, run: Callable[[], Any]) -> Any:
            calls.take()
            done = run()
            found[name] = calls.take()
            return done

        def submit(key: str | None = None, *, tenant: str = TENANT, **body: Any) -> Any:
            request = parse_submit({"task": "claude.messages", "input": MESSAGES, **body})
            return service.submit(request, tenant_id=tenant, idempotency_key=key)

        def get(job_id: str) -> Any:
            return service.view(service.get(job_id, tenant_id=TENANT))

        inline = path("inline job (sync, no webhook)", lambda: submit(mode="sync"))
        path("inline job of a tenant with a monthly budget", lambda: submit(mode="sync", tenant=BUDGETED_TENANT))
        path("inline job with a webhook", lambda: submit(mode="sync", webhook={"url": "https://hooks.example.com/jobs"}))
        path("inline job with an Idempotency-Key", lambda: submit("key-1", mode="sync"))
        path("the same request again (Idempotency-Key replayed)", lambda: submit("key-1", mode="sync"))
        model.text = "x" * BIG_TEXT_BYTES
        big = path(f"inline job, result over {LIMIT_KB} KB", lambda: submit(mode="sync"))
        model.text = "pong"
        queued = path("queued job: submit (router)", lambda: submit(mode="async"))
        ctx = RunContext(llm=model, model_id="claude-bench")
        path("queued job: the worker's run (runner)",
             lambda: worker.process(queued.job.job_id, ctx=ctx, receive_count=1, max_receives=5))
        path("GET of a finished inline job", lambda: get(inline.job.job_id))
        path("GET of a finished queued job", lambda: get(queued.job.job_id))
        path(f"GET of a job whose result is over {LIMIT_KB} KB", lambda: get(big.job.job_id))
        return found


def count_worker(jobs: int = 10, *, timeout_s: float = 60.0) -> tuple[int, list[str]] | None:
    """The worker's poller and runner (``worker.poller.Poller``) taking ``jobs`` queued jobs at once: (jobs, every
    call it made, idle receives included, until the last was settled). None where the worker cannot be imported."""
    import threading
    import time

    from jobcore.requests import parse_submit
    from jobcore.tasks import RunContext

    try:
        from worker.poller import Poller
    except ImportError:  # container_src is not on the path
        return None
    with _moto() as (aws, clients):
        service, worker, model = _service(aws, clients)
        for _ in range(jobs):
            service.submit(parse_submit({"task": "claude.messages", "input": MESSAGES, "mode": "async"}), tenant_id=TENANT)
        calls = AwsCalls(clients.table, clients.sqs, clients.s3)
        poller = Poller(sqs=clients.sqs, queue_url=aws.queue_urls["cpu"], runner=worker,
                        ctx=RunContext(llm=model, model_id="claude-bench"), concurrency=jobs, max_receives=5,
                        visibility_timeout_s=300, wait_time_s=1)
        stop = threading.Event()
        thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while poller.processed < jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(timeout_s)
        return poller.processed, calls.take()


def per_job(jobs: int, calls: list[str]) -> str:
    """``dynamodb:GetItem 1, sqs:ReceiveMessage 0.2``: each call's count over ``jobs`` jobs."""
    counted: dict[str, int] = {}
    for name in calls:
        counted[name] = counted.get(name, 0) + 1
    return ", ".join(f"{name} {n / jobs:.2g}" for name, n in counted.items())


def count_before_and_now() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(before, now): before, every result went to S3, as it did until results could live in the item."""
    now = count_paths()
    with mock.patch("jobcore.runner.RESULT_IN_ITEM_BYTES", 0):
        before = count_paths()
    return before, now


def section(quick: bool = False) -> Section:
    """AWS calls per job by path (deterministic: ``quick`` changes nothing)."""
    before, now = count_before_and_now()
    inline = now["inline job (sync, no webhook)"]
    rows = ["| path | calls with every result in S3 | calls now |", "|---|---|---|"]
    rows += [f"| {name} | {summary(before[name])} | {summary(calls)} |" for name, calls in now.items()]
    measured = count_worker()
    with mock.patch("jobcore.runner.RESULT_IN_ITEM_BYTES", 0):
        measured_before = count_worker()
    if measured is not None and measured_before is not None:
        shown = [f"{len(calls) / max(jobs, 1):.2g} ({per_job(max(jobs, 1), calls)})" for jobs, calls in (measured_before, measured)]
        rows += [f"| queued job: the worker's poller and run, {measured[0]} jobs at once, per job (idle receives "
                 f"included) | {shown[0]} | {shown[1]} |"]
    notes = [
        "",
        "Before issue 15 (the same paths counted on the code before it): inline job 3 (`PutItem` ×2, `PutObject`), "
        "with a webhook 4, with an Idempotency-Key 5, queued submit 2, the worker's run 4 (`GetItem`, `PutItem` ×2, "
        "`PutObject`), a GET of a finished job 2 (`GetItem`, `GetObject`). The middle column keeps today's code but "
        "stores every result in S3, as before: the difference is what keeping small results in the item saves.",
        "",
        "Counted on the real adapters (`jobadapters.wiring`) over moto, every boto3 call as botocore makes it "
        "(`local/aws_calls.py`; an SDK retry is not counted again; presigning a URL is no call).",
        "",
        f"- A result up to `RESULT_IN_ITEM_BYTES` ({LIMIT_KB} KB, `jobcore/limits.py`) lives in the job item: finishing the "
        "job is the one write, a GET one `GetItem`, with no `result_url`. A larger result, and any task's files, "
        "are still PUT to S3 (and read back by a GET when up to 256 KB). The limit is low on purpose: a result in "
        "the item is written again by every later write of the job (to the table and its tenant index), and an S3 "
        "PUT costs about as much as 8 KB of DynamoDB writes; typical results are a few KB.",
        "- Issue 23: a finished job's terminal write adds it to its tenant's usage counters of the day in the same "
        "call: one `TransactWriteItems` (the conditional `Put` of the job and the `Update` of `ADD`s, `jobcore.usage`) "
        "where a `PutItem` and an `UpdateItem` used to be, one call fewer and exactly once, at twice the write units "
        "of the two writes; a submission of a tenant with a monthly budget adds one `BatchGetItem` (the month's usage "
        "items, at most 31 keys). The write that ends an attempt without finishing the job (a retry, a wait) records "
        "that attempt's tokens and cost in the `PutItem` it already made. Tracing adds no AWS SDK call (the spans of a "
        "job's DynamoDB and S3 writes wrap the calls counted here; with `traces_endpoint: xray` the spans leave as one "
        "signed HTTPS POST per batch, per invocation in a Lambda); the trace context rides in the message's attributes.",
        "- A webhook adds one `SendMessage`: the hand-over to the dispatcher, after the finishing write that "
        "opened its outbox entry (the dispatcher's own calls, per attempt, are not the job's path).",
        "- An Idempotency-Key adds a `PutItem` (the key reserved) and an `UpdateItem` (the key completed); a "
        "replay is the refused reservation, the key's record and the job (`PutItem`, `GetItem` ×2).",
        "- The worker's run is the runner's share (`JobRunner.process`): claim the job, finish it. "
        "Around it the worker's poller makes `ReceiveMessage` (up to 10 jobs a call), `DeleteMessageBatch` (up "
        "to 10 a call), and for the jobs in flight its heartbeat's lease renewals and checks (DynamoDB) while they "
        "run (the measured row: a model that answers at once, so hardly any heartbeat falls within a run). "
        "A queued job that may run now is claimed in one conditional `UpdateItem` (`JobStore.claim`), without "
        "the `GetItem` that used to come first; a job it refuses (finished, held, canceling, past its deadline, "
        "waiting for the model) comes back from the refused write itself (`ReturnValuesOnConditionCheckFailure`) "
        "and is handled as before. Its lease goes in an item of its own (a `PutItem` after the claim, an `UpdateItem` "
        "ending it after the finish: two small writes a job, so that each renewal writes that item alone, one write "
        "unit whatever the job's size; docs/scale.md).",
        "- An input over 64 KB adds an S3 `PutObject` on submit and a `GetObject` when it runs; a queued job "
        "to an idle lane may add the waker's ECS call (at most once per lane per interval per process, not "
        "per job; see its own section).",
    ]
    goal = Goal(f"inline job: ≤ {GOAL_INLINE_CALLS} AWS calls", summary(inline), len(inline) <= GOAL_INLINE_CALLS)
    return Section("AWS calls per job by path", goals=[goal], lines=[*rows, *notes])


def main() -> int:
    print(section().markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
