"""What keeping something warm costs a month, from the price file (``prices.json`` via :mod:`jobcore.pricing`).

Three ways to shorten a wait, each with a standing cost: a warm minimum of worker tasks on a lane (no idle-lane
wait at all), provisioned concurrency on the router (no cold start up to that many concurrent requests), SnapStart
on the router (a restored snapshot instead of an init). docs/deploy.md quotes these; the benches print them.
"""

from __future__ import annotations

from jobcore.costing import MB_PER_GB, SECONDS_PER_HOUR, worker_hourly
from jobcore.lanes import Compute
from jobcore.pricing import Prices


def warm_tasks_month(prices: Prices, compute: Compute, *, tasks: int = 1) -> float:
    """``tasks`` worker tasks of ``compute`` running all month (a lane's ``min_tasks``)."""
    return tasks * worker_hourly(prices, compute) * prices.hours_per_month


def provisioned_month(prices: Prices, *, memory_mb: int, arch: str, environments: int) -> float:
    """``environments`` of provisioned concurrency all month: the standing charge only (the invocations they serve
    are billed at :func:`provisioned_duration_discount` below the on-demand duration rate)."""
    gb_s = environments * memory_mb / MB_PER_GB * prices.hours_per_month * SECONDS_PER_HOUR
    return gb_s * prices.lambda_.provisioned_gb_second[arch]


def provisioned_duration_discount(prices: Prices, *, arch: str) -> float:
    """The fraction off the duration rate for invocations a provisioned environment serves."""
    return 1 - prices.lambda_.provisioned_duration_gb_second[arch] / prices.lambda_.gb_second[arch]


def snapstart_month(prices: Prices, *, memory_mb: int, restores: int, versions: int = 1) -> float:
    """SnapStart: the cache of ``versions`` active published versions all month, plus ``restores`` restores
    (one per cold start it serves)."""
    gb = memory_mb / MB_PER_GB
    cache = versions * gb * prices.hours_per_month * SECONDS_PER_HOUR * prices.lambda_.snapstart_cache_gb_second
    return cache + restores * gb * prices.lambda_.snapstart_restore_gb
