"""WorkerService on both compute profiles: the container contract, permissions, capacity and scaling."""

from __future__ import annotations

import json

import pytest
from aws_cdk import aws_applicationautoscaling as appscaling
from infra_support import (
    GPU_OVERRIDES,
    actions,
    attached_managed_policies,
    context,
    env_names,
    inline_statements,
    is_job_data_policy,
    lane_queue_id,
    one,
    resources,
    router_variables,
    statements_on,
    synth,
    worker_resource_id,
    worker_variables,
)

from jobadapters.settings import WorkerSettings
from jobcore.limits import CPU_UNITS_PER_VCPU, ECS_MAX_STOP_TIMEOUT_S
from stacks.config import PipelineConfig
from stacks.constructs.compute import FargateSpot
from stacks.constructs.worker_service import backlog_steps
from stacks.names import construct_id
from tools.iam_check import Account, Request, Templates

WEBHOOK_QUEUE = "WebhooksDeliveryQueueAF018C07"
# Each (app fixture, worker lane) its config has, read from the same context the fixtures synthesize.
LANES = [(app_name, lane.name) for app_name, overrides in (("default_app", {}), ("gpu_app", GPU_OVERRIDES))
         for lane in PipelineConfig.from_mapping(context(**overrides)).lanes().worker_lanes()]


def fallback_service_id(app) -> str:
    """The CPU lane's on-demand fallback (worker_spot_fallback_after_s, on by default): a second service."""
    return worker_resource_id(app, "cpu", "OnDemandService")


def task_definition(app, lane):
    return one(app.service_json, "AWS::ECS::TaskDefinition", f"{construct_id(lane)}WorkerTaskDefinition")[1]["Properties"]


def container(app, lane):
    (definition,) = task_definition(app, lane)["ContainerDefinitions"]
    return definition


def queue_properties(app, lane):
    return app.service_json["Resources"][lane_queue_id(app, lane)]["Properties"]


@pytest.fixture(params=LANES, ids=[f"{a}-{lane}" for a, lane in LANES])
def lane_app(request):
    app_name, lane = request.param
    return request.getfixturevalue(app_name), lane


def test_env_is_exactly_what_worker_settings_read(lane_app):
    app, lane = lane_app
    # EMBEDDING_MODEL_URI only where the model comes from S3: the GPU lane, with embedding_model_s3_uri set.
    model_env = WorkerSettings.MODEL_ENV if app.config.lanes().get(lane).gpu and app.config.embedding_model_s3_uri else frozenset()
    assert env_names(container(app, lane)["Environment"]) == WorkerSettings.ENV | model_env


def test_secrets_are_ecs_secrets_from_secrets_manager_never_plain_values(lane_app):
    app, lane = lane_app
    definition = container(app, lane)
    assert {s["Name"] for s in definition["Secrets"]} == WorkerSettings.SECRETS
    for secret in definition["Secrets"]:
        assert "Secrets" in json.dumps(secret["ValueFrom"])  # an ARN of the data stack's secrets
    assert not env_names(definition["Environment"]) & WorkerSettings.SECRETS
    assert WorkerSettings.SECRETS == {"ANTHROPIC_API_KEY"}


def test_workers_no_longer_see_the_webhook_signing_secret(lane_app):
    # Only the webhook dispatcher signs webhooks: not the container, nor its task or execution role.
    app, lane = lane_app
    props = task_definition(app, lane)
    assert "WebhookSigningSecret" not in json.dumps(props)
    for role in ("TaskRoleArn", "ExecutionRoleArn"):
        role_id = props[role]["Fn::GetAtt"][0]
        assert "WebhookSigningSecret" not in json.dumps(inline_statements(app.service_json, role_id))


def test_env_wires_the_lane_queue_and_matches_its_redrive_and_visibility(lane_app):
    app, lane = lane_app
    env = worker_variables(app, lane)
    queue = queue_properties(app, lane)
    assert env["LANE"] == lane
    assert env["QUEUE_URL"] == {"Ref": lane_queue_id(app, lane)}
    assert env["MAX_RECEIVES"] == str(queue["RedrivePolicy"]["maxReceiveCount"]) == str(app.config.max_receives)
    assert env["VISIBILITY_TIMEOUT_S"] == str(queue["VisibilityTimeout"])
    assert queue["VisibilityTimeout"] == app.config.lanes().get(lane).time_limit_s
    assert env["WEBHOOK_QUEUE_URL"] == {"Ref": WEBHOOK_QUEUE}  # finished jobs' webhooks are handed over there
    # How long the bucket keeps a result, for the job's result_expires_at: the router's value, the config's.
    assert env["RESULT_RETENTION_DAYS"] == str(app.config.result_retention_days) == router_variables(app)[
        "RESULT_RETENTION_DAYS"]


def test_env_carries_the_same_lanes_and_prices_as_the_router(lane_app):
    app, lane = lane_app
    env, router_env = worker_variables(app, lane), router_variables(app)
    # The router reads the same lane document from its code (LANES_FILE); the worker gets it inline.
    assert env["LANES"] == app.service.code_files[router_env["LANES_FILE"]]
    assert env["PRICE_OVERRIDES"] == router_env["PRICE_OVERRIDES"]
    lanes = json.loads(env["LANES"])
    assert lanes == app.config.lanes().to_dict()
    # The worker's concurrency is its lane's, read from LANES (there is no separate variable for it).
    assert lanes[lane]["concurrency"] == app.config.worker_lane(lane).lane.concurrency
    assert json.loads(env["PRICE_OVERRIDES"]) == app.config.price_overrides


def test_each_queued_lane_and_only_those_has_a_worker_service(default_app, gpu_app):
    for app in (default_app, gpu_app):
        lanes = [lane.name for lane in app.config.lanes().worker_lanes()]
        fallbacks = [w.name for w in app.config.worker_lanes() if w.has_on_demand_fallback]
        services = resources(app.service_json, "AWS::ECS::Service")
        assert set(services) == ({worker_resource_id(app, lane, "Service") for lane in lanes}
                                 | {worker_resource_id(app, lane, "OnDemandService") for lane in fallbacks})
        definitions = resources(app.service_json, "AWS::ECS::TaskDefinition")
        assert set(definitions) == {worker_resource_id(app, lane, "TaskDefinition") for lane in lanes}
        assert {worker_variables(app, lane)["LANE"] for lane in lanes} == set(lanes)


def test_container_drains_for_120_s_and_logs_to_its_log_group(lane_app):
    app, lane = lane_app
    definition = container(app, lane)
    assert definition["StopTimeout"] == ECS_MAX_STOP_TIMEOUT_S == 120
    assert definition["LogConfiguration"]["LogDriver"] == "awslogs"
    log_group_id = definition["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    assert log_group_id == worker_resource_id(app, lane, "Logs")


def test_task_role_consumes_its_own_queue_protects_itself_and_cannot_delete_the_stores(lane_app):
    app, lane = lane_app
    role_id = task_definition(app, lane)["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = inline_statements(app.service_json, role_id)
    on_queue = actions(statements_on(statements, {"Fn::GetAtt": [lane_queue_id(app, lane), "Arn"]}))
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= on_queue
    other_lanes = [lane_queue_id(app, other.name) for other in app.config.lanes().queued() if other.name != lane]
    assert not any(q in json.dumps(s["Resource"]) for s in statements for q in other_lanes)
    assert {"ecs:UpdateTaskProtection", "ecs:GetTaskProtection"} <= actions(statements)
    # It hands finished jobs' webhooks over to the dispatcher's queue: send, never receive.
    on_webhooks = actions(statements_on(statements, {"Fn::GetAtt": [WEBHOOK_QUEUE, "Arn"]}))
    assert on_webhooks == {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    granted = actions(statements)
    # Job data only through the data policy; the GPU lane may also read its embedding model's S3 prefix.
    model_statements = [s for s in statements if "my-models" in json.dumps(s["Resource"])]
    assert bool(model_statements) == (app.config.lanes().get(lane).gpu and bool(app.config.embedding_model_s3_uri))
    assert actions(model_statements) <= {"s3:GetObject", "s3:ListBucket"}
    assert not {a for a in actions([s for s in statements if s not in model_statements])
                if a.startswith(("dynamodb:", "s3:"))}
    assert not {a for a in granted if "Delete" in a and a != "sqs:DeleteMessage"}
    (managed,) = attached_managed_policies(app.service_json, role_id)
    assert is_job_data_policy(managed)  # its actions: test_storage.py (no DeleteTable, no DeleteBucket)


def test_task_role_may_put_a_job_back_on_its_own_lane_and_no_other(lane_app):
    """A job waiting for an overloaded model goes back on its lane as a new, delayed message (jobcore.runner): without
    SendMessage on its own queue, every wait was AccessDenied in AWS (issue 20). Evaluated with tools.iam_check."""
    app, lane = lane_app
    where = Account(account="111122223333", region="us-east-1")
    templates = Templates({app.data.stack_name: app.data_json, app.service.stack_name: app.service_json}, where)
    role = templates.role(app.service.stack_name, task_definition(app, lane)["TaskRoleArn"]["Fn::GetAtt"][0])
    queues = {other.name: where.arn("sqs", lane_queue_id(app, other.name)) for other in app.config.lanes().queued()}
    assert {other: role.decide(Request("sqs:SendMessage", arn)).allowed for other, arn in queues.items()} == \
        {other: other == lane for other in queues}


def test_task_protection_is_limited_to_tasks_of_this_cluster(default_app):
    role_id = task_definition(default_app, "cpu")["TaskRoleArn"]["Fn::GetAtt"][0]
    (statement,) = [s for s in inline_statements(default_app.service_json, role_id)
                    if "ecs:UpdateTaskProtection" in s["Action"]]
    assert {"Ref": "WorkersCluster2E9BA3A7"} in statement["Resource"]["Fn::Join"][1]


def test_cpu_worker_is_fargate_spot_first_x86_and_sized_from_config(default_app):
    props, lane = task_definition(default_app, "cpu"), default_app.config.lanes().get("cpu")
    assert (props["Cpu"], props["Memory"]) == (str(default_app.config.worker_cpu),
                                               str(default_app.config.worker_memory_mb))
    assert (props["Cpu"], props["Memory"]) == (str(int(lane.compute.vcpu * CPU_UNITS_PER_VCPU)),
                                               str(lane.compute.memory_mb))
    assert lane.compute.spot and lane.compute.arch == "x86_64"
    assert props["RuntimePlatform"]["CpuArchitecture"] == "X86_64"
    service = default_app.service_json["Resources"][worker_resource_id(default_app, "cpu", "Service")]
    assert service["Properties"]["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}]
    assert service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "ENABLED"


def test_an_on_demand_base_puts_that_many_tasks_on_regular_fargate(gpu_app):
    service = gpu_app.service_json["Resources"][worker_resource_id(gpu_app, "cpu", "Service")]
    # GPU_OVERRIDES: worker_on_demand_base 1, worker_on_demand_weight 1 (beyond the base, half on each)
    assert service["Properties"]["CapacityProviderStrategy"] == [
        {"CapacityProvider": "FARGATE_SPOT", "Weight": 1}, {"CapacityProvider": "FARGATE", "Base": 1, "Weight": 1}]
    assert [s.capacity_provider for s in FargateSpot(cpu=256, memory_mb=512).capacity_provider_strategies()] == [
        "FARGATE_SPOT"]
    base_only = FargateSpot(cpu=256, memory_mb=512, on_demand_base=2).capacity_provider_strategies()
    assert [(s.capacity_provider, s.base, s.weight) for s in base_only] == [("FARGATE_SPOT", None, 1), ("FARGATE", 2, 0)]
    weight_only = FargateSpot(cpu=256, memory_mb=512, on_demand_weight=3).capacity_provider_strategies()
    assert [(s.capacity_provider, s.base, s.weight) for s in weight_only] == [("FARGATE_SPOT", None, 1), ("FARGATE", None, 3)]


def test_worker_security_groups_admit_nothing_and_allow_only_https_out(gpu_app):
    groups = {k: v for k, v in resources(gpu_app.service_json, "AWS::EC2::SecurityGroup").items()
              if "Worker" in k}
    # One per worker lane: a Fargate service's, or a GPU lane's instances'.
    assert len(groups) == len(gpu_app.config.lanes().worker_lanes())
    for group in groups.values():
        assert "SecurityGroupIngress" not in group["Properties"]
        assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in group["Properties"]["SecurityGroupEgress"]] == [
            ("tcp", 443, 443)]


def test_cluster_has_container_insights(default_app):
    _, cluster = one(default_app.service_json, "AWS::ECS::Cluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["Properties"]["ClusterSettings"]


class TestScaling:
    def scaling(self, app, lane):
        """The lane's own service's scaling (the on-demand fallback's: TestOnDemandFallback)."""
        prefix = f"{construct_id(lane)}Worker"
        target = one(app.service_json, "AWS::ApplicationAutoScaling::ScalableTarget", f"{prefix}TaskCount")
        policies = {k: v for k, v in resources(app.service_json, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
                    if k.startswith(prefix) and not k.startswith(f"{prefix}OnDemand")}
        alarms = {k: v for k, v in resources(app.service_json, "AWS::CloudWatch::Alarm").items()
                  if k.startswith(prefix) and not k.startswith(f"{prefix}OnDemand")}
        return target, policies, alarms

    def test_no_cpu_based_policy_only_steps_on_the_backlog(self, lane_app):
        app, lane = lane_app
        _, policies, _ = self.scaling(app, lane)
        assert len(policies) == 2
        assert {p["Properties"]["PolicyType"] for p in policies.values()} == {"StepScaling"}

    def test_idle_lane_runs_zero_tasks_and_one_message_starts_one_within_a_minute(self, default_app):
        (target_id, target), policies, alarms = self.scaling(default_app, "cpu")
        assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (
            0, default_app.config.worker_max_tasks)
        (scale_out_alarm,) = [a["Properties"] for k, a in alarms.items() if "UpperAlarm" in k]
        assert scale_out_alarm["Threshold"] == 1
        assert scale_out_alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert scale_out_alarm["EvaluationPeriods"] == 1
        assert {m["MetricStat"]["Period"] for m in scale_out_alarm["Metrics"] if "MetricStat" in m} == {60}
        assert {m["MetricStat"]["Metric"]["MetricName"] for m in scale_out_alarm["Metrics"] if "MetricStat" in m} == {
            "ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"}
        # SQS omits the in-flight count while nothing is in flight: the sum must not go missing then.
        (expression,) = [m["Expression"] for m in scale_out_alarm["Metrics"] if "Expression" in m]
        assert expression == "FILL(visible, 0) + FILL(inflight, 0)"
        (scale_out,) = [p["Properties"] for k, p in policies.items() if "UpperPolicy" in k]
        config = scale_out["StepScalingPolicyConfiguration"]
        assert config["AdjustmentType"] == "ExactCapacity"
        assert config["StepAdjustments"][0] == {
            "MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": default_app.config.worker_concurrency,
            "ScalingAdjustment": 1}
        assert config["StepAdjustments"][-1]["ScalingAdjustment"] == default_app.config.worker_max_tasks
        assert scale_out["ScalingTargetId"] == {"Ref": target_id}

    def test_after_five_idle_minutes_the_lane_goes_back_to_its_minimum(self, default_app):
        _, policies, alarms = self.scaling(default_app, "cpu")
        (idle,) = [a["Properties"] for k, a in alarms.items() if "IdleAlarm" in k]
        assert (idle["Threshold"], idle["ComparisonOperator"], idle["EvaluationPeriods"]) == (
            0, "LessThanOrEqualToThreshold", 5)
        (to_min,) = [p["Properties"] for k, p in policies.items() if "ScaleInWhenIdle" in k]
        assert to_min["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
            {"MetricIntervalUpperBound": 0, "ScalingAdjustment": 0}]
        assert idle["AlarmActions"] == [{"Ref": next(k for k in policies if "ScaleInWhenIdle" in k)}]


@pytest.mark.parametrize(("concurrency", "max_tasks", "expected"), [
    (8, 4, [(1, 9, 1), (9, 17, 2), (17, 25, 3), (25, None, 4)]),
    (8, 1, [(1, 2, 1), (2, None, 1)]),
    (1, 2, [(1, 2, 1), (2, None, 2)]),
])
def test_backlog_steps_give_one_task_per_concurrency_jobs(concurrency, max_tasks, expected):
    steps: list[appscaling.ScalingInterval] = backlog_steps(concurrency, max_tasks)
    assert [(s.lower, s.upper, s.change) for s in steps] == expected


class TestGpuLane:
    def test_asg_starts_at_zero_on_the_pinned_gpu_ami_with_imdsv2_and_encrypted_disk(self, gpu_app):
        _, group = one(gpu_app.service_json, "AWS::AutoScaling::AutoScalingGroup")
        assert (group["Properties"]["MinSize"], group["Properties"]["MaxSize"]) == (
            "0", str(gpu_app.config.gpu_max_tasks))
        _, template = one(gpu_app.service_json, "AWS::EC2::LaunchTemplate")
        data = template["Properties"]["LaunchTemplateData"]
        assert data["InstanceType"] == gpu_app.config.gpu_instance_type
        assert data["InstanceType"] == gpu_app.config.lanes().get("gpu").compute.instance
        assert data["MetadataOptions"] == {"HttpPutResponseHopLimit": 1, "HttpTokens": "required"}
        assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
        parameter = gpu_app.service_json["Parameters"][data["ImageId"]["Ref"]]
        assert parameter["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
        assert parameter["Default"] == (
            f"/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/{gpu_app.config.gpu_ami_release}/image_id")

    def test_capacity_provider_cannot_hang_stack_deletion(self, gpu_app):
        _, provider = one(gpu_app.service_json, "AWS::ECS::CapacityProvider")
        asg = provider["Properties"]["AutoScalingGroupProvider"]
        assert asg["ManagedTerminationProtection"] == "DISABLED"
        assert asg["ManagedScaling"]["Status"] == "ENABLED"
        _, group = one(gpu_app.service_json, "AWS::AutoScaling::AutoScalingGroup")
        assert not group["Properties"].get("NewInstancesProtectedFromScaleIn")

    def test_task_asks_for_one_gpu_on_ec2(self, gpu_app):
        props = task_definition(gpu_app, "gpu")
        assert props["RequiresCompatibilities"] == ["EC2"]
        assert container(gpu_app, "gpu")["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
        assert container(gpu_app, "gpu")["Memory"] == gpu_app.config.gpu_memory_mb
        assert container(gpu_app, "gpu")["Memory"] == gpu_app.config.lanes().get("gpu").memory_mb

    def test_service_places_tasks_through_the_asg_capacity_provider_after_it_is_associated(self, gpu_app):
        provider_id, _ = one(gpu_app.service_json, "AWS::ECS::CapacityProvider")
        association_id, _ = one(gpu_app.service_json, "AWS::ECS::ClusterCapacityProviderAssociations")
        _, service = one(gpu_app.service_json, "AWS::ECS::Service", "GpuWorker")
        assert service["Properties"]["CapacityProviderStrategy"] == [
            {"CapacityProvider": {"Ref": provider_id}, "Weight": 1}]
        assert association_id in service["DependsOn"]

    def test_gpu_lane_is_absent_by_default(self, default_app):
        assert not resources(default_app.service_json, "AWS::AutoScaling::AutoScalingGroup")
        assert not [k for k in default_app.service_json["Resources"] if k.startswith("Gpu")]


class TestOnDemandFallback:
    """The CPU lane's second service: regular Fargate, 0 tasks, scaled out when jobs wait too long for Spot."""

    def fallback(self, app):
        resources_ = app.service_json["Resources"]
        service = resources_[fallback_service_id(app)]["Properties"]
        target_id, target = one(app.service_json, "AWS::ApplicationAutoScaling::ScalableTarget", "CpuWorkerOnDemand")
        policies = {k: v["Properties"] for k, v in resources(app.service_json, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
                    if k.startswith("CpuWorkerOnDemand")}
        alarms = {k: v["Properties"] for k, v in resources(app.service_json, "AWS::CloudWatch::Alarm").items()
                  if k.startswith("CpuWorkerOnDemand")}
        return service, (target_id, target["Properties"]), policies, alarms

    def test_it_runs_the_lanes_tasks_on_regular_fargate_at_zero_tasks(self, lane_app):
        app, lane = lane_app
        if lane != "cpu":
            assert not [k for k in app.service_json["Resources"] if k.startswith(f"{construct_id(lane)}WorkerOnDemand")]
            return
        service, _, _, _ = self.fallback(app)
        primary = app.service_json["Resources"][worker_resource_id(app, "cpu", "Service")]["Properties"]
        assert service["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE", "Weight": 1}]
        assert service["DesiredCount"] == 0
        # The same task definition (so the same image, environment, queue and roles), network and security group.
        assert service["TaskDefinition"] == primary["TaskDefinition"] == {"Ref": worker_resource_id(app, "cpu", "TaskDefinition")}
        assert service["NetworkConfiguration"] == primary["NetworkConfiguration"]
        assert service["DeploymentConfiguration"] == primary["DeploymentConfiguration"]

    def test_it_scales_out_when_a_waiting_jobs_queue_age_reaches_the_threshold(self, default_app, gpu_app):
        for app in (default_app, gpu_app):  # cdk.json's 300 s; GPU_OVERRIDES' 600 s
            after_s = app.config.worker_spot_fallback_after_s
            _, (target_id, target), policies, alarms = self.fallback(app)
            assert target["ResourceId"]["Fn::Join"][1][-1] == {"Fn::GetAtt": [fallback_service_id(app), "Name"]}
            assert (target["MinCapacity"], target["MaxCapacity"]) == (0, app.config.worker_max_tasks)
            (alarm,) = [a for k, a in alarms.items() if "ScaleOutWhenJobsWaitUpperAlarm" in k]
            queries = {m["Id"]: m for m in alarm["Metrics"]}
            assert queries["age"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateAgeOfOldestMessage"
            assert queries["visible"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
            for query in ("age", "visible"):
                assert queries[query]["MetricStat"]["Metric"]["Dimensions"] == [
                    {"Name": "QueueName", "Value": {"Fn::GetAtt": [lane_queue_id(app, "cpu"), "QueueName"]}}]
                assert (queries[query]["MetricStat"]["Period"], queries[query]["MetricStat"]["Stat"]) == (60, "Maximum")
            (expression,) = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]
            assert expression == f"IF(FILL(visible, 0) >= 1 AND FILL(age, 0) >= {after_s}, FILL(visible, 0), 0)"
            assert (alarm["Threshold"], alarm["ComparisonOperator"], alarm["EvaluationPeriods"]) == (
                1, "GreaterThanOrEqualToThreshold", 1)
            (scale_out_id, scale_out) = [(k, p) for k, p in policies.items() if "ScaleOutWhenJobsWaitUpperPolicy" in k][0]
            assert alarm["AlarmActions"] == [{"Ref": scale_out_id}]
            assert scale_out["ScalingTargetId"] == {"Ref": target_id}
            steps = scale_out["StepScalingPolicyConfiguration"]
            assert steps["AdjustmentType"] == "ExactCapacity"
            # One task per `concurrency` jobs waiting, as the lane's own service sizes itself.
            assert steps["StepAdjustments"][0] == {"MetricIntervalLowerBound": 0,
                                                   "MetricIntervalUpperBound": app.config.worker_concurrency,
                                                   "ScalingAdjustment": 1}
            assert steps["StepAdjustments"][-1]["ScalingAdjustment"] == app.config.worker_max_tasks

    def test_it_scales_back_to_zero_after_five_minutes_without_such_a_wait(self, default_app):
        _, (target_id, _), policies, alarms = self.fallback(default_app)
        (clear,) = [a for k, a in alarms.items() if "ClearAlarm" in k]
        assert (clear["Threshold"], clear["ComparisonOperator"], clear["EvaluationPeriods"]) == (
            0, "LessThanOrEqualToThreshold", 5)
        assert "FILL(age, 0) >= 300" in next(m["Expression"] for m in clear["Metrics"] if "Expression" in m)
        (to_zero_id, to_zero) = [(k, p) for k, p in policies.items() if "ScaleInWhenClear" in k][0]
        assert to_zero["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
            {"MetricIntervalUpperBound": 0, "ScalingAdjustment": 0}]
        assert to_zero["StepScalingPolicyConfiguration"]["AdjustmentType"] == "ExactCapacity"
        assert to_zero["ScalingTargetId"] == {"Ref": target_id}
        assert clear["AlarmActions"] == [{"Ref": to_zero_id}]

    def test_its_use_is_alarmed(self, gpu_app):
        (props,) = [v["Properties"] for k, v in resources(gpu_app.service_json, "AWS::CloudWatch::Alarm").items()
                    if k.startswith("MonitoringCpuOnDemandFallback")]
        (query,) = props["Metrics"]
        metric = query["MetricStat"]["Metric"]
        assert (metric["Namespace"], metric["MetricName"], props["Threshold"], props["ComparisonOperator"]) == (
            "ECS/ContainerInsights", "RunningTaskCount", 0, "GreaterThanThreshold")
        assert {"Name": "ServiceName", "Value": {"Fn::GetAtt": [fallback_service_id(gpu_app), "Name"]}} in metric["Dimensions"]

    def test_zero_turns_it_off(self, no_fallback_app):
        assert not [k for k in no_fallback_app.service_json["Resources"] if "OnDemand" in k]
        assert set(resources(no_fallback_app.service_json, "AWS::ECS::Service")) == {
            worker_resource_id(no_fallback_app, lane.name, "Service") for lane in no_fallback_app.config.lanes().worker_lanes()}


@pytest.fixture(scope="module")
def no_fallback_app():
    return synth(worker_spot_fallback_after_s=0)


def test_only_a_lane_with_an_on_demand_fallback_gets_a_fallback_delay_in_its_compute_profile():
    import dataclasses

    from stacks.service_stack import compute_profile

    config = PipelineConfig(worker_spot_fallback_after_s=600)
    spot = config.worker_lane("cpu")
    assert spot.has_on_demand_fallback and spot.spot_fallback_after_s == 600
    assert compute_profile(config, spot).spot_fallback_after_s == 600
    regular = dataclasses.replace(spot, lane=dataclasses.replace(
        spot.lane, compute=dataclasses.replace(spot.lane.compute, spot=False)))
    assert regular.on_demand_only and not regular.has_on_demand_fallback
    profile = compute_profile(config, regular)
    assert isinstance(profile, FargateSpot) and profile.on_demand_only
    assert profile.spot_fallback_after_s == 0  # no fallback service beside an on-demand-only one
