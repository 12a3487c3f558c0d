"""The capacity bench's arithmetic (bench/bench_capacity.py): goodput from the stand-in's own timeline."""

from __future__ import annotations

from typing import Any

from bench.bench_capacity import goodput


def stats(rpm: int | None, itpm: int | None, rows: list[list[int]]) -> dict[str, Any]:
    return {"limits": {"rpm": rpm, "itpm": itpm, "otpm": None}, "timeline": rows}


def test_a_limit_used_fully_once_the_bucket_is_spent_is_a_goodput_of_one():
    # A full bucket (60) in the first second, then the refill, one a second, for two minutes.
    rows = [[0, 60, 0, 0, 0]] + [[s, 1, 0, 0, 0] for s in range(1, 121)]

    measured = goodput(stats(60, None, rows))

    assert (measured["binding"], measured["reached_at_s"], measured["goodput"]) == ("requests", 1, 1.0)
    assert measured["windows"] == [1.0, 1.0]


def test_half_the_refill_used_is_half_and_so_is_each_minute():
    rows = [[0, 60, 5, 0, 0]] + [[s, 1, 1, 0, 0] for s in range(2, 121, 2)]

    measured = goodput(stats(60, None, rows))

    assert measured["goodput"] == 0.5  # seconds 1 to 120: 60 calls against 120 s of refill at 1 a second
    assert measured["windows"] == [0.5, 0.5]


def test_the_binding_limit_is_the_one_used_most():
    # 100 tokens a call: 30 calls a minute use half of 60 RPM and all of 3,000 ITPM.
    rows = [[0, 30, 0, 3_000, 0]] + [[s, 1, 0, 100, 0] for s in range(2, 121, 2)]

    measured = goodput(stats(60, 3_000, rows))

    assert (measured["binding"], measured["goodput"]) == ("input_tokens", 1.0)


def test_a_limit_never_reached_has_no_goodput():
    rows = [[s, 1, 0, 0, 0] for s in range(0, 30)]

    measured = goodput(stats(120, None, rows))

    assert (measured["reached_at_s"], measured["goodput"], measured["windows"]) == (None, None, [])


def test_a_full_bucket_idle_before_the_burst_does_not_count_as_spent():
    # 30 s of nothing (the bucket stays full: no refill beyond it), then the burst and the refill.
    rows = [[30, 60, 0, 0, 0]] + [[s, 1, 0, 0, 0] for s in range(31, 151)]

    measured = goodput(stats(60, None, rows))

    assert (measured["reached_at_s"], measured["goodput"]) == (31, 1.0)
