"""One shape for a benchmark section, so one run (``python -m bench.bench_latency``) can report several.

A section measures one thing and says, for each of its goals, what was measured and whether the goal
was met. Sections never fail a build: speed is measured here, not asserted in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``values``, nearest rank: the value below which ``q`` of them lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
