"""What every part that reads and writes jobs shares: the job store, the blob store, the clock, the lanes, the task
catalogue, the usage counters and the observer. The runner, the job service, the sweeper and the batch collector of
a process hold one :class:`JobContext`, by reference, so each reads its parts from it and none reaches through
another for them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from jobcore.lanes import Lanes
from jobcore.observing import QUIET
from jobcore.ports import BlobStore, JobStore, Observer, UsageStore
from jobcore.tasks import CATALOGUE, TaskSpec


@dataclass(kw_only=True)
class JobContext:
    store: JobStore
    blobs: BlobStore
    clock_ms: Callable[[], int]
    lanes: Lanes
    catalogue: dict[str, TaskSpec] = field(default_factory=lambda: CATALOGUE)
    usage: UsageStore | None = None  # the tenants' usage counters, added to after each terminal write
    observer: Observer = QUIET  # traces and metrics
