"""Worker throughput at 8 and 64 slots beside a minimal reference consumer, on one moto server and stand-in.

    python -m bench.bench_worker [--quick] [--cases 8x1,64x2] [--jobs-per-slot 5] [--rounds 2]

For each case (slots × the Claude stand-in's latency) one local pipeline starts (moto server, stand-in,
router, the cpu lane's worker with ``worker_concurrency`` = slots, the sweeper and the rest, as
``local.pipeline`` runs them) and, beside its worker, a *reference consumer* in a process of its own: the
least a consumer can do per job (receive up to 10 messages, never more than its free slots; call the model
through the same anthropic SDK; PUT the result to S3 and update the job's item in DynamoDB; delete the
message), on a queue of its own, with as many threads as the worker has slots. Both get the same jobs
(``claude.messages``, queued items in the jobs table as the router makes them, one message each, all sent at
once; the worker runs them as it runs any job, the reference always PUTs the result to S3), one consumer at a
time, after a warm-up round each; a round times from the first send until the queue is empty (every message
deleted, so every result written). Throughput is jobs per second; the ideal is slots ÷ latency. The goal:
the worker within 10 % of the reference (ratio ≥ 0.9) at 8 and 64 slots. The CPU each process used in
a round is reported per job: on the 2-core development machine moto and the stand-in (this process) and
the consumer share the cores. It never fails a build.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3

from bench.report import Goal, Section

CASES: tuple[tuple[int, float], ...] = ((8, 1.0), (64, 2.0))  # (slots, stand-in latency in seconds)
GOAL_RATIO = 0.9  # the worker's jobs/s over the reference's
INPUT = {"max_tokens": 50, "messages": [{"role": "user", "content": "Queue me."}]}
REFERENCE_POLL_WAIT_S = 1  # the local worker's POLL_WAIT_S


@dataclass(frozen=True)
class Round:
    jobs: int
    seconds: float
    succeeded: int
    consumer_cpu_s: float = 0.0  # the consumer's process (the worker, or the reference)
    server_cpu_s: float = 0.0  # this process: moto, the stand-in (and the driver's few calls)

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds


@dataclass(frozen=True)
class CaseResult:
    slots: int
    latency_s: float
    worker: list[Round]
    reference: list[Round]
    worker_peak_mb: float = 0.0  # the worker process's peak resident memory

    @property
    def ideal(self) -> float:
        return self.slots / self.latency_s

    @staticmethod
    def best(rounds: list[Round]) -> Round:
        """The fastest round: the one the shared machine disturbed least."""
        return max(rounds, key=lambda r: r.jobs_per_s)

    @property
    def ratio(self) -> float:
        return self.best(self.worker).jobs_per_s / self.best(self.reference).jobs_per_s


# --- the reference consumer (its own process) ------------------------------------------------------


def reference_consumer(queue_url: str, table_name: str, bucket: str, slots: int, model_id: str) -> None:
    """Receive, call the model, write the result, delete: until stdin closes."""
    import warnings

    import anthropic
    from botocore.config import Config

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the stand-in's model id may be near its end of life

    from jobcore.schema_keys import result_key

    config = Config(max_pool_connections=slots + 4, retries={"max_attempts": 3, "mode": "standard"})
    sqs = boto3.client("sqs", config=config)
    s3 = boto3.client("s3", config=config)
    table = boto3.resource("dynamodb", config=config).Table(table_name)
    model = anthropic.Anthropic(api_key="local-standin", base_url=os.environ["ANTHROPIC_BASE_URL"], max_retries=3, timeout=300)
    free = threading.Semaphore(slots)
    stop = threading.Event()

    def handle(message: dict[str, Any]) -> None:
        try:
            job_id = json.loads(message["Body"])["job_id"]
            output = model.messages.create(model=model_id, **INPUT).model_dump(mode="json", exclude_none=True)  # type: ignore[call-overload]
            body = json.dumps(output).encode()
            s3.put_object(Bucket=bucket, Key=result_key(job_id), Body=body, ContentType="application/json")
            table.update_item(
                Key={"job_id": job_id}, UpdateExpression="SET #s = :s, result_ref = :r, result_bytes = :b, version = version + :one",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": "succeeded", ":r": result_key(job_id), ":b": len(body), ":one": 1})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        finally:
            free.release()

    def until_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    print("ready", flush=True)
    with ThreadPoolExecutor(max_workers=slots) as pool:
        while not stop.is_set():
            if not free.acquire(timeout=0.5):
                continue
            taken = 1
            while taken < 10 and free.acquire(blocking=False):
                taken += 1
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=taken,
                                           WaitTimeSeconds=REFERENCE_POLL_WAIT_S).get("Messages", [])
            for _ in range(taken - len(messages)):
                free.release()
            for message in messages:
                pool.submit(handle, message)


# --- driving one case ----------------------------------------------------------------------------------


class Driver:
    """Makes queued jobs, sends their messages, times a queue until it is empty."""

    def __init__(self, endpoints: Any, model_id: str, *, job_ttl_days: int = 30):
        from jobadapters.dynamo import DynamoJobStore

        self.resources = endpoints.resources
        self.model_id = model_id
        self.job_ttl_days = job_ttl_days
        self.sqs = boto3.client("sqs")
        self.dynamodb = boto3.resource("dynamodb")
        self.table = self.dynamodb.Table(self.resources.table)
        self.store = DynamoJobStore(self.table)

    def make_jobs(self, count: int) -> list[str]:
        from jobcore.model import Job, JobStatus, Mode

        now = int(time.time() * 1000)
        ids = [f"bench-{uuid.uuid4().hex}" for _ in range(count)]
        for job_id in ids:  # as the router makes a queued job (its item's TTL too)
            self.store.create(Job(job_id=job_id, tenant_id="bench", task="claude.messages", status=JobStatus.QUEUED,
                                  lane="cpu", route_reason="bench_worker", mode=Mode.ASYNC, created_at=now, updated_at=now,
                                  input=dict(INPUT), expires_at=now // 1000 + self.job_ttl_days * 86_400))
        return ids

    def run(self, queue_url: str, count: int, *, consumer_pid: int, timeout_s: float = 600) -> Round:
        from jobadapters.sqs import encode

        ids = self.make_jobs(count)
        bodies = [json.dumps({"job_id": job_id, "task": "claude.messages"}) for job_id in ids]
        assert bodies[0] == encode(self.store.get(ids[0]))  # type: ignore[arg-type]  # the router's message
        consumer_cpu, server_cpu = process_cpu_s(consumer_pid), time.process_time()
        started = time.perf_counter()
        for i in range(0, count, 10):
            self.sqs.send_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies[i:i + 10])])
        while not self._empty(queue_url):
            if time.perf_counter() - started > timeout_s:
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        return Round(count, seconds, self._succeeded(ids), process_cpu_s(consumer_pid) - consumer_cpu, time.process_time() - server_cpu)

    def _empty(self, queue_url: str) -> bool:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
        return all(int(attributes.get(name, "0")) == 0 for name in names)

    def _succeeded(self, ids: list[str]) -> int:
        succeeded = 0
        for i in range(0, len(ids), 100):
            keys = [{"job_id": job_id} for job_id in ids[i:i + 100]]
            items = self.dynamodb.batch_get_item(RequestItems={self.resources.table: {
                "Keys": keys, "ConsistentRead": True, "ProjectionExpression": "#s", "ExpressionAttributeNames": {"#s": "status"}}})
            succeeded += sum(item["status"] == "succeeded" for item in items["Responses"][self.resources.table])
        return succeeded


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux: /proc)."""
    fields = open(f"/proc/{pid}/stat", encoding="ascii").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far, in MiB (Linux: VmHWM)."""
    for line in open(f"/proc/{pid}/status", encoding="ascii"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def atomic_moto_deletes() -> None:
    """Make moto's delete of a message atomic (in this process, where its server runs).

    moto rebuilds a queue's message list on each delete without its lock, so two deletes at once (or a delete
    and a send) can lose an update: a deleted message comes back after its visibility timeout (a 60 s stall
    of the round), or a sent one is lost. SQS has no such race; the bench must not measure it.
    """
    from moto.sqs.models import Queue

    original = Queue.delete_message
    if getattr(original, "atomic", False):
        return

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:  # the lock moto's own send takes
            original(self, receipt_handle)

    delete_message.atomic = True  # type: ignore[attr-defined]
    Queue.delete_message = delete_message  # type: ignore[method-assign]


def measure_case(slots: int, latency_s: float, *, jobs: int, rounds: int) -> CaseResult:
    from local.pipeline import PYTHONPATH, LocalPipeline, Options

    atomic_moto_deletes()
    options = Options(standin_latency_s=latency_s, config={"worker_concurrency": slots})
    pipeline = LocalPipeline(options)
    with pipeline as endpoints:
        model_id = pipeline.config.worker_model_id
        driver = Driver(endpoints, model_id, job_ttl_days=pipeline.config.job_ttl_days)
        worker_queue = endpoints.resources.queue_urls["cpu"]
        reference_queue = driver.sqs.create_queue(QueueName=f"bench-reference-{slots}", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        reference = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_worker", "--reference", reference_queue, "--table", endpoints.resources.table,
             "--bucket", endpoints.resources.bucket, "--slots", str(slots), "--model", model_id],
            env={**os.environ, "PYTHONPATH": PYTHONPATH}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert reference.stdout is not None and reference.stdout.readline().strip() == "ready", "the reference consumer did not start"
            worker_pid = pipeline.pids()["worker-cpu"]
            driver.run(worker_queue, slots, consumer_pid=worker_pid)  # warm-up: imports, connections, the SDK's client
            driver.run(reference_queue, slots, consumer_pid=reference.pid)
            worker: list[Round] = []
            ref: list[Round] = []
            for n in range(rounds):  # alternate which goes first: a slow spell of the shared machine hits both
                pair = [(worker_queue, worker_pid, worker), (reference_queue, reference.pid, ref)]
                for queue, pid, into in pair if n % 2 == 0 else pair[::-1]:
                    into.append(driver.run(queue, jobs, consumer_pid=pid))
            peak_mb = peak_rss_mb(worker_pid)
        finally:
            if reference.stdin is not None:
                reference.stdin.close()
            try:
                reference.wait(timeout=15)
            except subprocess.TimeoutExpired:
                reference.kill()
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()  # moto's state is this process's: the next case's pipeline starts from nothing
    return CaseResult(slots, latency_s, worker, ref, peak_mb)


# --- the section ---------------------------------------------------------------------------------------


def section(quick: bool = False, *, cases: tuple[tuple[int, float], ...] = CASES, jobs_per_slot: int | None = None,
            rounds: int | None = None) -> Section:
    per_slot = jobs_per_slot or (2 if quick else 5)
    rounds = rounds or (1 if quick else 2)
    results = [measure_case(slots, latency, jobs=slots * per_slot, rounds=rounds) for slots, latency in cases]
    sec = Section("Worker throughput at 8 and 64 slots beside the reference consumer (`python -m bench.bench_worker`)")
    for r in results:
        w, ref = r.best(r.worker), r.best(r.reference)
        sec.goals.append(Goal(
            f"worker ≥ {GOAL_RATIO:g} × the reference consumer at {r.slots} slots, {r.latency_s:g} s latency",
            f"{r.ratio:.2f} ({w.jobs_per_s:.1f} vs {ref.jobs_per_s:.1f} jobs/s)", r.ratio >= GOAL_RATIO))
    sec.lines += [
        "| slots × latency | jobs a round | ideal jobs/s | worker jobs/s (of ideal) | reference jobs/s (of ideal) "
        "| worker / reference | rounds (worker; reference, s) | succeeded |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        w, ref = r.best(r.worker), r.best(r.reference)
        times = f"{', '.join(f'{x.seconds:.2f}' for x in r.worker)}; {', '.join(f'{x.seconds:.2f}' for x in r.reference)}"
        ok = f"{_succeeded(r.worker)}; {_succeeded(r.reference)}"
        sec.lines.append(f"| {r.slots} × {r.latency_s:g} s | {w.jobs} | {r.ideal:.1f} | {w.jobs_per_s:.1f} ({w.jobs_per_s / r.ideal:.2f}) "
                         f"| {ref.jobs_per_s:.1f} ({ref.jobs_per_s / r.ideal:.2f}) | {r.ratio:.2f} | {times} | {ok} |")
    sec.lines += ["", "| slots × latency | worker CPU ms / job (its process; moto + stand-in) "
                  "| reference CPU ms / job (its process; moto + stand-in) | worker peak memory |", "|---|---|---|---|"]
    for r in results:
        w, ref = r.best(r.worker), r.best(r.reference)
        sec.lines.append(f"| {r.slots} × {r.latency_s:g} s | {1000 * w.consumer_cpu_s / w.jobs:.1f}; {1000 * w.server_cpu_s / w.jobs:.1f} "
                         f"| {1000 * ref.consumer_cpu_s / ref.jobs:.1f}; {1000 * ref.server_cpu_s / ref.jobs:.1f} "
                         f"| {r.worker_peak_mb:.0f} MiB |")
    sec.lines += ["", "Best round of each (the one the shared machine disturbed least); a round times from the first send "
                  "until its queue is empty. The reference consumer: receive ≤ 10, call the model, PUT the result, update "
                  "the item, delete, one thread per slot, in its own process; moto and the stand-in serve both. Where both "
                  "fall short of the ideal, the machine is the limit, not the slots: moto and the stand-in spend the CPU "
                  "column's milliseconds per job in one Python process (moto's server closes every connection, so each AWS "
                  "call is a new one), beside the consumer and the local pipeline's other processes."]
    return sec


def _succeeded(rounds: list[Round]) -> str:
    return f"{sum(x.succeeded for x in rounds)}/{sum(x.jobs for x in rounds)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs, one round")
    parser.add_argument("--cases", default=None, help="slots x latency, comma-separated, e.g. 8x1,64x2")
    parser.add_argument("--jobs-per-slot", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--reference", metavar="QUEUE_URL", help=argparse.SUPPRESS)  # run as the reference consumer
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--slots", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference:
        reference_consumer(args.reference, args.table, args.bucket, args.slots, args.model)
        return 0
    cases = CASES if not args.cases else tuple(
        (int(s), float(lat)) for s, lat in (case.split("x") for case in args.cases.split(",")))
    print(section(args.quick, cases=cases, jobs_per_slot=args.jobs_per_slot, rounds=args.rounds).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
