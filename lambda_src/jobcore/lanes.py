"""Lanes: the places a job can run, each described once.

A lane is where a job runs and how that is paid for: ``inline`` runs in the router Lambda while the
request waits; a queued lane (``cpu``, ``gpu``, ...) is an SQS queue drained by a worker service; the
``batch`` lane is an SQS queue drained by the batch collector, which sends its jobs' model requests through
the Message Batches API (:mod:`jobcore.batches`) and has no compute of its own (:class:`BatchCompute`). A
:class:`Lane` says what it can run (memory, a GPU, how long a job may take), how many jobs one worker
runs at once, what its compute costs (:data:`Compute`) and whether this deployment has it.

The lanes are built once from the deployment's configuration (``stacks/config.py``), travel to the
router and the workers as one JSON document (``LANES``), and are read back with :meth:`Lanes.from_dict`,
the same rules on both sides. Routing, costing, settings, the stacks and the local runtime all read
them; adding a lane means one more entry here plus its compute in the stacks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jobcore.limits import LAMBDA_MAX_MEMORY_MB, LAMBDA_MIN_MEMORY_MB, MAX_INLINE_BUDGET_S, SQS_MAX_VISIBILITY_S

INLINE = "inline"  # the one lane that runs in the router, the only one a waiting request can use
BATCH_WINDOW_MAX_S = 86_400  # the Message Batches API ends every batch within 24 h of its creation
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
_ARCHES = ("arm64", "x86_64")


class LaneConfigError(ValueError):
    """A lane's description is malformed; the message names the field (``lanes.cpu.memory_mb``)."""


@dataclass(frozen=True, kw_only=True)
class LambdaCompute:
    """A Lambda function: memory × wall-clock time, per millisecond."""

    kind: ClassVar[str] = "lambda"
    memory_mb: int
    arch: str = "arm64"


@dataclass(frozen=True, kw_only=True)
class FargateCompute:
    """A Fargate task of ``vcpu`` and ``memory_mb``, per second; Spot is x86_64 only."""

    kind: ClassVar[str] = "fargate"
    vcpu: float
    memory_mb: int
    spot: bool
    arch: str = "x86_64"


@dataclass(frozen=True, kw_only=True)
class Ec2Compute:
    """An on-demand EC2 instance of a type the price file lists, per second."""

    kind: ClassVar[str] = "ec2"
    instance: str


@dataclass(frozen=True, kw_only=True)
class BatchCompute:
    """The Message Batches API: no compute of ours per job (the collector is a scheduled Lambda shared by
    every batch); the job's Claude tokens are billed at the API's batch prices."""

    kind: ClassVar[str] = "batch"


Compute = LambdaCompute | FargateCompute | Ec2Compute | BatchCompute
_COMPUTE: dict[str, type[LambdaCompute] | type[FargateCompute] | type[Ec2Compute] | type[BatchCompute]] = {
    c.kind: c for c in (LambdaCompute, FargateCompute, Ec2Compute, BatchCompute)
}


@dataclass(frozen=True, kw_only=True)
class Lane:
    name: str
    queued: bool  # False: runs in the router while the request waits; True: SQS + a worker service (or the collector)
    memory_mb: int  # the most a job may use there
    time_limit_s: float  # the longest a job may run there (inline: the inline budget)
    compute: Compute
    gpu: bool = False
    concurrency: int = 1  # jobs one worker runs at once; they share its compute
    enabled: bool = True

    def __post_init__(self) -> None:
        where = f"lanes.{self.name}"
        if not _NAME.fullmatch(self.name):
            raise LaneConfigError(f"lanes: {self.name!r} is not a lane name (lower-case letters, digits, '-')")
        _whole(self.memory_mb, f"{where}.memory_mb")
        _positive(self.time_limit_s, f"{where}.time_limit_s")
        if not isinstance(self.concurrency, int) or isinstance(self.concurrency, bool) or not 1 <= self.concurrency <= 100:
            raise LaneConfigError(f"{where}.concurrency: must be a whole number from 1 to 100")
        limit = SQS_MAX_VISIBILITY_S if self.queued else MAX_INLINE_BUDGET_S
        if self.batch:
            limit = BATCH_WINDOW_MAX_S
        if self.time_limit_s > limit:
            why = ("the Message Batches API's 24 h" if self.batch else "the queue's visibility timeout" if self.queued
                   else "API Gateway's timeout, less the fallback margin")
            raise LaneConfigError(f"{where}.time_limit_s: at most {limit} s ({why})")
        self._check_compute(where)

    @property
    def batch(self) -> bool:
        """Drained by the batch collector (Message Batches API), not by a worker service."""
        return isinstance(self.compute, BatchCompute)

    def _check_compute(self, where: str) -> None:
        c = self.compute
        if not isinstance(c, LambdaCompute | FargateCompute | Ec2Compute | BatchCompute):
            raise LaneConfigError(f"{where}.compute: lambda, fargate, ec2 or batch compute")
        if isinstance(c, BatchCompute):
            if not self.queued or self.gpu or self.concurrency != 1:
                raise LaneConfigError(f"{where}: a batch lane is queued (its collector drains the queue), without a GPU, "
                                      "concurrency 1")
            return
        if not isinstance(c, Ec2Compute):
            _whole(c.memory_mb, f"{where}.compute.memory_mb")
        if c.kind != "ec2" and getattr(c, "arch", None) not in _ARCHES:
            raise LaneConfigError(f"{where}.compute.arch: one of {', '.join(_ARCHES)}")
        if not self.queued:
            if not isinstance(c, LambdaCompute) or self.gpu or self.concurrency != 1:
                raise LaneConfigError(f"{where}: the inline lane is the router Lambda: lambda compute, no GPU, one job at a time")
            if not LAMBDA_MIN_MEMORY_MB <= c.memory_mb <= LAMBDA_MAX_MEMORY_MB or c.memory_mb != self.memory_mb:
                raise LaneConfigError(f"{where}.memory_mb: the router's memory, {LAMBDA_MIN_MEMORY_MB} to {LAMBDA_MAX_MEMORY_MB} MB")
            return
        if isinstance(c, LambdaCompute):
            raise LaneConfigError(f"{where}.compute: a queued lane runs on fargate or ec2")
        if isinstance(c, FargateCompute):
            _positive(c.vcpu, f"{where}.compute.vcpu")
            if not isinstance(c.spot, bool):
                raise LaneConfigError(f"{where}.compute.spot: true or false")
            if self.gpu:
                raise LaneConfigError(f"{where}.gpu: Fargate has no GPU; a GPU lane runs on ec2")
            if c.spot and c.arch != "x86_64":
                raise LaneConfigError(f"{where}.compute.spot: Fargate Spot runs x86_64 tasks only")
            if c.memory_mb < self.memory_mb:
                raise LaneConfigError(f"{where}.memory_mb: more than the task's {c.memory_mb} MB")
        elif not isinstance(c.instance, str) or not c.instance:
            raise LaneConfigError(f"{where}.compute.instance: an instance type such as 'g5.xlarge'")

    def to_dict(self) -> dict[str, Any]:
        compute = {"kind": self.compute.kind, **{k: getattr(self.compute, k) for k in self.compute.__dataclass_fields__}}
        return {
            "queued": self.queued, "memory_mb": self.memory_mb, "time_limit_s": self.time_limit_s, "gpu": self.gpu,
            "concurrency": self.concurrency, "enabled": self.enabled, "compute": compute,
        }

    @classmethod
    def from_dict(cls, name: str, data: Any) -> Lane:
        where = f"lanes.{name}"
        if not isinstance(data, Mapping):
            raise LaneConfigError(f"{where}: must be an object")
        fields = dict(data)
        _known(fields, {"queued", "memory_mb", "time_limit_s", "gpu", "concurrency", "enabled", "compute"}, where)
        for key in ("queued", "memory_mb", "time_limit_s", "compute"):
            if key not in fields:
                raise LaneConfigError(f"{where}.{key}: missing")
        for key in ("queued", "gpu", "enabled"):
            if key in fields and not isinstance(fields[key], bool):
                raise LaneConfigError(f"{where}.{key}: true or false")
        return cls(name=name, **{**fields, "compute": _compute(fields["compute"], f"{where}.compute")})


@dataclass(frozen=True)
class Lanes:
    """A deployment's lanes, in order: exactly one inline lane, and at least one enabled CPU queue lane
    (where inline jobs fall back to when the model is slow)."""

    lanes: tuple[Lane, ...]
    _by_name: dict[str, Lane] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Lane] = {}
        for lane in self.lanes:
            if lane.name in by_name:
                raise LaneConfigError(f"lanes.{lane.name}: given twice")
            by_name[lane.name] = lane
        object.__setattr__(self, "_by_name", by_name)
        inline = [lane for lane in self.lanes if not lane.queued]
        if len(inline) != 1 or inline[0].name != INLINE:
            raise LaneConfigError(f"lanes: exactly one lane runs in the router, and it is named {INLINE!r}")
        if not self.cpu_lanes():
            raise LaneConfigError("lanes: at least one enabled queued lane without a GPU, for jobs too long for inline")
        if len([lane for lane in self.lanes if lane.batch]) > 1:
            raise LaneConfigError("lanes: at most one batch lane (one collector drains it)")

    def __iter__(self) -> Iterator[Lane]:
        return iter(self.lanes)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Lane:
        try:
            return self._by_name[name]
        except KeyError:
            raise LaneConfigError(f"lanes: no lane named {name!r}; this deployment has {', '.join(self._by_name)}") from None

    @property
    def inline(self) -> Lane:
        return self._by_name[INLINE]

    def queued(self) -> tuple[Lane, ...]:
        """The enabled queued lanes: each has an SQS queue (and a dead-letter queue)."""
        return tuple(lane for lane in self.lanes if lane.queued and lane.enabled)

    def worker_lanes(self) -> tuple[Lane, ...]:
        """The enabled queued lanes a worker service drains (every queued lane but the batch lane)."""
        return tuple(lane for lane in self.queued() if not lane.batch)

    @property
    def batch_lane(self) -> Lane | None:
        """The enabled batch lane (drained by the collector), or None when this deployment has none."""
        return next((lane for lane in self.queued() if lane.batch), None)

    def cpu_lanes(self) -> tuple[Lane, ...]:
        """The worker lanes without a GPU: where long jobs and the inline fallback go (never the batch lane)."""
        return tuple(lane for lane in self.worker_lanes() if not lane.gpu)

    def gpu_lanes(self, *, enabled: bool = True) -> tuple[Lane, ...]:
        return tuple(lane for lane in self.lanes if lane.gpu and (lane.enabled or not enabled))

    @property
    def fallback(self) -> Lane:
        """Where an inline job goes when the model cannot answer within the budget: the first CPU lane."""
        return self.cpu_lanes()[0]

    def to_dict(self) -> dict[str, Any]:
        return {lane.name: lane.to_dict() for lane in self.lanes}

    @classmethod
    def from_dict(cls, data: Any) -> Lanes:
        if not isinstance(data, Mapping) or not data:
            raise LaneConfigError("lanes: must be a non-empty object of lane name to lane")
        return cls(tuple(Lane.from_dict(name, spec) for name, spec in data.items()))


def _compute(data: Any, where: str) -> Compute:
    if not isinstance(data, Mapping) or data.get("kind") not in _COMPUTE:
        raise LaneConfigError(f"{where}.kind: one of {', '.join(_COMPUTE)}")
    kind = _COMPUTE[data["kind"]]
    fields = {k: v for k, v in data.items() if k != "kind"}
    _known(fields, set(kind.__dataclass_fields__) - {"kind"}, where)
    try:
        return kind(**fields)
    except TypeError as error:
        raise LaneConfigError(f"{where}: {error}") from None


def _known(fields: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise LaneConfigError(f"{where}.{unknown[0]}: not a known field (known: {', '.join(sorted(allowed))})")


def _whole(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise LaneConfigError(f"{where}: must be a positive whole number, not {value!r}")


def _positive(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise LaneConfigError(f"{where}: must be a positive number, not {value!r}")
