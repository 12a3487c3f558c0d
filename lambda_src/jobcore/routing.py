"""The seed article's decision framework as a policy: which lane runs a job, and why.

The questions, in the order the policy asks them (each answer is recorded on the job):

0. Client asked ``batch``?           → the batch lane (Message Batches API, half the token price, results
                                       within 24 h), if it is enabled and the task only calls Claude (a GPU
                                       task or one that computes itself cannot: 422 saying why).
1. Needs a GPU?                      → a GPU lane (ECS on EC2), if one is enabled; never sync, never batch.
1b. ``auto``, a background task (nobody waits on it) and the request's ``max_queue_s`` ≥ 86,400 (the client
    accepts a day's wait)            → the batch lane, when it is enabled and the task only calls Claude
                                       (otherwise the questions below decide, as for any job).
2. Memory beyond every lane?         → unroutable (422).
3. Client asked ``async``?           → a CPU queue lane.
4. Expected duration > inline budget → a CPU queue lane (sync: unroutable, it cannot answer in time).
5. Memory > the router's memory?     → a CPU queue lane (sync: unroutable).
6. A background task?                → a CPU queue lane, unless the client asked ``sync``.
7. Arriving faster than the rate at which the always-on worker becomes cheaper than
   per-request inline runs?          → a CPU queue lane, unless the client asked ``sync``.
8. Otherwise                         → inline: short, small, a request waits for it: run it now.

A queue lane is taken only if it can run the job (its memory and time limit); the lanes and their
limits are the deployment's (:mod:`jobcore.lanes`), never numbers of this module's own. The batch lane is
never a fallback and never one of the CPU lanes questions 3 to 7 pick: only 0 and 1b lead there.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from jobcore.errors import UnroutableError
from jobcore.lanes import Lane, Lanes
from jobcore.model import Mode

# A client that accepts this long a wait (max_queue_s) for a background task is sent to the batch lane (mode auto).
BATCH_AUTO_MIN_QUEUE_S = 86_400


class Trigger(StrEnum):
    """The decision framework's trigger: who waits for a task's job. Named apart from the batch lane (the Message
    Batches API), which any Claude task may take, background or not."""

    REQUEST = "request"  # a client's request waits for the answer: inline when it fits
    BACKGROUND = "background"  # nobody waits on it (a bulk job): queued for a worker


@dataclass(frozen=True, kw_only=True)
class TaskProfile:
    """What a task declares about itself: the decision framework's inputs."""

    expected_duration_s: float
    memory_mb: int
    timeout_s: float  # the longest one job may run; a lane's own limit may cut it shorter
    gpu: bool = False
    trigger: Trigger = Trigger.REQUEST
    typical_input_tokens: int = 0
    typical_output_tokens: int = 0
    # Its executor only describes Claude requests (a ModelCallsExecutor), so the batch lane can send them
    # through the Message Batches API; False for a task that computes itself (a RunExecutor).
    model_calls: bool = True


@dataclass(frozen=True, kw_only=True)
class Hints:
    """What a request may add: its own expectation of duration and memory."""

    expected_duration_s: float | None = None
    memory_mb: int | None = None


@dataclass(frozen=True, kw_only=True)
class RoutingPolicy:
    lanes: Lanes


@dataclass(frozen=True)
class Decision:
    """A lane and why, as fields; :attr:`reason` renders them as the text the job records and the API shows
    (``route.reason``): ``"<lane>: <why> (<earlier>) (<note>)"``."""

    lane: str
    why: str  # the rule that chose the lane
    earlier: str | None = None  # the reason of the route this one replaces (an inline fallback, a re-queue)
    note: str | None = None  # what the submitter adds (an S3 intake job: nobody waits for it)

    @property
    def reason(self) -> str:
        return f"{self.lane}: {self.why}" + "".join(f" ({part})" for part in (self.earlier, self.note) if part is not None)


def decide(
    profile: TaskProfile,
    *,
    expected_duration_s: float,
    policy: RoutingPolicy,
    hints: Hints | None = None,
    mode: Mode = Mode.AUTO,
    arrival_rate_per_min: float = 0.0,
    worker_cheaper_above_per_min: float | None = None,
    max_queue_s: float | None = None,
    async_because: str = "client asked for async",
) -> Decision:
    """Route one job; raises UnroutableError with the reason when no lane can honour the request.

    ``arrival_rate_per_min`` is how often this task arrives; ``worker_cheaper_above_per_min`` the
    rate above which the always-on worker costs less than inline runs
    (:meth:`jobcore.costing.CostModel.break_even_per_min`; None: never prefer the worker for rate alone).
    ``max_queue_s``: how long the client accepts the job waits (the request's), for the batch rule 1b.
    ``async_because``: why the mode is async, for rule 3's reason (the S3 intake's jobs: nobody waits for them).
    """
    hints = hints or Hints()
    duration = hints.expected_duration_s if hints.expected_duration_s is not None else expected_duration_s
    memory = max(profile.memory_mb, hints.memory_mb or 0)
    lanes = policy.lanes
    if mode is Mode.BATCH:
        return _batch(profile, lanes)
    if (mode is Mode.AUTO and profile.trigger is Trigger.BACKGROUND and not profile.gpu and profile.model_calls
            and max_queue_s is not None and max_queue_s >= BATCH_AUTO_MIN_QUEUE_S and lanes.batch_lane is not None):
        return Decision(lanes.batch_lane.name, f"background task and the client accepts a wait of {max_queue_s:,.0f} s "
                                               f"(>= {BATCH_AUTO_MIN_QUEUE_S:,} s): Message Batches API")
    if profile.gpu:
        return _gpu(mode, lanes, memory, duration)
    inline = lanes.inline
    largest = max(lane.memory_mb for lane in (inline, *lanes.cpu_lanes()))
    if memory > largest:
        raise UnroutableError(f"needs {memory} MB, more than any lane offers ({largest} MB)")
    queue = _Queue(lanes, memory, duration, mode)
    if mode is Mode.ASYNC:
        return queue.take(async_because)
    if duration > inline.time_limit_s:
        return queue.take(f"expected {duration:.1f} s > inline budget {inline.time_limit_s:g} s")
    if memory > inline.memory_mb:
        return queue.take(f"needs {memory} MB > router memory {inline.memory_mb} MB")
    if mode is Mode.SYNC:
        return Decision(inline.name, f"client asked for sync; expected {duration:.1f} s fits the budget")
    if profile.trigger is Trigger.BACKGROUND:
        return queue.take("background task, nobody waits on it")
    threshold = worker_cheaper_above_per_min
    if threshold is not None and arrival_rate_per_min > threshold:
        return queue.take(f"arriving at {arrival_rate_per_min:,.4g}/min > {threshold:.3g}/min, where the always-on worker is cheaper")
    return Decision(inline.name, f"expected {duration:.1f} s <= budget {inline.time_limit_s:g} s, {memory} MB <= {inline.memory_mb} MB")


@dataclass(frozen=True)
class _Queue:
    """The CPU queue lanes that can take this job, or the reason none can."""

    lanes: Lanes
    memory_mb: int
    duration_s: float
    mode: Mode

    def take(self, why: str) -> Decision:
        if self.mode is Mode.SYNC:
            raise UnroutableError(f"cannot run sync: {why}")
        lane = _first_fitting(self.lanes.cpu_lanes(), self.memory_mb, self.duration_s)
        return Decision(lane.name, why)


def _first_fitting(candidates: tuple[Lane, ...], memory_mb: int, duration_s: float) -> Lane:
    for lane in candidates:
        if lane.memory_mb >= memory_mb and lane.time_limit_s >= duration_s:
            return lane
    offered = ", ".join(f"{lane.name} ({lane.memory_mb} MB, {lane.time_limit_s:g} s)" for lane in candidates)
    raise UnroutableError(f"needs {memory_mb} MB for {duration_s:.1f} s; no lane offers that ({offered})")


def _batch(profile: TaskProfile, lanes: Lanes) -> Decision:
    if profile.gpu:
        raise UnroutableError("needs a GPU, which only a queued gpu lane has: the batch lane sends Claude requests "
                              "through the Message Batches API; use auto or async")
    if not profile.model_calls:
        raise UnroutableError("this task computes its result itself rather than calling Claude, so the batch lane "
                              "(Message Batches API) cannot run it; use auto or async")
    lane = lanes.batch_lane
    if lane is None:
        raise UnroutableError("the batch lane is not enabled in this deployment (batch_enabled; it is Anthropic's Message "
                              "Batches API, so it is off when 'anthropic' is not among model_providers); use auto or async")
    return Decision(lane.name, "client asked for batch (Message Batches API: half the token price, results within 24 h)")


def _gpu(mode: Mode, lanes: Lanes, memory: int, duration: float) -> Decision:
    if mode is Mode.SYNC:
        raise UnroutableError("needs a GPU, which only a queued gpu lane has: sync is impossible, use auto or async")
    candidates = lanes.gpu_lanes()
    if not candidates:
        raise UnroutableError("needs a GPU, and the gpu lane is not enabled in this deployment")
    lane = _first_fitting(candidates, memory, duration)
    return Decision(lane.name, "task needs a GPU (ECS on EC2)")
