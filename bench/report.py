"""One shape for a benchmark section, so one run (``python -m bench.bench_latency``) can report several.

A section measures one thing and says, for each of its goals, what was measured and whether the goal
was met. Sections never fail a build: speed is measured here, not asserted in tests.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``values``, nearest rank: the value below which ``q`` of them lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def epoch_s(iso: str) -> float:
    """A job's timestamp as the API writes it (ISO 8601, ``Z`` for UTC), in seconds since the epoch."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Goal:
    name: str  # what is promised, e.g. "inline job: at most 2 AWS calls"
    measured: str  # what this run saw, e.g. "2 (PutItem, UpdateItem)"
    met: bool


@dataclass
class Section:
    title: str
    goals: list[Goal] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # markdown: tables and notes with the figures

    def markdown(self) -> str:
        rows = ["| goal | measured | met |", "|---|---|---|"]
        rows += [f"| {g.name} | {g.measured} | {'yes' if g.met else 'no'} |" for g in self.goals]
        return "\n".join([f"## {self.title}", "", *rows, "", *self.lines]).rstrip() + "\n"


def publish(sections: Sequence[Section], *, quick: bool, started: float, out: str | None, detail: str = "",
            note: str = "") -> str:
    """A run's report: one line saying when, where and how it ran (the date, the machine, Python, quick or full, the
    seconds since ``started``, a ``time.perf_counter()``; then ``detail``, and ``note`` after it), then each section.
    Printed, and written to ``out`` (``--out``) when given; returned."""
    head = (f"Run {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, Python {platform.python_version()}, "
            f"{'quick' if quick else 'full'} run, {math.ceil(time.perf_counter() - started)} s in all"
            f"{f'; {detail}' if detail else ''}.{f' {note}' if note else ''}\n")
    report = "\n".join([head, *(section.markdown() for section in sections)])
    print(report)
    if out:
        with open(out, "w", encoding="utf-8") as file:
            file.write(report)
    return report
