"""The local pipeline's process ids, by component: one entry a process, however many workers a lane runs; its wait for
the workers to receive."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from local.pipeline import LocalPipeline, Options, Supervised


def test_two_workers_of_a_lane_have_a_pid_each(tmp_path: Path):
    pipeline = LocalPipeline(Options(workers_per_lane=2))
    for pid, (module, component) in enumerate([("worker.main", "worker-cpu"), ("worker.main", "worker-cpu-2"),
                                               ("local.sweeper", "sweeper")], start=100):
        supervised = Supervised(module, tmp_path / f"{component}.log", {"LANE": "cpu"}, component=component)
        supervised.process = SimpleNamespace(pid=pid)  # type: ignore[assignment]  # not started: only its pid is read
        pipeline._processes.append(supervised)
    assert pipeline.pids() == {"worker-cpu": 100, "worker-cpu-2": 101, "sweeper": 102, "router": []}


def test_waiting_for_the_workers_returns_once_each_log_says_it_receives_and_names_the_late_ones(tmp_path: Path):
    from worker.main import READY

    pipeline = LocalPipeline(Options(workers_per_lane=2))
    first, second = tmp_path / "worker.log", tmp_path / "worker-2.log"
    pipeline._worker_logs = [first, second]
    first.write_text(f"starting\n{READY} the cpu lane\n")
    second.write_text("starting\n")  # still loading the SDK
    with pytest.raises(TimeoutError, match="worker-2.log"):
        pipeline.wait_for_workers(timeout_s=0.3)
    timer = threading.Timer(0.3, lambda: second.write_text(f"starting\n{READY} the cpu lane\n"))
    timer.start()
    pipeline.wait_for_workers(timeout_s=30)  # returns once the second says it receives
    timer.join()
