"""In-memory implementations of the core's ports, for unit tests (prefer fakes over mocks)."""

from __future__ import annotations

import copy
import io
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any

from jobcore.context import JobContext
from jobcore.errors import BlobNotFoundError, ConflictError, EnqueueError
from jobcore.idempotency import IdempotencyRecord
from jobcore.lanes import INLINE, BatchCompute, Ec2Compute, FargateCompute, LambdaCompute, Lane, Lanes
from jobcore.model import ACTIVE, Job, JobStatus, Webhook, transition, watch_at
from jobcore.ports import Cursor
from jobcore.routing import RoutingPolicy
from jobcore.runner import Backoff, JobRunner
from jobcore.service import JobService


def make_lanes(
    *, inline_budget_s: float = 20, router_memory_mb: int = 1024, worker_vcpu: float = 1.0,
    worker_memory_mb: int = 4096, worker_concurrency: int = 8, spot: bool = True, cpu_time_limit_s: float = 3600,
    gpu_enabled: bool = True, gpu_memory_mb: int = 15360, gpu_instance: str = "g5.xlarge", gpu_concurrency: int = 1,
    batch: bool = False, batch_enabled: bool = True,
) -> Lanes:
    """Lanes for unit tests, sized here rather than read from cdk.json, so a deployment default can change
    without moving a unit test. ``batch``: with a batch lane (enabled unless ``batch_enabled`` is False)."""
    extra = (Lane(name="batch", queued=True, enabled=batch_enabled, memory_mb=1024, time_limit_s=86_400,
                  compute=BatchCompute()),) if batch else ()
    return Lanes((
        Lane(name=INLINE, queued=False, memory_mb=router_memory_mb, time_limit_s=inline_budget_s,
             compute=LambdaCompute(memory_mb=router_memory_mb)),
        Lane(name="cpu", queued=True, memory_mb=worker_memory_mb, time_limit_s=cpu_time_limit_s,
             concurrency=worker_concurrency,
             compute=FargateCompute(vcpu=worker_vcpu, memory_mb=worker_memory_mb, spot=spot)),
        Lane(name="gpu", queued=True, gpu=True, enabled=gpu_enabled, memory_mb=gpu_memory_mb, time_limit_s=3600,
             concurrency=gpu_concurrency, compute=Ec2Compute(instance=gpu_instance)),
        *extra,
    ))


LANES = make_lanes()
# The runner's default back-off with its jitter drawing the top of its range: the un-jittered delays
# (15, 30, 60 s...), so tests can name them.
TOP_OF_JITTER = Backoff(rng=lambda: 1.0)


class MemoryJobStore:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.keys: dict[str, IdempotencyRecord] = {}
        self.usage = MemoryUsageStore()  # the usage counters, on the same "table": a runner reads them as its UsageStore
        self.writes = 0

    def create(self, job: Job) -> None:
        if job.job_id in self.jobs:
            raise ConflictError(f"job {job.job_id} already exists")
        self.jobs[job.job_id] = job
        self.writes += 1

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def save(self, job: Job, *, expected_version: int, usage: Any = None) -> None:
        current = self.jobs.get(job.job_id)
        if current is None or current.version != expected_version:
            raise ConflictError(f"job {job.job_id} changed since version {expected_version}")
        self.jobs[job.job_id] = job
        if usage is not None:  # in the same write, as DynamoDB's transaction does
            self.usage.add(usage)
        self.writes += 1

    def claim(self, job_id: str, *, owner: str, now_ms: int, lease_expires_at: int) -> tuple[Job | None, bool]:
        job = self.jobs.get(job_id)
        if (job is None or job.status is not JobStatus.QUEUED or job.model_wait is not None
                or (job.queue_deadline_at is not None and job.queue_deadline_at < now_ms)):
            return job, False
        claimed = transition(job, JobStatus.RUNNING, now_ms=now_ms, lease_owner=owner, lease_expires_at=lease_expires_at)
        self.jobs[job_id] = claimed
        self.writes += 1
        return claimed, True

    def watched(self, *, until_ms: int, limit: int) -> list[tuple[str, int]]:
        due = sorted((at, job.job_id) for job in self.jobs.values() if (at := watch_at(job)) is not None and at <= until_ms)
        return [(job_id, at) for at, job_id in due[:limit]]

    def renew_lease(self, job_id: str, *, owner: str, until_ms: int) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.lease_owner != owner or job.status not in ACTIVE:
            return False
        self.jobs[job_id] = replace(job, lease_expires_at=until_ms)  # no new version, as in DynamoDB
        return True

    def lease_states(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        return {i: (self.jobs[i].status, self.jobs[i].lease_owner) for i in job_ids if i in self.jobs}

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

    def exists(self, key: str) -> bool:
        return key in self.docs or key in self.files

    def url_for(self, key: str) -> str | None:
        return f"memory://{key}"

    def open_stream(self, key: str) -> tuple[IO[bytes], str]:
        if key in self.files:
            data, content_type = self.files[key]
            return io.BytesIO(data), content_type
        if key in self.docs:
            return io.BytesIO(json.dumps(self.docs[key]).encode()), "application/json"
        raise BlobNotFoundError(f"the stored document {key} is gone")


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


def harness(*, lanes: Lanes = LANES, cost_model: Any = None) -> Harness:
    store, blobs, deliveries, clock = MemoryJobStore(), MemoryBlobs(), RecordingDeliveryQueue(), FakeClock()
    runner = JobRunner(context=JobContext(store=store, blobs=blobs, clock_ms=clock.ms, lanes=lanes), deliveries=deliveries,
                       backoff=TOP_OF_JITTER, cost_model=cost_model)
    return Harness(store, blobs, deliveries, clock, runner)


def make_service(script: Sequence[Any] = (), *, llm: Any = None, queue: Any = None, policy: RoutingPolicy | None = None,
                 id_format: str = "job_{}", h: Harness | None = None, **fields: Any) -> tuple[JobService, Harness]:
    """A JobService over ``h`` (a fresh :func:`harness` by default): its ports, its clock, ids ``id_format`` of 0, 1, … .
    ``script``: the model's answers (or ``llm``: a model of the test's own); ``policy``: routing over ``LANES``
    unless given; ``fields``: the service's other settings (``cost_model``, ``uploads``, ``waker``, …)."""
    h = h or harness()
    ids = (id_format.format(i) for i in itertools.count())
    service = JobService(
        context=h.runner.context, runner=h.runner, queue=queue or MemoryQueue(), llm=llm or ScriptedModel(list(script)),
        policy=policy or RoutingPolicy(lanes=LANES), model_id="claude-default", new_id=lambda: next(ids),
        monotonic=h.clock.monotonic, sleep=h.clock.sleep, **fields,
    )
    return service, h


# --- the batch lane --------------------------------------------------------------------------------


class MemoryBatchStore:
    """BatchStore in memory: records by id, and the open ones."""

    def __init__(self) -> None:
        from jobcore.ports import BatchRecord

        self.records: dict[str, BatchRecord] = {}
        self.broken = False

    def open_batches(self) -> list[str]:
        return [batch_id for batch_id, record in self.records.items() if record.status != "done"]

    def create_batch(self, record: Any) -> None:
        if self.broken:
            from jobcore.errors import StoreUnavailableError

            raise StoreUnavailableError("the job store is unavailable")
        if record.batch_id in self.records:
            raise ConflictError(f"batch {record.batch_id} already recorded")
        self.records[record.batch_id] = record

    def get_batch(self, batch_id: str) -> Any:
        return self.records.get(batch_id)

    def save_batch(self, record: Any, *, expected_version: int) -> None:
        current = self.records.get(record.batch_id)
        if current is None or current.version != expected_version:
            raise ConflictError(f"batch {record.batch_id} changed since version {expected_version}")
        self.records[record.batch_id] = record


class MemoryInbox:
    """BatchInbox in memory: messages (job ids) waiting; released ones come back; deleted ones are gone."""

    def __init__(self) -> None:
        self.waiting: list[tuple[str | None, str]] = []
        self.in_flight: dict[str, str | None] = {}
        self.released: list[tuple[str | None, int]] = []
        self.deleted: list[str | None] = []
        self._n = 0

    def put(self, job_id: str | None) -> None:
        self._n += 1
        self.waiting.append((job_id, f"r{self._n}"))

    def enqueue(self, job: Job, *, delay_s: int = 0) -> None:  # also the JobQueue the collector re-queues on
        self.put(job.job_id)

    def receive(self, *, limit: int) -> list[tuple[str | None, str]]:
        taken, self.waiting = self.waiting[:limit], self.waiting[limit:]
        self.in_flight.update({receipt: job_id for job_id, receipt in taken})
        return taken

    def delete(self, receipt: str) -> None:
        self.deleted.append(self.in_flight.pop(receipt))

    def release(self, receipt: str, *, delay_s: int) -> None:
        job_id = self.in_flight.pop(receipt)
        self.released.append((job_id, delay_s))
        self.waiting.append((job_id, receipt))

    def lapse(self) -> None:
        """The visibility timeout passes: every message received and neither deleted nor released is waiting again."""
        self.waiting.extend((job_id, receipt) for receipt, job_id in self.in_flight.items())
        self.in_flight.clear()


class FakeBatchApi:
    """The Message Batches API in memory: batches end when told (``end``), each request answered by
    ``respond(params)`` unless ``outcome`` names another result for its custom id."""

    def __init__(self, clock: FakeClock, respond: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None) -> None:
        self.clock = clock
        self.respond = respond or (lambda params: text_response("Summary: " + str(params["messages"][-1]["content"])[:40]))
        self.batches: dict[str, dict[str, Any]] = {}
        self.created: list[list[Any]] = []
        self.canceled: list[str] = []
        self.fail_create: list[Exception] = []
        self._n = 0

    def create(self, requests: Any) -> Any:
        from jobcore.ports import BatchInfo

        if self.fail_create:
            raise self.fail_create.pop(0)
        self._n += 1
        batch_id = f"msgbatch_{self._n:04d}"
        now = self.clock.ms()
        self.batches[batch_id] = {"requests": list(requests), "status": "in_progress", "created_at": now,
                                  "expires_at": now + 86_400_000, "results": None}
        self.created.append(list(requests))
        return BatchInfo(batch_id=batch_id, status="in_progress", created_at=now, expires_at=now + 86_400_000)

    def end(self, batch_id: str, outcome: Mapping[str, Any] | None = None) -> None:
        """End the batch: every request succeeds but those ``outcome`` maps to a BatchResult kind
        (``"expired"``, ``"canceled"``) or an error dict (``{"type": ..., "message": ...}``)."""
        from jobcore.ports import BatchResult

        batch = self.batches[batch_id]
        results = []
        for request in batch["requests"]:
            special = (outcome or {}).get(request.custom_id)
            if special is None:
                results.append(BatchResult(custom_id=request.custom_id, kind="succeeded", message=self.respond(request.params)))
            elif isinstance(special, dict):
                results.append(BatchResult(custom_id=request.custom_id, kind="errored", error=special))
            else:
                results.append(BatchResult(custom_id=request.custom_id, kind=special))
        batch.update(status="ended", results=results, ended_at=self.clock.ms())

    def info(self, batch_id: str) -> Any:
        from jobcore.ports import BatchInfo

        batch = self.batches[batch_id]
        return BatchInfo(batch_id=batch_id, status=batch["status"], created_at=batch["created_at"],
                         expires_at=batch["expires_at"], ended_at=batch.get("ended_at"))

    def retrieve(self, batch_id: str) -> Any:
        if batch_id not in self.batches:
            from jobcore.batches import BatchGoneError

            raise BatchGoneError(f"no batch {batch_id}")
        return self.info(batch_id)

    def results(self, batch_id: str) -> list[Any]:
        return list(self.batches[batch_id]["results"])

    def cancel(self, batch_id: str) -> Any:
        self.canceled.append(batch_id)
        batch = self.batches[batch_id]
        if batch["status"] == "in_progress":
            batch["status"] = "canceling"
        return self.info(batch_id)


# --- model capacity ------------------------------------------------------------------------------------


class MemoryCapacityStore:
    """CapacityStore in memory: one bucket per family, written only on its version (as DynamoDB's condition)."""

    def __init__(self) -> None:
        self.buckets: dict[str, Any] = {}
        self.writes = 0
        self.lost = 0

    def load(self, family: str) -> Any:
        return self.buckets.get(family)

    def swap(self, family: str, bucket: Any, *, expected_version: int) -> Any:
        current = self.buckets.get(family)
        if (current.version if current is not None else 0) != expected_version:
            self.lost += 1
            return current
        self.buckets[family] = bucket
        self.writes += 1
        return None


class MemoryUsageStore:
    """UsageStore in memory: the counters by (tenant, day)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, int]] = {}

    def add(self, entry: Any) -> None:
        item = self.items.setdefault((entry.tenant_id, entry.day), {})
        for name, value in entry.attributes().items():
            item[name] = item.get(name, 0) + value

    def read(self, tenant_id: str, days: Sequence[str]) -> dict[str, dict[str, int]]:
        return {day: dict(self.items[(tenant_id, day)]) for day in days if (tenant_id, day) in self.items}
