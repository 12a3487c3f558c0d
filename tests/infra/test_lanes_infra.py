"""A lane is one entry of configuration: a ``lanes`` entry in the context synthesizes a queue, a worker service on the
image of its kind and a place in the lane document the functions read from their code, and the router routes to it.

The lane below is this module's own data; no other test names it, and every other infra test derives its lanes
from ``config.lanes()`` (pinned ids: test_logical_ids.py).
"""

from __future__ import annotations

import json

import pytest
from infra_support import (
    deployed_environment,
    lane_queue_id,
    one,
    resources,
    router_variables,
    synth,
    worker_resource_id,
    worker_variables,
)

from jobadapters.settings import RouterSettings, WorkerSettings
from jobcore.errors import UnroutableError
from jobcore.routing import RoutingPolicy, TaskProfile, decide
from stacks.config import ConfigError, PipelineConfig
from stacks.names import clashing_ids, construct_id

LARGE = {"name": "cpu-large", "memory_mb": 8192, "time_limit_s": 900, "concurrency": 8,
         "compute": {"kind": "fargate", "vcpu": 4, "memory_mb": 8192, "spot": True},
         "scaling": {"min_tasks": 0, "max_tasks": 2}, "image": "cpu"}
GB = 1024


def fargate_lane(name: str, memory_mb: int = 4096) -> dict:
    return {"name": name, "memory_mb": memory_mb, "time_limit_s": 600, "concurrency": 4,
            "compute": {"kind": "fargate", "vcpu": 1, "memory_mb": memory_mb, "spot": True}}


@pytest.fixture(scope="module")
def large_app():
    return synth(lanes=[LARGE])


def route(lanes, memory_mb: int) -> str:
    profile = TaskProfile(expected_duration_s=60, memory_mb=memory_mb, timeout_s=600)
    return decide(profile, expected_duration_s=60, policy=RoutingPolicy(lanes=lanes)).lane


class TestOneMoreLane:
    def test_it_gets_a_queue_and_a_worker_service_of_its_size(self, large_app):
        name = LARGE["name"]
        assert [lane.name for lane in large_app.config.lanes().worker_lanes()][-1] == name
        queue = large_app.service_json["Resources"][lane_queue_id(large_app, name)]["Properties"]
        assert queue["VisibilityTimeout"] == LARGE["time_limit_s"]
        definition = large_app.service_json["Resources"][worker_resource_id(large_app, name, "TaskDefinition")]["Properties"]
        assert (definition["Cpu"], definition["Memory"]) == ("4096", "8192")
        service = large_app.service_json["Resources"][worker_resource_id(large_app, name, "Service")]["Properties"]
        assert service["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}]
        target = large_app.service_json["Resources"][worker_resource_id(large_app, name, "TaskCount")]["Properties"]
        assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 2)

    def test_its_construct_ids_keep_the_parts_of_its_name(self, large_app):
        assert worker_resource_id(large_app, LARGE["name"], "Service").startswith("CpuLargeWorkerService")
        assert lane_queue_id(large_app, LARGE["name"]).startswith("CpuLargeLaneQueue")

    def test_lanes_of_one_image_kind_share_one_image(self, large_app):
        # Two Fargate lanes: one CPU image asset (a second one named like the first failed synth before).
        assert set(large_app.service.worker_images) == {"cpu"}
        images = {json.dumps(definition["Properties"]["ContainerDefinitions"][0]["Image"])
                  for definition in resources(large_app.service_json, "AWS::ECS::TaskDefinition").values()}
        assert len(images) == 1

    def test_the_router_routes_a_6_gb_job_to_it_and_refuses_a_9_gb_one(self, large_app):
        # The router's settings as deployed: its environment, and the lane document of its code.
        settings = RouterSettings.from_env(deployed_environment(router_variables(large_app), large_app))
        lanes = settings.lanes.lanes
        assert LARGE["name"] in settings.queue_urls
        assert route(lanes, 6 * GB) == LARGE["name"]
        with pytest.raises(UnroutableError, match="9216 MB"):
            route(lanes, 9 * GB)
        assert route(lanes, 1 * GB) != LARGE["name"]  # a job that fits the first CPU lane stays there

    def test_its_worker_parses_its_own_environment(self, large_app):
        settings = WorkerSettings.from_env(deployed_environment(worker_variables(large_app, LARGE["name"])))
        assert (settings.lane, settings.concurrency) == (LARGE["name"], LARGE["concurrency"])

    def test_it_is_one_entry_of_the_context_and_a_cli_string_reads_the_same(self):
        from_json = PipelineConfig.from_mapping({"lanes": json.dumps([LARGE])})
        assert from_json.lanes() == PipelineConfig.from_mapping({"lanes": [LARGE]}).lanes()
        assert from_json.to_context()["lanes"] == [LARGE]


class TestManyLanes:
    def test_eight_more_lanes_synthesize_and_the_router_environment_does_not_grow(self, default_app):
        many = synth(lanes=[fargate_lane(f"cpu-{n}") for n in range(8)])
        assert len(many.config.lanes().worker_lanes()) == 9
        default = default_app

        def plain_bytes(app):  # what is known at synth; deploy-time values (the queue URLs) are counted by AWS
            return sum(len(k) + len(v) for k, v in router_variables(app).items() if isinstance(v, str))

        assert plain_bytes(many) == plain_bytes(default)
        assert router_variables(many)["LANES_FILE"] == router_variables(default)["LANES_FILE"]
        assert "LANES" not in router_variables(many)
        # The document rides in the code asset instead, and names every lane.
        assert set(json.loads(many.service.code_files["lanes.json"])) == {lane.name for lane in many.config.lanes()}
        fallbacks = [worker for worker in many.config.worker_lanes() if worker.has_on_demand_fallback]
        assert len(resources(many.service_json, "AWS::ECS::Service")) == 9 + len(fallbacks)


class TestTheEntryIsChecked:
    @pytest.mark.parametrize(("entry", "message"), [
        ({**LARGE, "image": "tpu"}, r"'cpu-large'\)\.image: one of cpu, gpu"),
        ({**LARGE, "compute": {**LARGE["compute"], "vcpu": 3}}, "not a Fargate task size"),
        ({**LARGE, "memory_mb": 9000}, "memory_mb: more than the task's 8192 MB"),
        ({**LARGE, "colour": "red"}, "colour: not a known field"),
        ({**LARGE, "scaling": {"max_tasks": 0}}, r"scaling\.max_tasks = 0"),
        ({**LARGE, "scaling": {"min_tasks": 3, "max_tasks": 2}}, "min_tasks 3 above max_tasks 2"),
        ({**LARGE, "queued": False}, "a listed lane is a queued worker lane"),
        ({**LARGE, "name": "cpu"}, "lanes.cpu: given twice"),
        ({**LARGE, "compute": {"kind": "batch"}}, "queued"),
        ({"name": "gpu-big", "memory_mb": 8192, "time_limit_s": 900, "compute": {"kind": "ec2", "instance": "g5.xlarge"}},
         r"\.gpu: an ec2 lane runs on GPU instances"),
        ({"name": "gpu-big", "gpu": True, "memory_mb": 30000, "time_limit_s": 900, "task_cpu": 2048,
          "compute": {"kind": "ec2", "instance": "g5.xlarge"}}, r"'gpu-big'\): memory_mb and compute\.instance"),
        ("cpu-large", r"'lanes'\[0\]: expected an object"),
    ])
    def test_a_bad_entry_fails_naming_the_lane_and_the_field(self, entry, message):
        with pytest.raises(ConfigError, match=message):
            PipelineConfig.from_mapping({"lanes": [entry]})

    def test_names_that_make_the_same_construct_id_are_refused(self):
        with pytest.raises(ConfigError, match="'cpu-1' and 'cpu1' would name the same resources"):
            PipelineConfig.from_mapping({"lanes": [fargate_lane("cpu-1"), fargate_lane("cpu1")]})

    def test_a_gpu_lane_entry_gets_the_gpu_image_and_instances(self):
        entry = {"name": "gpu-big", "gpu": True, "memory_mb": 14336, "time_limit_s": 900, "task_cpu": 2048,
                 "compute": {"kind": "ec2", "instance": "g5.xlarge"}}
        worker = PipelineConfig.from_mapping({"lanes": [entry]}).worker_lane("gpu-big")
        assert (worker.image, worker.task_cpu, worker.max_tasks) == ("gpu", 2048, 1)


class TestConstructId:
    def test_it_joins_the_parts_of_a_name_capitalized(self):
        assert [construct_id(n) for n in ("cpu", "cpu-large", "gpu-2", "a-b-c")] == ["Cpu", "CpuLarge", "Gpu2", "ABC"]

    def test_it_finds_names_that_would_clash(self):
        assert clashing_ids(["cpu", "cpu-1", "cpu1", "gpu"]) == [("cpu-1", "cpu1")]
        assert clashing_ids(["cpu", "cpu-large", "cpularge"]) == []

    def test_the_entry_adds_only_resources_of_its_own(self, large_app):
        default_ids = set(synth(lanes=[]).service_json["Resources"])
        added = set(large_app.service_json["Resources"]) - default_ids
        assert added and all(k.startswith(construct_id(LARGE["name"])) or k.startswith("Monitoring") for k in added), \
            sorted(k for k in added if not k.startswith(construct_id(LARGE["name"])))
        one(large_app.service_json, "AWS::ECS::Service", f"{construct_id(LARGE['name'])}WorkerService")
