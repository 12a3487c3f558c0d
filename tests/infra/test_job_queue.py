"""JobQueue: a lane's queue and its dead-letter queue, encrypted, SSL-only, sized to the lane's job timeout
(the webhook dispatcher's queue is one too: test_webhook_dispatcher.py)."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from infra_support import lane_dlq_id, lane_queue_id, resources

from stacks.constructs.job_queue import JobQueue

WEBHOOK_QUEUE_IDS = ("WebhooksDeliveryQueueAF018C07", "WebhooksDeliveryDeadLetterQueue5577D6B7")


@pytest.fixture(scope="module")
def lone_queue() -> Template:
    stack = cdk.Stack(cdk.App(), "QueueOnly")
    JobQueue(stack, "Lane", visibility_timeout=cdk.Duration.seconds(300), max_receive_count=3)
    return Template.from_stack(stack)


def test_queue_redrives_to_its_dlq_after_max_receive_count(lone_queue):
    template = lone_queue.to_json()["Resources"]
    queue_id, dlq_id = "LaneQueue", "LaneDeadLetterQueue"
    (queue,) = [v for k, v in template.items() if k.startswith(queue_id) and v["Type"] == "AWS::SQS::Queue"]
    (dlq,) = [k for k, v in template.items() if k.startswith(dlq_id) and v["Type"] == "AWS::SQS::Queue"]
    assert queue["Properties"] == {
        "SqsManagedSseEnabled": True,
        "VisibilityTimeout": 300,
        "ReceiveMessageWaitTimeSeconds": 20,
        "MessageRetentionPeriod": 4 * 86400,
        "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]}, "maxReceiveCount": 3},
    }
    assert template[dlq]["Properties"] == {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 14 * 86400}


def test_both_queues_deny_requests_without_tls(lone_queue):
    policies = resources(lone_queue.to_json(), "AWS::SQS::QueuePolicy")
    assert len(policies) == 2
    for policy in policies.values():
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize("app_name", ["default_app", "gpu_app"])
def test_each_queued_lane_has_a_queue_sized_to_its_job_timeout(request, app_name):
    app = request.getfixturevalue(app_name)
    queues = resources(app.service_json, "AWS::SQS::Queue")
    queued = app.config.lanes().queued()
    assert set(queues) == {logical_id for lane in queued for logical_id in (lane_queue_id(app, lane.name), lane_dlq_id(app, lane.name))} \
        | set(WEBHOOK_QUEUE_IDS)
    for lane in queued:
        properties = queues[lane_queue_id(app, lane.name)]["Properties"]
        if lane.batch:  # held only within a collector pass (test_batch_collector.py)
            assert properties["VisibilityTimeout"] == 360
        else:
            assert properties["VisibilityTimeout"] == lane.time_limit_s
        assert properties["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [lane_dlq_id(app, lane.name), "Arn"]}, "maxReceiveCount": app.config.max_receives}
