"""Lambda SnapStart for the router (``router_snapstart``): prime the snapshot, make each restore its own.

With SnapStart on, Lambda initializes the function once per published version, runs the before-snapshot hooks
and snapshots the environment; a cold start restores that snapshot instead of importing and building again.
:func:`prime` builds the job service (settings, the boto3 clients with their service models and endpoint rules,
the cost model) and walks the task catalogue's routing and costing, without a single network call: nothing in
the snapshot holds a connection or a credential (with SnapStart, Lambda hands the SDK its credentials through the
container credentials endpoint, fetched at the first call). :func:`restore` then re-seeds ``random`` and rebuilds
the service, so that no two restored environments share a lease owner name (``wiring.lease_owner``), a client or
a random sequence; the service models stay cached in the process, so the rebuild is cheap.

``snapshot_restore_py`` exists only in Lambda's Python runtimes: elsewhere (tests, the local runtime) nothing is
registered and the hooks are plain functions.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Protocol

log = logging.getLogger(__name__)


class _ServiceCache(Protocol):
    def __call__(self) -> Any: ...

    def cache_clear(self) -> None: ...


def prime(service: _ServiceCache) -> None:
    """Before the snapshot: build the service and run what every request runs, except AWS and Claude."""
    from jobcore.errors import MisconfiguredError

    try:
        jobs = service()
    except MisconfiguredError:  # logged by the service; every request will answer 503 anyway
        return
    jobs.tasks()
    if jobs.waker is not None:  # the idle-lane waker makes its ECS client on its first wake: load ECS's model now
        from jobadapters.ecs import ecs_client

        ecs_client()


def restore(service: _ServiceCache) -> None:
    """After a restore: a random sequence, a lease owner and clients of this environment's own."""
    random.seed()
    service.cache_clear()
    try:
        service()
    except Exception as error:  # noqa: BLE001 - the first request rebuilds it, and answers (or fails shut) as usual
        log.warning("the router could not rebuild its service after a SnapStart restore: %s", error)


def register(service: _ServiceCache) -> bool:
    """Registers :func:`prime` and :func:`restore` with Lambda's runtime hooks; False where there are none."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:  # not in Lambda's Python runtime
        return False
    register_before_snapshot(prime, service)
    register_after_restore(restore, service)
    return True
