"""Waking an idle lane on moto's ECS: a queued job on a lane at zero raises its service's desired count to 1,
once; concurrent submits (threads of one router, several routers) never push it past 1; a service that has a
task, or an ECS that fails, is left alone and the submit still answers."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from moto import mock_aws

from jobadapters.ecs import EcsLaneWaker, LaneService
from jobadapters.settings import ConfigError, RouterSettings
from jobadapters.wiring import build_service, build_waker
from jobcore.requests import SubmitRequest
from jobcore.wake import GatedWaker, WakeGate
from local.gateway import LambdaContext, to_event
from router import handler as router
from tests.adapters.support import LANES
from tests.bodies import LONG
from tests.fakes import FakeClock

CLUSTER, SERVICE = "workers", "cpu-workers"
SERVICE_ARN = f"arn:aws:ecs:us-east-1:123456789012:service/{CLUSTER}/{SERVICE}"  # moto's account


class CountingEcs:
    """The ECS client, counting the calls the waker makes (thread-safe)."""

    def __init__(self, client: Any, *, describe: dict[str, Any] | None = None) -> None:
        self._client = client
        self._describe = describe
        self._lock = threading.Lock()
        self.calls: list[str] = []

    def describe_services(self, **kwargs: Any) -> Any:
        with self._lock:
            self.calls.append("DescribeServices")
        if self._describe is not None:  # what moto cannot show: tasks running while the desired count is 0
            return {"services": [{**self._client.describe_services(**kwargs)["services"][0], **self._describe}]}
        return self._client.describe_services(**kwargs)

    def update_service(self, **kwargs: Any) -> Any:
        with self._lock:
            self.calls.append("UpdateService")
        return self._client.update_service(**kwargs)


@pytest.fixture
def ecs(boto_session):
    with mock_aws():
        client = boto_session.client("ecs")
        client.create_cluster(clusterName=CLUSTER)
        client.register_task_definition(
            family="cpu-worker", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024", memory="2048",
            containerDefinitions=[{"name": "Worker", "image": "worker:latest", "essential": True}])
        client.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition="cpu-worker", desiredCount=0,
                              launchType="FARGATE")
        yield client


def desired(ecs) -> int:
    return ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["desiredCount"]


def services() -> dict[str, LaneService]:
    return {"cpu": LaneService(cluster=CLUSTER, service=SERVICE)}


# --- the adapter ----------------------------------------------------------------------------------------


def test_a_lane_at_zero_is_raised_to_one_task_once(ecs):
    counting = CountingEcs(ecs)
    waker = EcsLaneWaker(counting, services())

    assert waker.wake("cpu") is True
    assert desired(ecs) == 1
    assert counting.calls == ["DescribeServices", "UpdateService"]

    assert waker.wake("cpu") is False  # it has a task now: looked at, left alone
    assert counting.calls == ["DescribeServices", "UpdateService", "DescribeServices"]


def test_a_lane_already_scaled_out_is_never_lowered(ecs):
    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=3)
    counting = CountingEcs(ecs)

    assert EcsLaneWaker(counting, services()).wake("cpu") is False
    assert desired(ecs) == 3 and "UpdateService" not in counting.calls


@pytest.mark.parametrize("tasks", [{"runningCount": 1}, {"pendingCount": 1}, {"status": "DRAINING"}])
def test_a_service_with_a_task_or_not_active_is_left_alone(ecs, tasks):
    counting = CountingEcs(ecs, describe=tasks)

    assert EcsLaneWaker(counting, services()).wake("cpu") is False
    assert desired(ecs) == 0 and counting.calls == ["DescribeServices"]


def test_a_lane_without_a_service_is_not_woken(ecs):
    counting = CountingEcs(ecs)

    assert EcsLaneWaker(counting, services()).wake("gpu") is False
    assert counting.calls == []


@pytest.mark.parametrize("where", [LaneService(cluster="no-such-cluster", service=SERVICE),
                                   LaneService(cluster=CLUSTER, service="no-such-service")])
def test_an_ecs_error_or_a_missing_service_is_swallowed(ecs, where, caplog):
    assert EcsLaneWaker(ecs, {"cpu": where}).wake("cpu") is False
    assert "cpu" in caplog.text
    assert desired(ecs) == 0


def test_the_waker_s_own_client_makes_one_bounded_attempt(ecs):
    waker = build_waker(services(), LANES)
    inner = waker._inner  # type: ignore[union-attr]
    assert inner._client is None  # made on the first wake: a router that only reads never loads ECS's model
    client = inner.client

    assert client.meta.config.retries["total_max_attempts"] == 1
    assert client.meta.config.connect_timeout <= 1 and client.meta.config.read_timeout <= 2


def test_no_lane_services_means_no_waker():
    assert build_waker({}, LANES) is None


# --- concurrent submits ---------------------------------------------------------------------------------


def run_at_once(count: int, work) -> None:
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_concurrent_submits_of_one_router_wake_the_lane_once(ecs, aws, clients, router_settings):
    service = build_service(router_settings, clients)
    counting = CountingEcs(ecs)
    service.waker = build_waker(router_settings.lane_services, LANES, client=counting)

    run_at_once(8, lambda i: service.submit(SubmitRequest(task=LONG["task"], input=LONG["input"]), tenant_id="tenant-a"))

    assert desired(ecs) == 1
    assert counting.calls == ["DescribeServices", "UpdateService"]  # one attempt in the gate's window


def test_routers_waking_one_lane_at_once_never_take_it_past_one_task(ecs):
    counting = CountingEcs(ecs)
    routers = [GatedWaker(EcsLaneWaker(counting, services()), lanes=LANES, gate=WakeGate(monotonic=FakeClock().monotonic))
               for _ in range(6)]  # six processes: six gates

    run_at_once(len(routers), lambda i: routers[i].wake("cpu"))

    assert desired(ecs) == 1
    assert counting.calls.count("DescribeServices") == 6
    assert 1 <= counting.calls.count("UpdateService") <= 6  # each sets 1, never more


# --- through the router --------------------------------------------------------------------------------


@pytest.fixture
def router_settings(aws, monkeypatch) -> RouterSettings:
    env = {
        "STAGE": "test", "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket,
        "LANES": json.dumps(LANES.to_dict()), "PRICE_OVERRIDES": "{}",
        "LANE_QUEUE_URLS": json.dumps({"cpu": aws.queue_urls["cpu"]}), "WEBHOOK_QUEUE_URL": aws.webhook_queue_url,
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "MODEL_ID": "claude-test",
        "LANE_SERVICES": json.dumps({"cpu": SERVICE_ARN}),  # as the CDK app sets it: the ARN names the cluster
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return RouterSettings.from_env(env)


def test_a_queued_post_through_the_router_wakes_the_idle_lane(ecs, aws, router_settings):
    router.service.cache_clear()
    try:
        answer = router.handler(to_event("POST", "/v1/jobs", {"x-api-key": "tenant-a-key", "content-type": "application/json"},
                                         json.dumps(LONG)), LambdaContext(30))
    finally:
        router.service.cache_clear()

    assert answer["statusCode"] == 202
    assert desired(ecs) == 1


def test_lane_services_name_only_enabled_worker_lanes(router_settings):
    env = {**_env_of(router_settings), "LANE_SERVICES": json.dumps({"batch": SERVICE_ARN})}
    with pytest.raises(ConfigError, match="LANE_SERVICES"):
        RouterSettings.from_env(env)
    for bad in ({"cluster": CLUSTER}, "", 3):
        env["LANE_SERVICES"] = json.dumps({"cpu": bad})
        with pytest.raises(ConfigError, match="LANE_SERVICES"):
            RouterSettings.from_env(env)


def test_a_long_format_service_arn_names_its_cluster(router_settings):
    assert router_settings.lane_services == {"cpu": LaneService(cluster=CLUSTER, service=SERVICE_ARN)}
    assert LaneService.from_arn("cpu-workers") == LaneService(cluster=None, service="cpu-workers")
    assert LaneService.from_arn("arn:aws:ecs:us-east-1:123456789012:service/cpu-workers").cluster is None  # short format


def test_without_lane_services_the_router_wakes_nothing(router_settings):
    env = {key: value for key, value in _env_of(router_settings).items() if key != "LANE_SERVICES"}
    assert RouterSettings.from_env(env).lane_services == {}


def _env_of(settings: RouterSettings) -> dict[str, str]:
    import os

    return {key: os.environ[key] for key in RouterSettings.ENV | RouterSettings.LOCAL_ENV if key in os.environ}
