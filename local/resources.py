"""Create, in moto, the same stateful resources the CDK app deploys (table, bucket, queues + DLQs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jobadapters import schema
from jobcore.lanes import Lanes


@dataclass(frozen=True)
class LocalResources:
    table: str
    bucket: str
    queue_urls: dict[str, str]  # lane -> url
    dlq_urls: dict[str, str]


def create(session: Any, *, lanes: Lanes, max_receives: int, prefix: str = "hybrid-local") -> LocalResources:
    """A queue and a DLQ for each enabled queued lane, with the lane's time limit as the visibility
    timeout and redrive after ``max_receives``, as the CDK app's JobQueue makes them."""
    table = f"{prefix}-jobs"
    bucket = f"{prefix}-results"
    _create_table(session.client("dynamodb"), table)
    session.client("s3").create_bucket(Bucket=bucket)
    sqs = session.client("sqs")
    queues, dlqs = {}, {}
    for lane in lanes.queued():
        name = lane.name
        dlqs[name] = sqs.create_queue(QueueName=f"{prefix}-{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlqs[name], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queues[name] = sqs.create_queue(QueueName=f"{prefix}-{name}", Attributes={
            "VisibilityTimeout": str(int(lane.time_limit_s)),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}),
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
