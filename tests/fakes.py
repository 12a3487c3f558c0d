"""In-memory implementations of the core's ports, for unit tests (prefer fakes over mocks)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from jobcore.errors import BlobNotFoundError, ConflictError, EnqueueError
from jobcore.idempotency import IdempotencyRecord
from jobcore.lanes import INLINE, Ec2Compute, FargateCompute, LambdaCompute, Lane, Lanes
from jobcore.model import ACTIVE, Job, JobStatus, Webhook, watch_at
from jobcore.ports import Cursor
from jobcore.runner import Backoff, JobRunner


def make_lanes(
    *, inline_budget_s: float = 20, router_memory_mb: int = 1024, worker_vcpu: float = 1.0,
    worker_memory_mb: int = 4096, worker_concurrency: int = 8, spot: bool = True, cpu_time_limit_s: float = 3600,
    gpu_enabled: bool = True, gpu_memory_mb: int = 15360, gpu_instance: str = "g5.xlarge", gpu_concurrency: int = 1,
) -> Lanes:
    """Lanes for unit tests, sized here rather than read from cdk.json, so a deployment default can change
    without moving a unit test."""
    return Lanes((
        Lane(name=INLINE, queued=False, memory_mb=router_memory_mb, time_limit_s=inline_budget_s,
             compute=LambdaCompute(memory_mb=router_memory_mb)),
        Lane(name="cpu", queued=True, memory_mb=worker_memory_mb, time_limit_s=cpu_time_limit_s,
             concurrency=worker_concurrency,
             compute=FargateCompute(vcpu=worker_vcpu, memory_mb=worker_memory_mb, spot=spot)),
        Lane(name="gpu", queued=True, gpu=True, enabled=gpu_enabled, memory_mb=gpu_memory_mb, time_limit_s=3600,
             concurrency=gpu_concurrency, compute=Ec2Compute(instance=gpu_instance)),
    ))


LANES = make_lanes()
# The runner's default back-off with its jitter drawing the top of its range: the un-jittered delays
# (15, 30, 60 s...), so tests can name them.
TOP_OF_JITTER = Backoff(rng=lambda: 1.0)


class MemoryJobStore:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.keys: dict[str, IdempotencyRecord] = {}
        self.writes = 0

    def create(self, job: Job) -> None:
        if job.job_id in self.jobs:
            raise ConflictError(f"job {job.job_id} already exists")
        self.jobs[job.job_id] = job
        self.writes += 1

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def save(self, job: Job, *, expected_version: int) -> None:
        current = self.jobs.get(job.job_id)
        if current is None or current.version != expected_version:
            raise ConflictError(f"job {job.job_id} changed since version {expected_version}")
        self.jobs[job.job_id] = job
        self.writes += 1

    def watched(self, *, until_ms: int, limit: int) -> list[tuple[str, int]]:
        due = sorted((at, job.job_id) for job in self.jobs.values() if (at := watch_at(job)) is not None and at <= until_ms)
        return [(job_id, at) for at, job_id in due[:limit]]

    def renew_lease(self, job_id: str, *, owner: str, until_ms: int) -> JobStatus | None:
        job = self.jobs.get(job_id)
        if job is None or job.lease_owner != owner or job.status not in ACTIVE:
            return None
        self.jobs[job_id] = replace(job, lease_expires_at=until_ms)  # no new version, as in DynamoDB
        return job.status

    def list_jobs(self, tenant_id: str, *, status: JobStatus | None, limit: int, after: Cursor | None) -> tuple[list[Job], Cursor | None]:
        mine = sorted((j for j in self.jobs.values() if j.tenant_id == tenant_id), key=lambda j: (j.created_at, j.job_id),
                      reverse=True)
        if after is not None:
            mine = [j for j in mine if (j.created_at, j.job_id) < (after.created_at, after.job_id)]
        matching = [j for j in mine if status is None or j.status is status]
        page = matching[:limit]
        more = len(matching) > limit
        return page, Cursor(page[-1].created_at, page[-1].job_id) if more else None

    def reserve_key(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        held = self.keys.get(record.record_id)
        if held is not None:
            return held
        self.keys[record.record_id] = record
        return None

    def complete_key(self, record_id: str, *, status_code: int) -> None:
        self.keys[record_id] = replace(self.keys[record_id], status_code=status_code)

    def release_key(self, record_id: str) -> None:
        self.keys.pop(record_id, None)

    def due_deliveries(self, *, until_ms: int, limit: int) -> list[tuple[str, int]]:
        due = sorted((at, job.job_id) for job in self.jobs.values()
                     if job.delivery is not None and (at := job.delivery.sweep_at()) is not None and at <= until_ms)
        return [(job_id, at) for at, job_id in due[:limit]]


class MemoryQueue:
    def __init__(self, lanes: tuple[str, ...] = ("cpu", "gpu"), *, broken: bool = False) -> None:
        self.lanes = lanes
        self.broken = broken
        self.sent: list[tuple[str, str]] = []
        self.delays: list[int] = []  # each sent message's delay, in the order of ``sent``

    def enqueue(self, job: Job, *, delay_s: int = 0) -> None:
        if self.broken or job.lane not in self.lanes:
            raise EnqueueError(f"no queue for the {job.lane} lane in this deployment")
        self.sent.append((job.job_id, job.lane))
        self.delays.append(delay_s)


class MemoryBlobs:
    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        self.files: dict[str, tuple[bytes, str]] = {}

    def put_json(self, key: str, document: Any) -> int:
        body = json.dumps(document, separators=(",", ":")).encode()  # what S3BlobStore stores, byte for byte
        self.docs[key] = json.loads(body)
        return len(body)

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> int:
        self.files[key] = (bytes(data), content_type)
        return len(data)

    def get_json(self, key: str) -> Any:
        if key not in self.docs:
            raise BlobNotFoundError(f"the stored document {key} is gone")
        return copy.deepcopy(self.docs[key])

    def url_for(self, key: str) -> str | None:
        return f"memory://{key}"


class RecordingDeliveryQueue:
    """The dispatcher's queue, in memory: every hand-over, in order; ``broken`` refuses them."""

    def __init__(self, *, broken: bool = False) -> None:
        self.scheduled: list[tuple[str, int, int]] = []  # (job id, due at ms, delay s)
        self.broken = broken

    def schedule(self, job_id: str, *, due_at: int, delay_s: int = 0) -> None:
        if self.broken:
            raise EnqueueError("the webhook queue is unavailable")
        self.scheduled.append((job_id, due_at, delay_s))

    @property
    def job_ids(self) -> list[str]:
        return [job_id for job_id, _, _ in self.scheduled]


def make_job_for_delivery(job_id: str, *, now_ms: int, url: str = "https://receiver.example/hooks") -> Job:
    """A succeeded job whose webhook delivery is pending, due at ``now_ms``."""
    from jobcore.webhooks import open_for

    job = Job(
        job_id=job_id, tenant_id="tenant-a", task="claude.messages", status=JobStatus.SUCCEEDED, lane="inline",
        route_reason="inline: test", created_at=now_ms, updated_at=now_ms, finished_at=now_ms, webhook=Webhook(url),
    )
    return replace(job, delivery=open_for(job, now_ms=now_ms))


def text_response(text: str, *, input_tokens: int = 10, output_tokens: int = 5) -> dict[str, Any]:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def tool_response(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = text_response("")
    response["content"] = [{"type": "tool_use", "id": "toolu_1", "name": name, "input": payload}]
    response["stop_reason"] = "tool_use"
    return response


@dataclass
class ScriptedModel:
    """A LanguageModel that plays a script: each step a response dict, an exception, or a function."""

    script: list[Any] = field(default_factory=list)
    default: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    calls: list[tuple[dict[str, Any], float | None]] = field(default_factory=list)

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        self.calls.append((dict(params), timeout_s))
        step = self.script.pop(0) if self.script else self.default
        if step is None:
            raise AssertionError("the model was called more often than the script allows")
        if isinstance(step, Exception):
            raise step
        return step(params) if callable(step) else step


class FakeClock:
    """Milliseconds and monotonic seconds that move only when told to (or when slept)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = start_ms
        self.sleeps: list[float] = []

    def ms(self) -> int:
        return self.now_ms

    def monotonic(self) -> float:
        return self.now_ms / 1000

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


@dataclass
class Harness:
    store: MemoryJobStore
    blobs: MemoryBlobs
    deliveries: RecordingDeliveryQueue
    clock: FakeClock
    runner: JobRunner


def harness() -> Harness:
    store, blobs, deliveries, clock = MemoryJobStore(), MemoryBlobs(), RecordingDeliveryQueue(), FakeClock()
    runner = JobRunner(store=store, blobs=blobs, deliveries=deliveries, clock_ms=clock.ms, lanes=LANES, backoff=TOP_OF_JITTER)
    return Harness(store, blobs, deliveries, clock, runner)
