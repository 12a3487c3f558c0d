"""In-memory implementations of the core's ports, for unit tests (prefer fakes over mocks)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobcore.errors import ConflictError, EnqueueError
from jobcore.lanes import INLINE, Ec2Compute, FargateCompute, LambdaCompute, Lane, Lanes
from jobcore.model import Job
from jobcore.runner import JobRunner


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


class MemoryJobStore:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
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


class MemoryQueue:
    def __init__(self, lanes: tuple[str, ...] = ("cpu", "gpu"), *, broken: bool = False) -> None:
        self.lanes = lanes
        self.broken = broken
        self.sent: list[tuple[str, str]] = []

    def enqueue(self, job: Job) -> None:
        if self.broken or job.lane not in self.lanes:
            raise EnqueueError(f"no queue for the {job.lane} lane in this deployment")
        self.sent.append((job.job_id, job.lane))


class MemoryBlobs:
    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}

    def put_json(self, key: str, document: Any) -> int:
        body = json.dumps(document, separators=(",", ":")).encode()  # what S3BlobStore stores, byte for byte
        self.docs[key] = json.loads(body)
        return len(body)

    def get_json(self, key: str) -> Any:
        return copy.deepcopy(self.docs[key])

    def url_for(self, key: str) -> str | None:
        return f"memory://{key}"


class RecordingNotifier:
    def __init__(self) -> None:
        self.notified: list[Job] = []

    def notify(self, job: Job) -> None:
        self.notified.append(job)


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
    notifier: RecordingNotifier
    clock: FakeClock
    runner: JobRunner


def harness() -> Harness:
    store, blobs, notifier, clock = MemoryJobStore(), MemoryBlobs(), RecordingNotifier(), FakeClock()
    runner = JobRunner(store=store, blobs=blobs, notifier=notifier, clock_ms=clock.ms, lanes=LANES)
    return Harness(store, blobs, notifier, clock, runner)
