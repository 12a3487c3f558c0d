"""Waking an idle lane (jobcore.wake): the gate, the lanes it applies to, and where the job service calls it."""

from __future__ import annotations

import threading

import pytest

from jobcore.errors import ModelUnavailableError
from jobcore.limits import WAKE_EVERY_S
from jobcore.requests import SubmitRequest
from jobcore.routing import RoutingPolicy
from jobcore.wake import GatedWaker, WakeGate
from tests import fakes
from tests.fakes import FakeClock, MemoryQueue, make_lanes

MESSAGES = {"max_tokens": 100, "messages": [{"role": "user", "content": "Say hi."}]}
LONG = {**MESSAGES, "max_tokens": 4000}  # past the inline budget: queued on the cpu lane


class RecordingWaker:
    def __init__(self, *, fails: bool = False, answer: bool = True) -> None:
        self.calls: list[str] = []
        self.fails = fails
        self.answer = answer

    def wake(self, lane: str) -> bool:
        self.calls.append(lane)
        if self.fails:
            raise RuntimeError("ECS is down")
        return self.answer


def gated(inner=None, *, clock=None, lanes=None, every_s=WAKE_EVERY_S):
    clock = clock or FakeClock()
    inner = inner or RecordingWaker()
    return GatedWaker(inner, lanes=lanes or make_lanes(batch=True), gate=WakeGate(monotonic=clock.monotonic, every_s=every_s)), inner, clock


# --- the gate ---------------------------------------------------------------------------------------------


def test_the_gate_admits_one_attempt_per_lane_per_window():
    clock = FakeClock()
    gate = WakeGate(monotonic=clock.monotonic, every_s=30)

    assert gate.admit("cpu") is True
    assert gate.admit("cpu") is False
    assert gate.admit("gpu") is True  # each lane has its own window
    clock.advance(29.9)
    assert gate.admit("cpu") is False
    clock.advance(0.1)
    assert gate.admit("cpu") is True


def test_concurrent_threads_get_one_attempt_through_the_gate():
    gate = WakeGate(monotonic=FakeClock().monotonic, every_s=30)
    admitted: list[bool] = []
    start = threading.Barrier(16)

    def attempt() -> None:
        start.wait()
        admitted.append(gate.admit("cpu"))

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert admitted.count(True) == 1 and len(admitted) == 16


def test_the_gate_wants_a_positive_window():
    with pytest.raises(ValueError, match="every_s"):
        WakeGate(monotonic=FakeClock().monotonic, every_s=0)


# --- the gated waker --------------------------------------------------------------------------------------


@pytest.mark.parametrize("lane", ["inline", "batch", "nowhere"])
def test_only_worker_lanes_are_woken(lane):
    waker, inner, _ = gated()

    assert waker.wake(lane) is False
    assert inner.calls == []


def test_a_disabled_lane_is_not_woken():
    waker, inner, _ = gated(lanes=make_lanes(gpu_enabled=False))

    assert waker.wake("gpu") is False and inner.calls == []


def test_a_worker_lane_is_woken_once_per_window_and_again_after_it():
    waker, inner, clock = gated()

    assert waker.wake("cpu") is True
    assert waker.wake("cpu") is False
    clock.advance(WAKE_EVERY_S)
    assert waker.wake("cpu") is True
    assert inner.calls == ["cpu", "cpu"]


def test_a_failing_wake_is_swallowed_and_still_spends_the_window():
    waker, inner, _ = gated(RecordingWaker(fails=True))

    assert waker.wake("cpu") is False
    assert waker.wake("cpu") is False  # no retry storm against a failing ECS
    assert inner.calls == ["cpu"]


# --- where the job service wakes a lane --------------------------------------------------------------------


def make_service(script=(), *, queue=None, waker=None):
    return fakes.make_service(script, queue=queue, policy=RoutingPolicy(lanes=make_lanes()), waker=waker)


def submit(service, payload=MESSAGES, **kwargs):
    return service.submit(SubmitRequest(task="claude.messages", input=payload, **kwargs), tenant_id="tenant-a")


def test_a_queued_job_wakes_its_lane_after_it_is_queued():
    waker = RecordingWaker()
    queue = MemoryQueue()
    service, _ = make_service(queue=queue, waker=waker)

    job = submit(service, LONG).job

    assert job.lane == "cpu" and queue.sent == [(job.job_id, "cpu")]
    assert waker.calls == ["cpu"]


def test_an_inline_job_wakes_nothing():
    from tests.fakes import text_response

    waker = RecordingWaker()
    service, _ = make_service([text_response("hi")], waker=waker)

    assert submit(service).job.lane == "inline"
    assert waker.calls == []


def test_an_inline_job_falling_back_to_the_queue_wakes_the_fallback_lane():
    waker = RecordingWaker()
    slow = ModelUnavailableError("the model did not answer in time", kind="timeout")
    service, _ = make_service([slow, slow, slow, slow], waker=waker)

    job = submit(service).job

    assert job.lane == "cpu" and waker.calls == ["cpu"]


def test_a_job_that_could_not_be_queued_wakes_nothing():
    waker = RecordingWaker()
    service, _ = make_service(queue=MemoryQueue(broken=True), waker=waker)

    submitted = submit(service, LONG)
    assert submitted.job.unsent_since is not None and waker.calls == []


def test_a_waker_that_answers_false_changes_nothing_for_the_client():
    service, _ = make_service(waker=RecordingWaker(answer=False))

    submitted = submit(service, LONG)

    assert submitted.status_code == 202 and submitted.job.lane == "cpu"
