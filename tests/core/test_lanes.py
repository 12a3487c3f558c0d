"""Lanes: one description per place a job can run, parsed by the same rules wherever it travels."""

import json

import pytest

from jobcore.lanes import INLINE, Ec2Compute, FargateCompute, LambdaCompute, Lane, LaneConfigError, Lanes
from jobcore.limits import MAX_INLINE_BUDGET_S
from tests.fakes import LANES, make_lanes


def test_the_lanes_round_trip_through_json_unchanged():
    for lanes in (LANES, make_lanes(gpu_enabled=False, spot=False, worker_concurrency=3)):
        assert Lanes.from_dict(json.loads(json.dumps(lanes.to_dict()))) == lanes


def test_the_inline_lane_the_fallback_and_the_gpu_lanes():
    lanes = make_lanes(gpu_enabled=False)
    assert lanes.inline.name == INLINE and lanes.fallback.name == "cpu"
    assert [lane.name for lane in lanes.queued()] == ["cpu"]
    assert lanes.gpu_lanes() == () and [lane.name for lane in lanes.gpu_lanes(enabled=False)] == ["gpu"]
    assert "gpu" in lanes and "tpu" not in lanes


def lane_dict(**changes):
    data = LANES.to_dict()
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = data
        for parent in parents:
            node = node[parent]
        node[key] = value
    return data


@pytest.mark.parametrize(("changes", "message"), [
    ({"inline__time_limit_s": MAX_INLINE_BUDGET_S + 1}, rf"lanes\.inline\.time_limit_s: at most {MAX_INLINE_BUDGET_S} s"),
    ({"inline__memory_mb": 64}, r"lanes\.inline\.memory_mb"),
    ({"inline__queued": True}, r"lanes\.inline\.compute: a queued lane runs on fargate or ec2"),
    ({"cpu__enabled": False}, "at least one enabled queued lane without a GPU"),
    ({"cpu__gpu": True, "gpu__enabled": False}, r"lanes\.cpu\.gpu: Fargate has no GPU"),
    ({"cpu__compute__arch": "arm64"}, r"lanes\.cpu\.compute\.spot: Fargate Spot runs x86_64 tasks only"),
    ({"cpu__compute__kind": "lambda"}, r"lanes\.cpu\.compute\.spot: not a known field"),
    ({"cpu__compute__kind": "k8s"}, r"lanes\.cpu\.compute\.kind: one of lambda, fargate, ec2"),
    ({"cpu__time_limit_s": 50_000}, r"lanes\.cpu\.time_limit_s: at most 43200 s"),
    ({"cpu__concurrency": 0}, r"lanes\.cpu\.concurrency"),
    ({"cpu__memory_mb": "big"}, r"lanes\.cpu\.memory_mb: must be a positive whole number"),
    ({"cpu__spare": 1}, r"lanes\.cpu\.spare: not a known field"),
    ({"gpu__enabled": "yes"}, r"lanes\.gpu\.enabled: true or false"),
    ({"gpu__compute__instance": ""}, r"lanes\.gpu\.compute\.instance"),
])
def test_a_malformed_lane_is_refused_naming_the_field(changes, message):
    with pytest.raises(LaneConfigError, match=message):
        Lanes.from_dict(lane_dict(**changes))


def test_there_is_exactly_one_inline_lane():
    without = {name: spec for name, spec in LANES.to_dict().items() if name != INLINE}
    with pytest.raises(LaneConfigError, match="exactly one lane runs in the router, and it is named 'inline'"):
        Lanes.from_dict(without)


def test_lane_names_are_checked_and_unique():
    with pytest.raises(LaneConfigError, match="not a lane name"):
        Lanes.from_dict({**LANES.to_dict(), "Big Lane": LANES.to_dict()["cpu"]})
    cpu = LANES.get("cpu")
    with pytest.raises(LaneConfigError, match="given twice"):
        Lanes((*LANES, cpu))
    with pytest.raises(LaneConfigError, match="no lane named 'tpu'; this deployment has inline, cpu, gpu"):
        LANES.get("tpu")


def test_a_new_lane_is_one_more_entry():
    arm = Lane(name="cpu-arm", queued=True, memory_mb=8192, time_limit_s=3600, concurrency=4,
               compute=FargateCompute(vcpu=2, memory_mb=8192, spot=False, arch="arm64"))
    lanes = Lanes((*LANES, arm))
    assert [lane.name for lane in lanes.cpu_lanes()] == ["cpu", "cpu-arm"]
    assert Lanes.from_dict(lanes.to_dict()).get("cpu-arm") == arm


def test_compute_kinds_are_plain_values():
    assert LambdaCompute(memory_mb=1024).kind == "lambda"
    assert FargateCompute(vcpu=1, memory_mb=2048, spot=True).kind == "fargate"
    assert Ec2Compute(instance="g5.xlarge").kind == "ec2"


@pytest.mark.parametrize(("changes", "message"), [
    ({"inline__compute__memory_mb": "x"}, r"lanes\.inline\.compute\.memory_mb: must be a positive whole number"),
    ({"cpu__compute__memory_mb": 4096.5}, r"lanes\.cpu\.compute\.memory_mb: must be a positive whole number"),
    ({"cpu__memory_mb": 1024.5}, r"lanes\.cpu\.memory_mb: must be a positive whole number"),
    ({"cpu__compute__spot": "yes"}, r"lanes\.cpu\.compute\.spot: true or false"),
    ({"cpu__time_limit_s": float("nan")}, r"lanes\.cpu\.time_limit_s: must be a positive number"),
    ({"cpu__compute__vcpu": float("inf")}, r"lanes\.cpu\.compute\.vcpu: must be a positive number"),
])
def test_wrong_types_inside_a_lane_are_refused_as_lane_errors(changes, message):
    with pytest.raises(LaneConfigError, match=message):
        Lanes.from_dict(lane_dict(**changes))
