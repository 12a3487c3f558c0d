"""Fixtures shared by the suites that drive the local pipeline over HTTP (tests/e2e, tests/sdk).

``pipeline``: a local pipeline in its own process for each module that asks for one (module scope):
``python -m local.serve`` with a 4 s inline budget and a quick webhook schedule, plus whatever the
module's ``PIPELINE_ARGS`` adds. ``tests.e2e.harness.start_pipeline`` starts others (a module may need
one with other settings).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import SUMMARIES, StandIn, start_pipeline, stop_pipeline

E2E = Path(__file__).parent / "e2e"
PIPELINE_GROUP = "local-pipeline"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    """For ``make test``'s ``--dist loadgroup``: a process per test file (as ``loadfile``), except that the
    tests that run a local pipeline all share one, so that two pipelines never run at once: two (a dozen
    processes each) on a loaded 2-core machine starved a router past API Gateway's 29 s (504s). That
    group goes first: it is the longest, mostly waiting on real time, while the other process runs the rest."""
    def runs_pipeline(item) -> bool:
        return "pipeline" in item.fixturenames or item.path.is_relative_to(E2E)

    for item in items:
        item.add_marker(pytest.mark.xdist_group(PIPELINE_GROUP if runs_pipeline(item) else item.nodeid.split("::")[0]))
    if config.getoption("dist", "no") == "loadgroup":
        items.sort(key=lambda item: not runs_pipeline(item))  # stable: each group keeps its order


@pytest.fixture(scope="module")
def pipeline(request, tmp_path_factory) -> Iterator[dict[str, Any]]:
    ready = start_pipeline(tmp_path_factory.mktemp("pipeline"), getattr(request.module, "PIPELINE_ARGS", ()))
    yield ready
    stop_pipeline(ready)


@pytest.fixture
def standin(pipeline) -> Iterator[StandIn]:
    """Drive the Claude stand-in over its control endpoints; reset after each test."""
    control = StandIn(pipeline["standin_url"])
    yield control
    control.reset()


def pytest_terminal_summary(terminalreporter) -> None:
    """What modules listed for the reader without failing (e.g. grants no AWS call used)."""
    for title, lines in SUMMARIES:
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)
