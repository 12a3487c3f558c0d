"""The logical ids of the lanes' resources, pinned: the one place they are written out.

A renamed logical id is a replaced resource: a new queue loses the messages of the old one, a new service restarts
its tasks. The other infra tests find ids from the construct tree (infra_support.logical_id, lane_queue_id, ...),
so a lane added to cdk.json needs no test edit; its ids are whatever stacks.names.construct_id makes, and from
its first deploy on they must not change either: add them here then.
"""

from __future__ import annotations

import pytest
from infra_support import lane_dlq_id, lane_queue_id, logical_id

from stacks.names import construct_id

# Every resource of each lane, with the logical id it had before the lanes were built from the config
# (a renamed id is a replaced resource: a new queue loses its messages, a new service restarts its tasks).
PINNED_LANE_IDS = {
    "cpu": {
        "CpuLaneQueueD39CD4BF", "CpuLaneQueuePolicyE3D13F27", "CpuLaneDeadLetterQueue2974786C",
        "CpuLaneDeadLetterQueuePolicy045F8170", "CpuWorkerLogs311F66E4", "CpuWorkerSecurityGroupFDB8F463",
        "CpuWorkerService005B3AE0", "CpuWorkerTaskDefinition1461A621", "CpuWorkerTaskDefinitionExecutionRoleBC9354C0",
        "CpuWorkerTaskDefinitionExecutionRoleDefaultPolicy9BEE7B58", "CpuWorkerTaskDefinitionTaskRole3D2F2D1F",
        "CpuWorkerTaskDefinitionTaskRoleDefaultPolicyECE61591", "CpuWorkerTaskCount80DDFD4A",
        "CpuWorkerTaskCountScaleOnBacklogUpperAlarm9F02922E", "CpuWorkerTaskCountScaleOnBacklogUpperPolicy11945643",
        "CpuWorkerIdleAlarm69A7A929", "CpuWorkerScaleInWhenIdle19607330",
    },
    # Added with the on-demand fallback; pinned from then on.
    "cpu-fallback": {
        "CpuWorkerOnDemandService355A88B2", "CpuWorkerOnDemandTaskCountCD125BEB",
        "CpuWorkerOnDemandTaskCountScaleOutWhenJobsWaitUpperPolicyFD3EE40C",
        "CpuWorkerOnDemandTaskCountScaleOutWhenJobsWaitUpperAlarm003073AC", "CpuWorkerOnDemandScaleInWhenClearF43EE6C3",
        "CpuWorkerOnDemandClearAlarm5D09E3B3",
    },
    "gpu": {
        "GpuLaneQueue4B038172", "GpuLaneQueuePolicy77C8A2CD", "GpuLaneDeadLetterQueueA616FCCF",
        "GpuLaneDeadLetterQueuePolicy0275726A", "GpuWorkerLogs7FDB9D62", "GpuWorkerCapacityProvider43CF1E4E",
        "GpuWorkerInstanceRole19CFB072", "GpuWorkerInstanceRoleDefaultPolicy7B437044",
        "GpuWorkerInstanceSecurityGroup31FCFD99", "GpuWorkerInstancesASG550BFCB9", "GpuWorkerLaunchTemplate3C003375",
        "GpuWorkerLaunchTemplateProfileCCF8F7E0", "GpuWorkerService03CE4426", "GpuWorkerTaskDefinition00ED52AE",
        "GpuWorkerTaskDefinitionExecutionRole4AF69FF6", "GpuWorkerTaskDefinitionExecutionRoleDefaultPolicy9AABA5BF",
        "GpuWorkerTaskDefinitionTaskRole7CC150A8", "GpuWorkerTaskDefinitionTaskRoleDefaultPolicy2106708A",
        "GpuWorkerTaskCount78DC2508", "GpuWorkerTaskCountScaleOnBacklogUpperAlarm7C0DEE82",
        "GpuWorkerTaskCountScaleOnBacklogUpperPolicy2E33D78E", "GpuWorkerIdleAlarmE871F492",
        "GpuWorkerScaleInWhenIdle494369FD",
    },
}


@pytest.mark.parametrize(("app_name", "groups"), [("default_app", ("cpu", "cpu-fallback")),
                                                  ("gpu_app", ("cpu", "cpu-fallback", "gpu"))])
def test_lane_resources_keep_their_logical_ids(request, app_name, groups):
    app = request.getfixturevalue(app_name)
    lane_ids = {k for k in app.service_json["Resources"] if k.startswith(("CpuLane", "CpuWorker", "GpuLane", "GpuWorker"))}
    assert lane_ids == set().union(*(PINNED_LANE_IDS[group] for group in groups))


def test_the_batch_lane_and_the_webhook_queues_keep_their_logical_ids(default_app):
    assert (lane_queue_id(default_app, "batch"), lane_dlq_id(default_app, "batch")) == (
        "BatchLaneQueueF6C61517", "BatchLaneDeadLetterQueue5AC3974F")
    assert (logical_id(default_app, "Webhooks", "Delivery", "Queue"),
            logical_id(default_app, "Webhooks", "Delivery", "DeadLetterQueue")) == (
        "WebhooksDeliveryQueueAF018C07", "WebhooksDeliveryDeadLetterQueue5577D6B7")


def test_construct_ids_of_the_existing_lanes_are_what_capitalize_made():
    # The ids above were made with name.capitalize(); construct_id must give the same for these names.
    assert [construct_id(name) for name in ("cpu", "gpu", "batch", "inline")] == ["Cpu", "Gpu", "Batch", "Inline"]


@pytest.mark.parametrize(("app_name", "workers", "queued", "alarms"), [
    ("default_app", ["cpu"], ["cpu", "batch"], 22),
    ("gpu_app", ["cpu", "gpu"], ["cpu", "gpu", "batch"], 24),
])
def test_each_build_has_the_lanes_and_alarms_it_is_known_to_have(request, app_name, workers, queued, alarms):
    """The other infra tests derive their expected lanes and counts from the config (a lane added to cdk.json needs
    no test edit); this is where the built-in builds are written out, so a derivation that went empty, or a lane
    or an alarm that appeared or vanished, fails here."""
    from test_monitoring import monitoring_alarms

    app = request.getfixturevalue(app_name)
    assert [worker.name for worker in app.config.worker_lanes()] == workers
    assert [lane.name for lane in app.config.lanes().queued()] == queued
    assert len(monitoring_alarms(app)) == alarms
    # The built-in lanes' time limits are their own context keys (queue visibility and alarms derive from them).
    lanes = app.config.lanes()
    assert lanes.get("cpu").time_limit_s == app.config.cpu_job_timeout_s
    if "gpu" in workers:
        assert lanes.get("gpu").time_limit_s == app.config.gpu_job_timeout_s
