"""Every branch of the routing policy (the seed article's decision framework)."""

import pytest

from jobcore.errors import UnroutableError
from jobcore.lanes import INLINE, FargateCompute, Lane, Lanes
from jobcore.model import Mode
from jobcore.routing import Hints, RoutingPolicy, TaskProfile, Trigger, decide
from tests.fakes import make_lanes

POLICY = RoutingPolicy(lanes=make_lanes(inline_budget_s=20, router_memory_mb=1024, worker_memory_mb=4096, gpu_memory_mb=15360))
SHORT = TaskProfile(expected_duration_s=5, memory_mb=256, timeout_s=600)


def route(profile=SHORT, *, duration=None, policy=POLICY, **kwargs):
    return decide(profile, expected_duration_s=duration or profile.expected_duration_s, policy=policy, **kwargs)


def test_short_small_event_task_runs_inline_and_says_why():
    decision = route()
    assert decision.lane == "inline"
    assert decision.reason == "inline: expected 5.0 s <= budget 20 s, 256 MB <= 1024 MB"


def test_gpu_task_goes_to_the_gpu_lane():
    decision = route(TaskProfile(expected_duration_s=3600, memory_mb=8192, timeout_s=600, gpu=True))
    assert decision.lane == "gpu" and "GPU" in decision.reason


def test_gpu_task_with_sync_is_refused():
    with pytest.raises(UnroutableError, match="sync is impossible"):
        route(TaskProfile(expected_duration_s=1, memory_mb=256, timeout_s=600, gpu=True), mode=Mode.SYNC)


def test_gpu_task_when_gpu_lane_is_off_is_refused():
    with pytest.raises(UnroutableError, match="not enabled"):
        route(TaskProfile(expected_duration_s=1, memory_mb=256, timeout_s=600, gpu=True),
              policy=RoutingPolicy(lanes=make_lanes(gpu_enabled=False)))


def test_gpu_task_bigger_than_the_gpu_lane_is_refused():
    with pytest.raises(UnroutableError, match=r"needs 20000 MB for 1.0 s; no lane offers that \(gpu \(15360 MB, 3600 s\)\)"):
        route(TaskProfile(expected_duration_s=1, memory_mb=20_000, timeout_s=600, gpu=True))


def test_memory_beyond_every_lane_is_refused_naming_the_figures():
    with pytest.raises(UnroutableError, match="needs 8192 MB, more than any lane offers \\(4096 MB\\)"):
        route(hints=Hints(memory_mb=8192))


def test_async_is_honoured():
    assert route(mode=Mode.ASYNC) .lane == "cpu"


def test_long_job_is_queued_with_the_budget_in_the_reason():
    decision = route(duration=40)
    assert decision.lane == "cpu"
    assert decision.reason == "cpu: expected 40.0 s > inline budget 20 s"


def test_long_job_with_sync_is_refused():
    with pytest.raises(UnroutableError, match="cannot run sync: expected 40.0 s > inline budget"):
        route(duration=40, mode=Mode.SYNC)


def test_hint_overrides_the_task_estimate():
    assert route(hints=Hints(expected_duration_s=60)).lane == "cpu"
    assert route(duration=60, hints=Hints(expected_duration_s=2)).lane == "inline"


def test_memory_above_the_router_goes_to_the_worker():
    decision = route(hints=Hints(memory_mb=2048))
    assert decision.lane == "cpu" and "router memory 1024 MB" in decision.reason


def test_memory_above_the_router_with_sync_is_refused():
    with pytest.raises(UnroutableError, match="router memory"):
        route(hints=Hints(memory_mb=2048), mode=Mode.SYNC)


def test_sync_short_job_runs_inline():
    decision = route(mode=Mode.SYNC)
    assert decision.lane == "inline" and "asked for sync" in decision.reason


def test_batch_task_is_queued_unless_sync():
    batch = TaskProfile(expected_duration_s=5, memory_mb=256, timeout_s=600, trigger=Trigger.BACKGROUND)
    assert route(batch).lane == "cpu"
    assert route(batch, mode=Mode.SYNC).lane == "inline"


def test_high_arrival_rate_prefers_the_always_on_worker():
    assert route(arrival_rate_per_min=50, worker_cheaper_above_per_min=100).lane == "inline"
    decision = route(arrival_rate_per_min=500, worker_cheaper_above_per_min=100)
    assert decision.lane == "cpu" and "500/min > 100/min" in decision.reason
    assert route(arrival_rate_per_min=500, worker_cheaper_above_per_min=100, mode=Mode.SYNC).lane == "inline"


def test_no_break_even_means_rate_never_decides():
    assert route(arrival_rate_per_min=1e9, worker_cheaper_above_per_min=None).lane == "inline"


def test_a_job_longer_than_every_queue_lane_allows_is_refused_naming_the_lanes():
    with pytest.raises(UnroutableError, match=r"no lane offers that \(cpu \(4096 MB, 3600 s\)\)"):
        route(duration=7200)


def test_the_first_queue_lane_that_fits_takes_the_job():
    big = Lane(name="cpu-big", queued=True, memory_mb=16384, time_limit_s=36000, concurrency=2,
               compute=FargateCompute(vcpu=4, memory_mb=16384, spot=True))
    lanes = Lanes((*make_lanes(), big))
    policy = RoutingPolicy(lanes=lanes)
    assert route(duration=40, policy=policy).lane == "cpu"
    decision = route(duration=7200, policy=policy)
    assert decision == decide(SHORT, expected_duration_s=7200, policy=policy)
    assert decision.lane == "cpu-big" and decision.reason == "cpu-big: expected 7200.0 s > inline budget 20 s"
    assert route(hints=Hints(memory_mb=8192), policy=policy).lane == "cpu-big"


def test_the_inline_budget_and_router_memory_are_the_inline_lanes():
    small = RoutingPolicy(lanes=make_lanes(inline_budget_s=5, router_memory_mb=512))
    assert route(duration=6, policy=small).reason == "cpu: expected 6.0 s > inline budget 5 s"
    assert route(hints=Hints(memory_mb=768), policy=small).reason == "cpu: needs 768 MB > router memory 512 MB"
    assert route(policy=small).lane == INLINE
