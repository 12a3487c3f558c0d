"""Fixtures shared by the suites that drive the local pipeline over HTTP (tests/e2e, tests/sdk).

``pipeline``: a local pipeline in its own process for each module that asks for one (module scope):
``python -m local.serve`` with a 4 s inline budget and a quick webhook schedule, plus whatever the
module's ``PIPELINE_ARGS`` adds, and the module's ``PIPELINE_ENV`` in its processes' environment.
``tests.e2e.harness.start_pipeline`` starts others (a module may need one with other settings).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from botocore import loaders

from local import moto_transactions
from tests.e2e.harness import SUMMARIES, StandIn, start_pipeline, stop_pipeline


def _share_botocore_data() -> None:
    """botocore reads its JSON data files (endpoints, each service's model) once per session, and many tests build a
    session of their own: the router's and workers' wiring per test (its settings change), ``mock_aws`` per test. A
    module of them spent half its time parsing the same files again (tests/adapters/test_router_inputs: 10 clients a
    test, 24 ms each). The test processes share what was read: the files do not change while they run, and within a
    session botocore already hands every client the same loaded data."""
    read: dict[tuple[str, tuple[str, ...]], Any] = {}
    load = loaders.Loader.load_data_with_path

    def load_data_with_path(self: loaders.Loader, name: str) -> Any:
        key = (name, tuple(self.search_paths))
        if key not in read:
            read[key] = load(self, name)
        return read[key]

    loaders.Loader.load_data_with_path = load_data_with_path  # type: ignore[method-assign]


_share_botocore_data()


def _share_tls_context() -> None:
    """Every ``anthropic`` SDK client builds an HTTP client whose TLS context loads the system's CA bundle: 43 ms of
    ``load_verify_locations`` per client, though every client of the tests talks plain HTTP to 127.0.0.1 (the
    stand-in). The tests make SDK clients by the thousand (each stand-in test several, each router or worker the
    adapters build one), so the test processes share one default context: it is built from files that do not change
    while they run, and a context is made to serve many connections."""
    import functools

    import httpcore2

    httpcore2.default_ssl_context = functools.cache(httpcore2.default_ssl_context)


_share_tls_context()

# Python's cyclic garbage collector runs a full collection whenever the objects that survived earlier ones grow by a
# quarter, and each walks every object alive: in a test process that is everything imported, every collected test,
# every moto backend still referenced. Over the router's three adapter modules it was 9.8 s of 60 (43 full
# collections of ~180 ms). Collections are rarer here (a young generation of 50,000 objects, not 700), and what
# exists once collection is done (imports, test items) is frozen out of them (``pytest_collection_finish``): 2.5 s.
# Garbage is still collected, later; a test process's peak memory grew by ~40 MB.
gc.set_threshold(50_000, 20, 10)


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()

# moto's TransactWriteItems copies whole tables and puts them back on a refusal: under a worker's concurrent threads
# (the adapter tests run pollers over mock_aws) that raced other writes. Its replacement answers as moto's does.
moto_transactions.install()

# The tests that start a local pipeline: under xdist, one unit of work (a module that asks for the ``pipeline``
# fixture elsewhere stops the collection, naming it).
PIPELINE_DIRS = ("tests/e2e/", "tests/sdk/test_sdk_cli.py", "tests/sdk/test_sdk_client.py", "tests/test_docs_commands.py")
PIPELINE_UNIT = "local-pipeline"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``make test``'s ``--dist loadfile``: a test file per process at a time, except that the files that run
    a local pipeline go to one process together, so that two pipelines never run at once: two (a dozen
    processes each) on a loaded 2-core machine starved a router past API Gateway's 29 s (504s). (xdist's
    own ``loadgroup`` cannot say so: it renames test ids, which pytest 9 no longer lets it do.)"""
    from xdist.scheduler import LoadFileScheduling

    class PipelinesInOneProcess(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return PIPELINE_UNIT if scope.startswith(PIPELINE_DIRS) else scope

    return PipelinesInOneProcess(config, log) if config.getoption("dist") == "loadfile" else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, the pipeline tests first: the longest unit, mostly waiting on real time, starts at
    once while the other processes run the rest (xdist hands out units in collection order)."""
    strays = sorted({item.nodeid.split("::")[0] for item in items
                     if "pipeline" in getattr(item, "fixturenames", ()) and not item.nodeid.startswith(PIPELINE_DIRS)})
    if strays:
        raise pytest.UsageError(f"these modules start a local pipeline outside PIPELINE_DIRS (tests/conftest.py): {strays}")
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: not item.nodeid.startswith(PIPELINE_DIRS))  # stable: files keep their order


@pytest.fixture(scope="module")
def pipeline(request, tmp_path_factory) -> Iterator[dict[str, Any]]:
    ready = start_pipeline(tmp_path_factory.mktemp("pipeline"), getattr(request.module, "PIPELINE_ARGS", ()),
                           env=getattr(request.module, "PIPELINE_ENV", None))
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
