"""PipelineMonitoring: the alarms the issue asks for, all on one topic, and the dashboard."""

from __future__ import annotations

from infra_support import one, resources


def monitoring_alarms(app):
    return {k: v["Properties"] for k, v in resources(app.service_json, "AWS::CloudWatch::Alarm").items()
            if k.startswith("Monitoring")}


def alarm(app, name):
    (props,) = [v for k, v in monitoring_alarms(app).items() if k.startswith(f"Monitoring{name}")]
    return props


def test_every_monitoring_alarm_notifies_the_topic(gpu_app):
    topic_id, _ = one(gpu_app.service_json, "AWS::SNS::Topic")
    alarms = monitoring_alarms(gpu_app)
    assert len(alarms) == 7  # 2 per lane, router errors and throttles, API 5xx
    for props in alarms.values():
        assert props["AlarmActions"] == [{"Ref": topic_id}]


def test_dead_letters_alarm_at_the_first_message(gpu_app):
    for lane, dlq in (("Cpu", "CpuLaneDeadLetterQueue2974786C"), ("Gpu", "GpuLaneDeadLetterQueueA616FCCF")):
        props = alarm(gpu_app, f"{lane}DeadLetters")
        assert (props["MetricName"], props["Threshold"], props["ComparisonOperator"]) == (
            "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")
        assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}]


def test_oldest_message_alarm_allows_the_lane_job_timeout_plus_15_minutes(gpu_app):
    for lane, timeout in (("Cpu", gpu_app.config.cpu_job_timeout_s), ("Gpu", gpu_app.config.gpu_job_timeout_s)):
        props = alarm(gpu_app, f"{lane}OldestMessage")
        assert (props["MetricName"], props["Threshold"]) == ("ApproximateAgeOfOldestMessage", timeout + 900)


def test_router_errors_and_throttles_alarm(default_app):
    router_id, _ = one(default_app.service_json, "AWS::Lambda::Function", "RouterFunction")
    for name, metric in (("RouterErrors", "Errors"), ("RouterThrottles", "Throttles")):
        props = alarm(default_app, name)
        assert (props["MetricName"], props["Threshold"], props["Namespace"]) == (metric, 0, "AWS/Lambda")
        assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": router_id}}]


def test_email_subscription_only_when_configured(default_app, gpu_app):
    assert not resources(default_app.service_json, "AWS::SNS::Subscription")
    _, subscription = one(gpu_app.service_json, "AWS::SNS::Subscription")
    assert (subscription["Properties"]["Protocol"], subscription["Properties"]["Endpoint"]) == (
        "email", "ops@example.com")


def test_topic_refuses_plain_http_publishers(default_app):
    _, policy = one(default_app.service_json, "AWS::SNS::TopicPolicy")
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})


def test_dashboard_shows_every_lane(gpu_app):
    _, dashboard = one(gpu_app.service_json, "AWS::CloudWatch::Dashboard")
    body = str(dashboard["Properties"]["DashboardBody"])
    for title in ("API requests and errors", "Router", "cpu lane: backlog and tasks", "gpu lane: dead letters"):
        assert title in body
