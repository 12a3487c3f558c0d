"""Fixtures shared by the suites that drive the local pipeline over HTTP (tests/e2e, tests/sdk).

``pipeline``: a local pipeline in its own process for each module that asks for one (module scope):
``python -m local.serve`` with a 4 s inline budget and a quick webhook schedule, plus whatever the
module's ``PIPELINE_ARGS`` adds. ``tests.e2e.harness.start_pipeline`` starts others (a module may need
one with other settings).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import SUMMARIES, StandIn, start_pipeline, stop_pipeline


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
