"""Create, in moto, the same stateful resources the CDK app deploys (table, bucket, queues + DLQs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jobadapters import schema

# Match the CDK defaults (stacks/config.py): redrive after this many receives.
MAX_RECEIVES = 5


@dataclass(frozen=True)
class LocalResources:
    table: str
    bucket: str
    queue_urls: dict[str, str]  # lane -> url
    dlq_urls: dict[str, str]


def create(session: Any, *, prefix: str = "hybrid-local", lanes: tuple[str, ...] = ("cpu", "gpu"), visibility_s: int = 300) -> LocalResources:
    table = f"{prefix}-jobs"
    bucket = f"{prefix}-results"
    _create_table(session.client("dynamodb"), table)
    session.client("s3").create_bucket(Bucket=bucket)
    sqs = session.client("sqs")
    queues, dlqs = {}, {}
    for lane in lanes:
        dlqs[lane] = sqs.create_queue(QueueName=f"{prefix}-{lane}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlqs[lane], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queues[lane] = sqs.create_queue(QueueName=f"{prefix}-{lane}", Attributes={
            "VisibilityTimeout": str(visibility_s),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}),
        })["QueueUrl"]
    return LocalResources(table, bucket, queues, dlqs)


def _create_table(dynamodb: Any, name: str) -> None:
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": schema.JOBS_PARTITION_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": schema.JOBS_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": schema.TENANT_INDEX_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": schema.TENANT_INDEX_SORT_KEY, "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[{
            "IndexName": schema.TENANT_INDEX,
            "KeySchema": [
                {"AttributeName": schema.TENANT_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": schema.TENANT_INDEX_SORT_KEY, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }],
    )
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.TTL_ATTRIBUTE})
