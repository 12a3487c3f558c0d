"""The network and the ECS cluster the workers run in."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct


class WorkerCluster(Construct):
    """Creates ``vpc`` and ``cluster`` (Container Insights on, Fargate and Fargate Spot capacity providers).

    The VPC has public subnets only, in 2 AZs, and no NAT gateway: a NAT costs about $33 a month per AZ
    while the pipeline is idle, and workers only make outbound calls (Claude, AWS APIs). Workers get a
    public IP but a security group that admits nothing inbound. S3 and DynamoDB traffic stays on free
    gateway endpoints. Rejected traffic is written to flow logs (``log_retention``).
    """

    def __init__(self, scope: Construct, construct_id: str, *, log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        flow_log_group = logs.LogGroup(self, "FlowLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.vpc = ec2.Vpc(
            self, "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=22)],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDb": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
            flow_logs={"Rejected": ec2.FlowLogOptions(
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                traffic_type=ec2.FlowLogTrafficType.REJECT)},
        )
        self.cluster = ecs.Cluster(
            self, "Cluster",
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            enable_fargate_capacity_providers=True,
        )

    def egress_only_security_group(self, scope: Construct, construct_id: str, description: str) -> ec2.SecurityGroup:
        """A security group that admits nothing in and lets only HTTPS out (Claude and every AWS API)."""
        group = ec2.SecurityGroup(scope, construct_id, vpc=self.vpc, description=description, allow_all_outbound=False)
        group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to Claude and AWS APIs")
        return group
