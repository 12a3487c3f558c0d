"""The local pipeline's process ids, by component: one entry a process, however many workers a lane runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from local.pipeline import LocalPipeline, Options, Supervised


def test_two_workers_of_a_lane_have_a_pid_each(tmp_path: Path):
    pipeline = LocalPipeline(Options(workers_per_lane=2))
    for pid, (module, component) in enumerate([("worker.main", "worker-cpu"), ("worker.main", "worker-cpu-2"),
                                               ("local.sweeper", "sweeper")], start=100):
        supervised = Supervised(module, tmp_path / f"{component}.log", {"LANE": "cpu"}, component=component)
        supervised.process = SimpleNamespace(pid=pid)  # type: ignore[assignment]  # not started: only its pid is read
        pipeline._processes.append(supervised)
    assert pipeline.pids() == {"worker-cpu": 100, "worker-cpu-2": 101, "sweeper": 102, "router": []}
