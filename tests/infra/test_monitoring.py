"""PipelineMonitoring: the alarms the issue asks for, all on one topic, and the dashboard."""

from __future__ import annotations

from infra_support import lane_dlq_id, one, resources
from test_runtime_env import dispatcher_env, sweeper_env

from dispatcher import handler as dispatcher_handler
from stacks.config import PipelineConfig
from stacks.constructs import job_sweeper, webhook_dispatcher
from stacks.names import construct_id
from sweeper import handler as sweeper_handler


def monitoring_alarms(app):
    return {k: v["Properties"] for k, v in resources(app.service_json, "AWS::CloudWatch::Alarm").items()
            if k.startswith("Monitoring")}


def alarm(app, name):
    (props,) = [v for k, v in monitoring_alarms(app).items() if k.startswith(f"Monitoring{name}")]
    return props


def expected_alarm_count(app) -> int:
    """2 per worker lane and 1 per lane with an on-demand fallback; router errors and throttles, API 5xx; webhooks:
    dead letters, exhausted, dispatcher and sweep errors; the job sweeper: errors, jobs recovered; 3 of the batch
    collector when the batch lane is on (test_batch_collector.py); 2 of the intake (test_intake_infra.py); and the
    operator's 5: the router near its timeout, API 429s, table throttles, the webhook and intake queues' oldest message."""
    workers = app.config.worker_lanes()
    fallbacks = [w for w in workers if w.has_on_demand_fallback]
    return 2 * len(workers) + len(fallbacks) + 3 + 4 + 2 + (3 if app.config.lanes().batch_lane else 0) + 2 + 5


def test_every_monitoring_alarm_notifies_the_topic(default_app, gpu_app):
    for app in (default_app, gpu_app):
        topic_id, _ = one(app.service_json, "AWS::SNS::Topic")
        alarms = monitoring_alarms(app)
        assert len(alarms) == expected_alarm_count(app)
        for props in alarms.values():
            assert props["AlarmActions"] == [{"Ref": topic_id}]
            assert props["OKActions"] == [{"Ref": topic_id}]  # recovery is news too


def custom_metric_dimensions(props):
    """The dimensions of an alarm's metric in the pipeline's own namespace, or None for AWS's metrics."""
    if "Metrics" in props:
        stats = [query["MetricStat"]["Metric"] for query in props["Metrics"] if "MetricStat" in query]
        return stats[0]["Dimensions"] if stats[0]["Namespace"] == "HybridJobs" else None
    return props["Dimensions"] if props.get("Namespace") == "HybridJobs" else None


def test_every_alarm_on_a_custom_metric_reads_its_own_stage(gpu_app):
    custom = [dims for dims in map(custom_metric_dimensions, monitoring_alarms(gpu_app).values()) if dims is not None]
    assert len(custom) >= 3  # exhausted webhooks, jobs recovered, API 429s (and the batch lane's open batch)
    for dims in custom:
        assert {"Name": "stage", "Value": gpu_app.config.stage} in dims


def test_new_operator_alarms(default_app):
    timeout_ms = default_app.config.router_timeout_s * 1000
    assert (alarm(default_app, "RouterNearTimeout")["MetricName"], alarm(default_app, "RouterNearTimeout")["Threshold"]) == (
        "Duration", timeout_ms * 0.8)
    assert alarm(default_app, "WebhookOldestMessage")["Threshold"] == 1800
    assert alarm(default_app, "IntakeOldestMessage")["Threshold"] == 900
    throttles = alarm(default_app, "TableThrottles")
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in throttles["Metrics"] if "MetricStat" in m} == {"ThrottledRequests"}
    filters = resources(default_app.service_json, "AWS::Logs::MetricFilter")
    (throttled,) = [f["Properties"] for f in filters.values() if "429" in f["Properties"]["FilterPattern"]]
    assert throttled["MetricTransformations"][0]["Dimensions"] == [{"Key": "stage", "Value": "$.stage"}]


def test_tasks_that_fail_to_start_reach_the_topic_at_once(default_app):
    topic_id, _ = one(default_app.service_json, "AWS::SNS::Topic")
    rules = [r["Properties"] for r in resources(default_app.service_json, "AWS::Events::Rule").values()
             if "ECS Task State Change" in str(r["Properties"].get("EventPattern"))]
    (rule,) = rules
    assert rule["EventPattern"]["detail"]["stopCode"] == ["TaskFailedToStart"]
    assert rule["Targets"][0]["Arn"] == {"Ref": topic_id}


def test_dead_letters_alarm_at_the_first_message(gpu_app):
    for lane in gpu_app.config.lanes().worker_lanes():
        props = alarm(gpu_app, f"{construct_id(lane.name)}DeadLetters")
        assert (props["MetricName"], props["Threshold"], props["ComparisonOperator"]) == (
            "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")
        assert props["Dimensions"] == [
            {"Name": "QueueName", "Value": {"Fn::GetAtt": [lane_dlq_id(gpu_app, lane.name), "QueueName"]}}]


def test_oldest_message_alarm_allows_the_lane_job_timeout_plus_15_minutes(gpu_app):
    for lane in gpu_app.config.lanes().worker_lanes():
        props = alarm(gpu_app, f"{construct_id(lane.name)}OldestMessage")
        assert (props["MetricName"], props["Threshold"]) == ("ApproximateAgeOfOldestMessage", lane.time_limit_s + 900)


def test_router_errors_and_throttles_alarm(default_app):
    router_id, _ = one(default_app.service_json, "AWS::Lambda::Function", "RouterFunction")
    for name, metric in (("RouterErrors", "Errors"), ("RouterThrottles", "Throttles")):
        props = alarm(default_app, name)
        assert (props["MetricName"], props["Threshold"], props["Namespace"]) == (metric, 0, "AWS/Lambda")
        assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": router_id}}]


def test_webhook_dead_letters_alarm_at_the_first_message(default_app):
    props = alarm(default_app, "WebhookDeadLetters")
    assert (props["MetricName"], props["Threshold"], props["ComparisonOperator"]) == (
        "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")
    assert props["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["WebhooksDeliveryDeadLetterQueue5577D6B7", "QueueName"]}}]


def test_an_exhausted_delivery_alarms_on_the_metric_the_dispatcher_publishes(default_app):
    props = alarm(default_app, "WebhookDeliveriesExhausted")
    (query,) = props["Metrics"]
    stat = query["MetricStat"]
    assert (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], stat["Stat"], stat["Period"]) == (
        "HybridJobs", "WebhookDeliveriesExhausted", "Sum", 60)
    # Powertools Metrics (EMF) publishes its service as the one dimension, named "service".
    assert stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": "webhooks"}, {"Name": "stage", "Value": "dev"}]
    assert (props["Threshold"], props["ComparisonOperator"], props["TreatMissingData"]) == (
        0, "GreaterThanThreshold", "notBreaching")


def test_the_alarmed_metric_is_the_one_the_handler_emits(monkeypatch):
    env = {**dispatcher_env(PipelineConfig(stage="qa")), "WEBHOOK_SECRET": "whsec_x", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    dispatcher_handler.dispatcher.cache_clear()
    dispatcher_handler.dispatcher()  # sets the stage dimension from its settings, as on a cold start
    dispatcher_handler.dispatcher.cache_clear()
    assert dispatcher_handler.EXHAUSTED_METRIC == webhook_dispatcher.EXHAUSTED_METRIC == "WebhookDeliveriesExhausted"
    assert dispatcher_handler.metrics.namespace == webhook_dispatcher.NAMESPACE == "HybridJobs"
    assert dispatcher_handler.metrics.service == webhook_dispatcher.WEBHOOKS_SERVICE == "webhooks"
    # ... and that service is the dimension Powertools puts on every metric it flushes
    dispatcher_handler.metrics.add_metric(name="Probe", unit="Count", value=1)
    try:
        document = dispatcher_handler.metrics.serialize_metric_set()
    finally:
        dispatcher_handler.metrics.clear_metrics()
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    # CloudWatch names a metric by its set of dimensions: their order in the directive does not matter.
    assert (directive["Namespace"], sorted(directive["Dimensions"][0]), document["service"], document["stage"]) == (
        "HybridJobs", ["service", "stage"], "webhooks", "qa")


def test_dispatcher_and_sweep_errors_alarm(default_app):
    for name, prefix in (("WebhookDispatcherErrors", "WebhooksDispatcherFunction"),
                         ("WebhookSweepErrors", "WebhooksSweepFunction")):
        function_id, _ = one(default_app.service_json, "AWS::Lambda::Function", prefix)
        props = alarm(default_app, name)
        assert (props["MetricName"], props["Threshold"], props["Namespace"], props["Statistic"]) == (
            "Errors", 0, "AWS/Lambda", "Sum")
        assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]


def test_sweeper_errors_alarm(default_app):
    function_id, _ = one(default_app.service_json, "AWS::Lambda::Function", "SweeperFunction")
    props = alarm(default_app, "SweeperErrors")
    assert (props["MetricName"], props["Threshold"], props["Namespace"], props["Statistic"], props["Period"]) == (
        "Errors", 0, "AWS/Lambda", "Sum", 60)
    assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]


def test_jobs_recovered_by_the_sweeper_alarm_on_any_in_five_minutes(default_app):
    props = alarm(default_app, "JobsRecoveredBySweeper")
    (query,) = props["Metrics"]
    stat = query["MetricStat"]
    assert (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], stat["Stat"], stat["Period"]) == (
        "HybridJobs", "JobsRecoveredBySweeper", "Sum", 300)
    assert stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": "sweeper"}, {"Name": "stage", "Value": "dev"}]
    assert (props["Threshold"], props["ComparisonOperator"], props["TreatMissingData"], props["EvaluationPeriods"]) == (
        0, "GreaterThanThreshold", "notBreaching", 1)


def test_the_recovered_metric_is_the_one_the_sweeper_emits(monkeypatch):
    for key, value in {**sweeper_env(PipelineConfig(stage="qa")), "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    sweeper_handler.sweeper.cache_clear()
    sweeper_handler.sweeper()
    sweeper_handler.sweeper.cache_clear()
    assert sweeper_handler.RECOVERED_METRIC == job_sweeper.RECOVERED_METRIC == "JobsRecoveredBySweeper"
    assert sweeper_handler.metrics.namespace == job_sweeper.NAMESPACE == "HybridJobs"
    assert sweeper_handler.metrics.service == job_sweeper.SWEEPER_SERVICE == "sweeper"
    sweeper_handler.metrics.add_metric(name="Probe", unit="Count", value=1)
    try:
        document = sweeper_handler.metrics.serialize_metric_set()
    finally:
        sweeper_handler.metrics.clear_metrics()
        sweeper_handler.metrics.clear_default_dimensions()
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    # CloudWatch names a metric by its set of dimensions: their order in the directive does not matter.
    assert (directive["Namespace"], sorted(directive["Dimensions"][0]), document["service"], document["stage"]) == (
        "HybridJobs", ["service", "stage"], "sweeper", "qa")


def test_email_subscription_only_when_configured(default_app, gpu_app):
    assert not resources(default_app.service_json, "AWS::SNS::Subscription")
    _, subscription = one(gpu_app.service_json, "AWS::SNS::Subscription")
    assert (subscription["Properties"]["Protocol"], subscription["Properties"]["Endpoint"]) == (
        "email", "ops@example.com")


def test_topic_refuses_plain_http_publishers(default_app):
    _, policy = one(default_app.service_json, "AWS::SNS::TopicPolicy")
    deny, allow = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    # ... and EventBridge may publish (tasks that fail to start), nobody else
    assert (allow["Effect"], allow["Principal"], allow["Action"]) == ("Allow", {"Service": "events.amazonaws.com"}, "sns:Publish")


def test_dashboard_shows_every_lane(gpu_app):
    _, dashboard = one(gpu_app.service_json, "AWS::CloudWatch::Dashboard")
    body = str(dashboard["Properties"]["DashboardBody"])
    for title in ("API requests and errors", "Router", "cpu lane: backlog and tasks", "gpu lane: dead letters",
                  "webhooks: deliveries exhausted", "sweeper: jobs recovered", "sweeper: runs, errors and duration"):
        assert title in body
