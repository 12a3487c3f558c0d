"""The stateful stack: what must survive a redeploy or a teardown of the service."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from jobadapters.schema import IndexShards
from stacks.constructs.intake import IntakeQueue
from stacks.constructs.secrets import PipelineSecrets
from stacks.constructs.storage import JobStorage


class DataStack(Stack):
    """Job table, job bucket (+ access logs) and the two secrets. Nothing here depends on the service stack,
    and its exports do not change with the configuration, so the service stack can come and go freely."""

    def __init__(self, scope: Construct, construct_id: str, *, result_retention_days: int,
                 index_shards: IndexShards | None = None, legacy_tenant_index: bool = False, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.storage = JobStorage(self, "Storage", object_retention_days=result_retention_days, shards=index_shards,
                                  legacy_tenant_index=legacy_tenant_index)
        self.secrets = PipelineSecrets(self, "Secrets")
        # The S3 intake's queue: beside the bucket, whose notification into it is a resource of this stack
        # (stacks/constructs/intake.py says why); the service stack's intake function consumes it.
        self.intake = IntakeQueue(self, "Intake", bucket=self.storage.bucket)

        CfnOutput(self, "JobsTableName", value=self.storage.table.table_name)
        CfnOutput(self, "JobBucketName", value=self.storage.bucket.bucket_name)
        CfnOutput(self, "AnthropicSecretArn", value=self.secrets.anthropic_api_key.secret_arn)
        CfnOutput(self, "WebhookSecretArn", value=self.secrets.webhook_signing_secret.secret_arn,
                  description="Receivers verify webhook signatures with this secret's value")
        CfnOutput(self, "SetClaudeKeyCommand", value=(
            "aws secretsmanager put-secret-value --secret-id "
            f"{self.secrets.anthropic_api_key.secret_arn} --secret-string \"$ANTHROPIC_API_KEY\""))
