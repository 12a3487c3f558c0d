"""Every branch of the routing policy (the seed article's decision framework)."""

import pytest

from jobcore.errors import UnroutableError
from jobcore.model import Mode, Route
from jobcore.routing import Hints, RoutingPolicy, TaskProfile, decide

POLICY = RoutingPolicy(inline_budget_s=20, router_memory_mb=1024, worker_memory_mb=4096, gpu_memory_mb=15360, gpu_enabled=True)
SHORT = TaskProfile(expected_duration_s=5, memory_mb=256)


def route(profile=SHORT, *, duration=None, policy=POLICY, **kwargs):
    return decide(profile, expected_duration_s=duration or profile.expected_duration_s, policy=policy, **kwargs)


def test_short_small_event_task_runs_inline_and_says_why():
    decision = route()
    assert decision.route is Route.INLINE
    assert decision.reason == "inline: expected 5.0 s <= budget 20 s, 256 MB <= 1024 MB"


def test_gpu_task_goes_to_the_gpu_lane():
    decision = route(TaskProfile(expected_duration_s=3600, memory_mb=8192, gpu=True))
    assert decision.route is Route.GPU and "GPU" in decision.reason


def test_gpu_task_with_sync_is_refused():
    with pytest.raises(UnroutableError, match="sync is impossible"):
        route(TaskProfile(expected_duration_s=1, memory_mb=256, gpu=True), mode=Mode.SYNC)


def test_gpu_task_when_gpu_lane_is_off_is_refused():
    with pytest.raises(UnroutableError, match="not enabled"):
        route(TaskProfile(expected_duration_s=1, memory_mb=256, gpu=True), policy=RoutingPolicy(gpu_enabled=False))


def test_gpu_task_bigger_than_the_gpu_lane_is_refused():
    with pytest.raises(UnroutableError, match="gpu lane offers"):
        route(TaskProfile(expected_duration_s=1, memory_mb=20_000, gpu=True))


def test_memory_beyond_every_lane_is_refused_naming_the_figures():
    with pytest.raises(UnroutableError, match="needs 8192 MB, more than any lane offers \\(4096 MB\\)"):
        route(hints=Hints(memory_mb=8192))


def test_async_is_honoured():
    assert route(mode=Mode.ASYNC) .route is Route.CPU


def test_long_job_is_queued_with_the_budget_in_the_reason():
    decision = route(duration=40)
    assert decision.route is Route.CPU
    assert decision.reason == "cpu: expected 40.0 s > inline budget 20 s"


def test_long_job_with_sync_is_refused():
    with pytest.raises(UnroutableError, match="cannot run sync: expected 40.0 s > inline budget"):
        route(duration=40, mode=Mode.SYNC)


def test_hint_overrides_the_task_estimate():
    assert route(hints=Hints(expected_duration_s=60)).route is Route.CPU
    assert route(duration=60, hints=Hints(expected_duration_s=2)).route is Route.INLINE


def test_memory_above_the_router_goes_to_the_worker():
    decision = route(hints=Hints(memory_mb=2048))
    assert decision.route is Route.CPU and "router memory 1024 MB" in decision.reason


def test_memory_above_the_router_with_sync_is_refused():
    with pytest.raises(UnroutableError, match="router memory"):
        route(hints=Hints(memory_mb=2048), mode=Mode.SYNC)


def test_sync_short_job_runs_inline():
    decision = route(mode=Mode.SYNC)
    assert decision.route is Route.INLINE and "asked for sync" in decision.reason


def test_batch_task_is_queued_unless_sync():
    batch = TaskProfile(expected_duration_s=5, memory_mb=256, trigger="batch")
    assert route(batch).route is Route.CPU
    assert route(batch, mode=Mode.SYNC).route is Route.INLINE


def test_high_arrival_rate_prefers_the_always_on_worker():
    assert route(arrival_rate_per_min=50, worker_cheaper_above_per_min=100).route is Route.INLINE
    decision = route(arrival_rate_per_min=500, worker_cheaper_above_per_min=100)
    assert decision.route is Route.CPU and "500/min > 100/min" in decision.reason
    assert route(arrival_rate_per_min=500, worker_cheaper_above_per_min=100, mode=Mode.SYNC).route is Route.INLINE


def test_no_break_even_means_rate_never_decides():
    assert route(arrival_rate_per_min=1e9, worker_cheaper_above_per_min=None).route is Route.INLINE
