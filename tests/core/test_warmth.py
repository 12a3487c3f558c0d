"""What keeping a lane or the router warm costs a month (jobcore.warmth), from the price file."""

from __future__ import annotations

import pytest

from jobcore.lanes import FargateCompute
from jobcore.pricing import default_prices
from jobcore.warmth import provisioned_duration_discount, provisioned_month, snapstart_month, warm_tasks_month

PRICES = default_prices()
TASK = FargateCompute(vcpu=1.0, memory_mb=2048, spot=True)


def test_the_price_file_prices_provisioned_concurrency_and_snapstart():
    lam = PRICES.lambda_
    for arch in ("arm64", "x86_64"):
        assert 0 < lam.provisioned_gb_second[arch] < lam.gb_second[arch]
        assert 0 < lam.provisioned_duration_gb_second[arch] < lam.gb_second[arch]
    assert lam.snapstart_cache_gb_second > 0 and lam.snapstart_restore_gb > 0


def test_a_warm_task_costs_its_hourly_rate_all_month_and_spot_costs_less():
    spot = warm_tasks_month(PRICES, TASK)
    on_demand = warm_tasks_month(PRICES, FargateCompute(vcpu=1.0, memory_mb=2048, spot=False))
    assert spot == pytest.approx(on_demand * (1 - PRICES.fargate.spot_discount))
    assert warm_tasks_month(PRICES, TASK, tasks=2) == pytest.approx(2 * spot)


def test_provisioned_concurrency_scales_with_memory_and_environments():
    one = provisioned_month(PRICES, memory_mb=1024, arch="arm64", environments=1)
    assert provisioned_month(PRICES, memory_mb=2048, arch="arm64", environments=2) == pytest.approx(4 * one)
    assert one == pytest.approx(PRICES.lambda_.provisioned_gb_second["arm64"] * PRICES.hours_per_month * 3600)
    assert 0 < provisioned_duration_discount(PRICES, arch="arm64") < 1


def test_snapstart_is_its_cache_plus_each_restore():
    idle = snapstart_month(PRICES, memory_mb=1024, restores=0)
    busy = snapstart_month(PRICES, memory_mb=1024, restores=1000)
    assert busy - idle == pytest.approx(1000 * PRICES.lambda_.snapstart_restore_gb)


def test_an_override_moves_the_figure():
    cheaper = default_prices().with_overrides({"lambda": {"snapstart_restore_gb": 0}})
    assert snapstart_month(cheaper, memory_mb=1024, restores=1000) == pytest.approx(snapstart_month(cheaper, memory_mb=1024, restores=0))
