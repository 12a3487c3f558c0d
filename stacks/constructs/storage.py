"""The job table, the bucket that holds inputs and results, and the one policy that uses them."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from jobadapters import schema
from jobcore.dispatch import WEBHOOKS_PREFIX
from stacks.constructs.nag import acknowledge, ref

# Item-level reads and writes only: nothing here can delete an item, reconfigure or scan the table. Jobs
# are written with conditional puts (create-if-absent, save-if-version) and conditional updates (a lease
# renewed), and expire by TTL; Idempotency-Key records live in the same table and are released by an
# update, never deleted. A tenant's jobs are listed through the tenant index, pending webhook deliveries
# through the delivery index, the jobs the sweeper watches through the watch index (Query). A worker's
# heartbeat reads the state of its jobs in flight 100 at a time (BatchGetItem, a read like GetItem).
ITEM_ACTIONS = (
    "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:ConditionCheckItem",
    "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DescribeTable",
)
# Objects under the job prefixes only; expiry is the lifecycle rules' job, so no DeleteObject. Webhook
# event bodies (fixed at a delivery's first attempt, the same bytes for every later one) live under their own.
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject")
# Uploads (uploads/<tenant>/<id>): the router presigns their PUT (so it may PutObject) and HEADs them (GetObject);
# the workers read them.
OBJECT_PREFIXES = (schema.RESULTS_PREFIX, schema.INPUTS_PREFIX, WEBHOOKS_PREFIX, schema.UPLOADS_PREFIX)


class JobStorage(Construct):
    """Where jobs live.

    Creates:
      ``table``: on-demand, point-in-time recovery, TTL on ``expires_at``, GSI ``by_tenant_list``
        (``tenant_shard`` + ``created_at``, INCLUDE: what a list entry shows) to list a tenant's jobs newest first
        (its ``shards.tenant`` partitions merged), and the sparse GSI
        ``by_delivery_due`` (``delivery_shard`` + ``delivery_due_at``, keys only: only jobs whose webhook
        delivery is pending carry them) where the webhook dispatcher's sweep finds what falls due, and the
        sparse GSI ``by_watch`` (``watch_shard`` + ``watch_at``, keys only: running jobs by their lease's end,
        queued jobs with a deadline by that deadline) where the job sweeper finds jobs whose runner is gone;
        AWS-owned encryption.
      ``bucket``: SSE-S3, SSL only (TLS 1.2+), public access blocked, ACLs off; objects under ``results/``,
        ``inputs/`` and ``webhooks/`` (event bodies) expire after ``object_retention_days``; unfinished
        multipart uploads after 1 day.
      ``access_log_bucket``: the bucket's server access logs, kept ``access_log_retention_days`` (default 90).
      ``access_policy``: a managed policy for the router, the workers and the webhook dispatcher: item
        reads/writes on the table and its three indexes, get/put of objects under the job prefixes, listing the
        bucket (so a missing result reads as 404, not 403). No table or bucket deletion, no scans. Attach it
        with :meth:`grant_job_data`; :meth:`grant_due_deliveries` is the sweep's narrower grant.
    The table and both buckets are retained when the stack is deleted: they hold the users' data.
    """

    def __init__(self, scope: Construct, construct_id: str, *, object_retention_days: int,
                 access_log_retention_days: int = 90, shards: schema.IndexShards | None = None,
                 legacy_tenant_index: bool = False) -> None:
        super().__init__(scope, construct_id)
        self.shards = shards or schema.IndexShards()
        self.table = dynamodb.Table(
            self, "Table",
            partition_key=dynamodb.Attribute(name=schema.JOBS_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=schema.TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # The tenant index holds only what a list shows, spread over ``shards.tenant`` partitions a tenant. It
        # replaced by_tenant (ALL, one partition a tenant) under a new name: CloudFormation creates or deletes one
        # GSI per table update, so a table that has by_tenant keeps it for one deploy (``legacy_tenant_index``)
        # while this one is created, and drops it the next (docs/deploy.md).
        self.table.add_global_secondary_index(
            index_name=schema.TENANT_INDEX,
            partition_key=dynamodb.Attribute(name=schema.TENANT_INDEX_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=schema.TENANT_INDEX_SORT_KEY, type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(schema.TENANT_INDEX_ATTRIBUTES),
        )
        if legacy_tenant_index:
            self.table.add_global_secondary_index(
                index_name=schema.LEGACY_TENANT_INDEX,
                partition_key=dynamodb.Attribute(name="tenant_id", type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name=schema.TENANT_INDEX_SORT_KEY, type=dynamodb.AttributeType.NUMBER),
                projection_type=dynamodb.ProjectionType.ALL,
            )
        # Adding a GSI to the deployed table is an in-place update (CloudFormation adds one index per update).
        self.table.add_global_secondary_index(
            index_name=schema.DELIVERY_INDEX,
            partition_key=dynamodb.Attribute(name=schema.DELIVERY_INDEX_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=schema.DELIVERY_INDEX_SORT_KEY, type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        # CloudFormation creates one new GSI per table update: a table deployed before the delivery index
        # needs that index deployed first (the previous release), then this one.
        self.table.add_global_secondary_index(
            index_name=schema.WATCH_INDEX,
            partition_key=dynamodb.Attribute(name=schema.WATCH_INDEX_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=schema.WATCH_INDEX_SORT_KEY, type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )

        self.access_log_bucket = _private_bucket(self, "AccessLogs", lifecycle_rules=[
            s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(access_log_retention_days)),
        ])
        self.bucket = _private_bucket(
            self, "Bucket",
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="job-bucket/",
            lifecycle_rules=[
                *(s3.LifecycleRule(id=f"expire-{prefix.rstrip('/')}", prefix=prefix,
                                   expiration=Duration.days(object_retention_days)) for prefix in OBJECT_PREFIXES),
                s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
        )
        self.access_policy = self._access_policy()

    def table_environment(self) -> dict[str, str]:
        """What every function that reads or writes jobs is told of the table: its name and its indexes' shards."""
        return {"JOBS_TABLE": self.table.table_name, schema.INDEX_SHARDS_ENV: self.shards.to_env()}

    def grant_job_data(self, role: iam.IRole) -> None:
        """Lets ``role`` read and write jobs (items and objects) but not delete or reconfigure the stores."""
        role.add_managed_policy(self.access_policy)

    def grant_due_deliveries(self, role: iam.IRole) -> None:
        """Lets ``role`` query the delivery index (which jobs' webhooks fall due when) and nothing else."""
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:Query"], resources=[self.index_arn(schema.DELIVERY_INDEX)]))

    def index_arn(self, index_name: str) -> str:
        return f"{self.table.table_arn}/index/{index_name}"

    def _access_policy(self) -> iam.ManagedPolicy:
        indexes = [self.index_arn(name) for name in (schema.TENANT_INDEX, schema.DELIVERY_INDEX, schema.WATCH_INDEX)]
        policy = iam.ManagedPolicy(self, "JobDataAccess", description="Read and write job items and job objects.",
                                   statements=[
            iam.PolicyStatement(sid="JobItems", actions=list(ITEM_ACTIONS), resources=[self.table.table_arn, *indexes]),
            iam.PolicyStatement(sid="JobObjects", actions=list(OBJECT_ACTIONS),
                                resources=[self.bucket.arn_for_objects(f"{prefix}*") for prefix in OBJECT_PREFIXES]),
            iam.PolicyStatement(sid="ListJobBucket", actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]),
        ])
        for prefix in OBJECT_PREFIXES:
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{ref(self.bucket, 'Arn')}/{prefix}*]",
                        f"Object keys under {prefix} are named by ids made at run time (a job's, a webhook event's); "
                        "the wildcard is limited to that prefix of this one bucket.")
        return policy


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
