"""Create, in moto, the same resources the CDK app deploys (table, bucket, lane queues and the webhook
queue, each with its DLQ; the worker lanes' ECS services, which the router wakes)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobadapters import schema
from jobadapters.schema import WEBHOOK_MAX_RECEIVES, WEBHOOK_VISIBILITY_S
from jobcore import intake
from jobcore.lanes import Lanes
from jobcore.limits import QUEUE_RETENTION_S


@dataclass(frozen=True)
class LocalResources:
    table: str
    bucket: str
    queue_urls: dict[str, str]  # lane -> url
    dlq_urls: dict[str, str]
    webhook_queue_url: str
    webhook_dlq_url: str
    intake_queue_url: str = ""  # the bucket's notifications of objects created under intake/ (jobcore.intake)
    intake_dlq_url: str = ""
    lane_services: dict[str, str] = field(default_factory=dict)  # worker lane -> its ECS service's ARN (LANE_SERVICES)


PREFIX = "hybrid-local"


def bucket_name(prefix: str = PREFIX) -> str:
    """The job bucket (results, uploads, the S3 intake's ``intake/``)."""
    return f"{prefix}-results"


def create(session: Any, *, lanes: Lanes, max_receives: int, prefix: str = PREFIX) -> LocalResources:
    """A queue and a DLQ for each enabled queued lane, with the lane's time limit as the visibility
    timeout and redrive after ``max_receives``, as the CDK app's JobQueue makes them."""
    table = f"{prefix}-jobs"
    bucket = bucket_name(prefix)
    _create_table(session.client("dynamodb"), table)
    session.client("s3").create_bucket(Bucket=bucket)
    sqs = session.client("sqs")
    queues, dlqs = {}, {}
    for lane in lanes.queued():
        queues[lane.name], dlqs[lane.name] = _queue_pair(
            sqs, f"{prefix}-{lane.name}", visibility_s=schema.queue_visibility_s(lane), max_receives=max_receives)
    webhooks, webhooks_dlq = _queue_pair(sqs, f"{prefix}-webhooks", visibility_s=WEBHOOK_VISIBILITY_S,
                                         max_receives=WEBHOOK_MAX_RECEIVES)
    intake_queue, intake_dlq = _intake(session.client("s3"), sqs, bucket, prefix)
    return LocalResources(table, bucket, queues, dlqs, webhooks, webhooks_dlq, intake_queue, intake_dlq)


def _intake(s3: Any, sqs: Any, bucket: str, prefix: str) -> tuple[str, str]:
    """The intake queue and the bucket's notification of objects created under ``intake/`` into it, as the CDK
    app's IntakeQueue makes them (moto delivers S3 notifications to SQS, as S3 does)."""
    queue, dlq = _queue_pair(sqs, f"{prefix}-intake", visibility_s=intake.QUEUE_VISIBILITY_S, max_receives=intake.MAX_RECEIVES)
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [{
        "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": intake.PREFIX}]}},
    }]})
    return queue, dlq


def create_lane_services(session: Any, *, lanes: Lanes, prefix: str = "hybrid-local") -> dict[str, str]:
    """A cluster and, for each worker lane, an ECS service at 0 tasks (moto runs no task), as the CDK app's
    WorkerService makes one; each service's ARN, which names its cluster, by lane (``LANE_SERVICES``)."""
    ecs = session.client("ecs")
    cluster = f"{prefix}-workers"
    ecs.create_cluster(clusterName=cluster)
    services = {}
    for lane in lanes.worker_lanes():
        family = f"{prefix}-{lane.name}"
        ecs.register_task_definition(family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024",
                                     memory="2048", containerDefinitions=[{"name": "Worker", "image": "worker", "essential": True}])
        services[lane.name] = ecs.create_service(cluster=cluster, serviceName=family, taskDefinition=family, desiredCount=0,
                                                 launchType="FARGATE")["service"]["serviceArn"]
    return services


MODEL_FILES = ("model.onnx", "tokenizer.json", "embedding.json")


def upload_model(session: Any, directory: Path, *, bucket: str = "hybrid-local-models", prefix: str = "embedding-model") -> str:
    """Upload an embedding model directory (``model.onnx``, ``tokenizer.json``, optional ``embedding.json``)
    to a bucket of its own, as an operator does for ``embedding_model_s3_uri``; returns that URI."""
    s3 = session.client("s3")
    s3.create_bucket(Bucket=bucket)
    for name in MODEL_FILES:
        if (directory / name).is_file():
            s3.upload_file(str(directory / name), bucket, f"{prefix}/{name}")
    return f"s3://{bucket}/{prefix}/"


def _queue_pair(sqs: Any, name: str, *, visibility_s: int, max_receives: int) -> tuple[str, str]:
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility_s), "MessageRetentionPeriod": str(QUEUE_RETENTION_S),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}),
    })["QueueUrl"]
    return queue, dlq


def table_definition() -> dict[str, Any]:
    """The jobs table as the CDK app deploys it (keys, indexes, projections), in CreateTable's (and
    DescribeTable's) shape: the local runtime creates it, ``tools.scale`` bills writes against it."""
    return dict(
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": schema.JOBS_PARTITION_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": schema.JOBS_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": schema.TENANT_INDEX_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": schema.TENANT_INDEX_SORT_KEY, "AttributeType": "N"},
            {"AttributeName": schema.DELIVERY_INDEX_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": schema.DELIVERY_INDEX_SORT_KEY, "AttributeType": "N"},
            {"AttributeName": schema.WATCH_INDEX_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": schema.WATCH_INDEX_SORT_KEY, "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[{
            "IndexName": schema.TENANT_INDEX,
            "KeySchema": [
                {"AttributeName": schema.TENANT_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": schema.TENANT_INDEX_SORT_KEY, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(schema.TENANT_INDEX_ATTRIBUTES)},
        }, {
            "IndexName": schema.DELIVERY_INDEX,
            "KeySchema": [
                {"AttributeName": schema.DELIVERY_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": schema.DELIVERY_INDEX_SORT_KEY, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }, {
            "IndexName": schema.WATCH_INDEX,
            "KeySchema": [
                {"AttributeName": schema.WATCH_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": schema.WATCH_INDEX_SORT_KEY, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }],
    )


def _create_table(dynamodb: Any, name: str) -> None:
    dynamodb.create_table(TableName=name, **table_definition())
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.TTL_ATTRIBUTE})
