"""The job table and the bucket that holds inputs and results."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct
from jobadapters import schema

from stacks.constructs.nag import acknowledge


class JobStorage(Construct):
    """Where jobs live.

    Creates:
      ``table``: on-demand, point-in-time recovery, TTL on ``expires_at``, GSI ``by_tenant``
        (``tenant_id`` + ``created_at``) to list a tenant's jobs newest first; AWS-owned encryption.
      ``bucket``: SSE-S3, SSL only (TLS 1.2+), public access blocked, ACLs off; objects under ``results/``
        and ``inputs/`` expire after ``object_retention_days``; unfinished multipart uploads after 1 day.
      ``access_log_bucket``: the bucket's server access logs, kept ``access_log_retention_days`` (default 90).
    All three are retained when the stack is deleted: they hold the users' data.
    """

    def __init__(self, scope: Construct, construct_id: str, *, object_retention_days: int,
                 access_log_retention_days: int = 90) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self, "Table",
            partition_key=dynamodb.Attribute(name=schema.JOBS_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=schema.TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.table.add_global_secondary_index(
            index_name=schema.TENANT_INDEX,
            partition_key=dynamodb.Attribute(name=schema.TENANT_INDEX_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=schema.TENANT_INDEX_SORT_KEY, type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.ALL,
        )

        self.access_log_bucket = _private_bucket(self, "AccessLogs", lifecycle_rules=[
            s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(access_log_retention_days)),
        ])
        acknowledge(self.access_log_bucket, "AwsSolutions-S1",
                    "This is the server-access-log target of the job bucket; logging it into itself would loop.")
        self.bucket = _private_bucket(
            self, "Bucket",
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="job-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-results", prefix=schema.RESULTS_PREFIX,
                                 expiration=Duration.days(object_retention_days)),
                s3.LifecycleRule(id="expire-inputs", prefix=schema.INPUTS_PREFIX,
                                 expiration=Duration.days(object_retention_days)),
                s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
        )


def _private_bucket(scope: Construct, construct_id: str, **props) -> s3.Bucket:
    return s3.Bucket(
        scope, construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=RemovalPolicy.RETAIN,
        **props,
    )
