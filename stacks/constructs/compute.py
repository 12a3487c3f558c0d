"""Compute profiles: where a worker service's tasks run. :class:`WorkerService` takes one of these.

A profile makes the task definition, sizes the container and creates the ECS service with its capacity;
everything else about a worker (image, environment, secrets, permissions, scaling) is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aws_cdk import Duration
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.constructs.cluster import WorkerCluster
from stacks.constructs.nag import acknowledge

GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/{release}/image_id"
_ROLLBACK = ecs.DeploymentCircuitBreaker(enable=True, rollback=True)


class ComputeProfile(Protocol):
    def task_definition(self, scope: Construct) -> ecs.TaskDefinition: ...
    def container_sizing(self) -> dict[str, Any]: ...
    def service(self, scope: Construct, *, cluster: WorkerCluster, task_definition: ecs.TaskDefinition,
                desired_count: int) -> ecs.BaseService: ...
    def fallback_service(self, scope: Construct, *, cluster: WorkerCluster, task_definition: ecs.TaskDefinition,
                         primary: ecs.BaseService) -> OnDemandFallback | None: ...


@dataclass(frozen=True)
class OnDemandFallback:
    """A lane's second service on regular capacity, at 0 tasks until its jobs have waited ``after_s``."""

    service: ecs.BaseService
    after_s: int


@dataclass(frozen=True, kw_only=True)
class FargateSpot:
    """Fargate tasks of ``cpu``/``memory_mb``, on Spot first; ``on_demand_base`` tasks on regular Fargate,
    then ``on_demand_weight`` regular tasks for each Spot task (0: the rest all on Spot).

    x86 (Fargate Spot has no arm64). Tasks sit in public subnets with a public IP (no NAT: see
    WorkerCluster) behind a security group that admits nothing. Deploys keep every running task until
    its replacement runs (100/200 %) and roll back on repeated failures.

    ``on_demand_only``: every task on regular Fargate (a lane whose compute is not Spot); such a lane has no
    fallback, so its ``spot_fallback_after_s`` is 0 (``WorkerLane.has_on_demand_fallback``).

    With ``spot_fallback_after_s`` set, :meth:`fallback_service` adds a second service on regular Fargate
    (same task definition, security group and queue, 0 tasks) for ``WorkerService`` to scale out when jobs
    wait that long: ECS does not move a service from FARGATE_SPOT to FARGATE when Spot has no capacity.
    """

    cpu: int
    memory_mb: int
    on_demand_base: int = 0
    on_demand_weight: int = 0
    spot_fallback_after_s: int = 0
    on_demand_only: bool = False

    def task_definition(self, scope: Construct) -> ecs.TaskDefinition:
        return ecs.FargateTaskDefinition(
            scope, "TaskDefinition", cpu=self.cpu, memory_limit_mib=self.memory_mb,
            runtime_platform=ecs.RuntimePlatform(cpu_architecture=ecs.CpuArchitecture.X86_64,
                                                 operating_system_family=ecs.OperatingSystemFamily.LINUX))

    def container_sizing(self) -> dict[str, Any]:
        return {}  # the task's size is the container's

    def capacity_provider_strategies(self) -> list[ecs.CapacityProviderStrategy]:
        if self.on_demand_only:
            return [ecs.CapacityProviderStrategy(capacity_provider="FARGATE", weight=1)]
        strategies = [ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=1)]
        if self.on_demand_base or self.on_demand_weight:
            strategies.append(ecs.CapacityProviderStrategy(
                capacity_provider="FARGATE", base=self.on_demand_base or None, weight=self.on_demand_weight))
        return strategies

    def service(self, scope: Construct, *, cluster: WorkerCluster, task_definition: ecs.TaskDefinition,
                desired_count: int) -> ecs.BaseService:
        security_group = cluster.egress_only_security_group(scope, "SecurityGroup", "Worker tasks: nothing inbound")
        return ecs.FargateService(
            scope, "Service", cluster=cluster.cluster, task_definition=task_definition,
            capacity_provider_strategies=self.capacity_provider_strategies(),
            assign_public_ip=True, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[security_group], desired_count=desired_count,
            min_healthy_percent=100, max_healthy_percent=200, circuit_breaker=_ROLLBACK,
        )

    def fallback_service(self, scope: Construct, *, cluster: WorkerCluster, task_definition: ecs.TaskDefinition,
                         primary: ecs.BaseService) -> OnDemandFallback | None:
        """``OnDemandService``: the same tasks as ``primary`` on regular Fargate only, 0 of them until scaled
        out (``WorkerService`` does, on the queue's age); None without ``spot_fallback_after_s`` (which
        ``service_stack.compute_profile`` sets only for a lane that ``has_on_demand_fallback``)."""
        if not self.spot_fallback_after_s:
            return None
        service = ecs.FargateService(
            scope, "OnDemandService", cluster=cluster.cluster, task_definition=task_definition,
            capacity_provider_strategies=[ecs.CapacityProviderStrategy(capacity_provider="FARGATE", weight=1)],
            assign_public_ip=True, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=primary.connections.security_groups, desired_count=0,
            min_healthy_percent=100, max_healthy_percent=200, circuit_breaker=_ROLLBACK,
        )
        return OnDemandFallback(service, self.spot_fallback_after_s)


@dataclass(frozen=True, kw_only=True)
class GpuInstances:
    """ECS on EC2: an Auto Scaling group (min 0, max ``max_instances``) of ``instance_type`` as the
    service's capacity provider; each task asks for one GPU, ``cpu`` units and ``memory_mb``.

    The AMI is the ECS-optimized Amazon Linux 2023 GPU AMI of one named release (``ami_release``), read
    from its versioned public SSM parameter at deploy: it never changes under a running stack, so
    instances roll only when the release is bumped in cdk.json. Managed termination protection is off,
    so deleting the stack cannot hang on protected instances; managed draining moves tasks off an
    instance before it terminates. Tasks use bridge networking and reach the internet through the
    instance's public IP; IMDSv2 with a hop limit of 1 keeps containers (one hop further) off the instance role.
    Deploys stop a task before starting its replacement (0/100 %): one GPU per instance leaves no room.
    """

    instance_type: str
    ami_release: str
    cpu: int
    memory_mb: int
    max_instances: int
    root_volume_gb: int = 60

    @property
    def ami_parameter(self) -> str:
        return GPU_AMI_PARAMETER.format(release=self.ami_release)

    def task_definition(self, scope: Construct) -> ecs.TaskDefinition:
        return ecs.Ec2TaskDefinition(scope, "TaskDefinition", network_mode=ecs.NetworkMode.BRIDGE)

    def container_sizing(self) -> dict[str, Any]:
        return {"gpu_count": 1, "cpu": self.cpu, "memory_limit_mib": self.memory_mb}

    def service(self, scope: Construct, *, cluster: WorkerCluster, task_definition: ecs.TaskDefinition,
                desired_count: int) -> ecs.BaseService:
        capacity_provider = ecs.AsgCapacityProvider(
            scope, "CapacityProvider", auto_scaling_group=self._auto_scaling_group(scope, cluster),
            enable_managed_scaling=True, enable_managed_termination_protection=False, enable_managed_draining=True,
            target_capacity_percent=100)
        cluster.cluster.add_asg_capacity_provider(capacity_provider)
        return ecs.Ec2Service(
            scope, "Service", cluster=cluster.cluster, task_definition=task_definition,
            capacity_provider_strategies=[ecs.CapacityProviderStrategy(
                capacity_provider=capacity_provider.capacity_provider_name, weight=1)],
            desired_count=desired_count, min_healthy_percent=0, max_healthy_percent=100, circuit_breaker=_ROLLBACK,
        )

    def fallback_service(self, scope: Construct, *, cluster: WorkerCluster, task_definition: ecs.TaskDefinition,
                         primary: ecs.BaseService) -> OnDemandFallback | None:
        return None  # on-demand instances already: nothing to fall back to

    def _auto_scaling_group(self, scope: Construct, cluster: WorkerCluster) -> autoscaling.AutoScalingGroup:
        user_data = ec2.UserData.for_linux()
        user_data.add_commands("echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config")
        role = iam.Role(scope, "InstanceRole", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
                        description="ECS container instances of the GPU lane")
        launch_template = ec2.LaunchTemplate(
            scope, "LaunchTemplate",
            instance_type=ec2.InstanceType(self.instance_type),
            machine_image=ec2.MachineImage.from_ssm_parameter(self.ami_parameter, os=ec2.OperatingSystemType.LINUX),
            user_data=user_data, role=role,
            security_group=cluster.egress_only_security_group(scope, "InstanceSecurityGroup",
                                                              "GPU container instances: nothing inbound"),
            associate_public_ip_address=True,
            require_imdsv2=True, http_put_response_hop_limit=1,
            block_devices=[ec2.BlockDevice(device_name="/dev/xvda", volume=ec2.BlockDeviceVolume.ebs(
                self.root_volume_gb, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3))],
        )
        group = autoscaling.AutoScalingGroup(
            scope, "Instances", vpc=cluster.vpc, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            launch_template=launch_template, min_capacity=0, max_capacity=self.max_instances,
            default_instance_warmup=Duration.minutes(3),
        )
        acknowledge(role, "AwsSolutions-IAM5[Action::ecs:Submit*]",
                    "The ECS agent reports task and container state through the ecs:Submit* family; CDK's "
                    "container-instance policy grants it on this cluster's ARN only.")
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                    "ecr:GetAuthorizationToken and ecs:DiscoverPollEndpoint have no resource-level permissions, "
                    "ecs:Poll and StartTelemetrySession are held to this cluster by an ecs:cluster condition, and "
                    "the logs actions are the ECS agent's own, as in AmazonEC2ContainerServiceforEC2Role.")
        acknowledge(group, "AwsSolutions-AS3",
                    "The ECS capacity provider drives this group; its scaling shows up as ECS service events and "
                    "in the dashboard, and an e-mail per instance launch would only be noise.")
        return group
