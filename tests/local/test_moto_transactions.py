"""The local moto server's TransactWriteItems (local.moto_transactions): all or nothing as DynamoDB's, and, unlike
moto's own (a copy of the whole table put back on any failure), never undoing or failing other requests' writes made
while transactions run."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.aws_server import CREDENTIALS, AwsServer

TABLE = "jobs"


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[object]:
    server = AwsServer()
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("dynamodb", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id=CREDENTIALS.access_key, aws_secret_access_key=CREDENTIALS.secret_key,
                          config=Config(retries={"max_attempts": 1}, max_pool_connections=20))
    client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    yield client
    server.stop()


def finish(job: str, version: int, counter: str = "usage#t") -> list[dict[str, object]]:
    """A terminal write as the job store makes it: the job on its version, the tenant's counters added to."""
    return [{"Put": {"TableName": TABLE, "Item": {"pk": {"S": job}, "version": {"N": str(version + 1)}},
                     "ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": {"N": str(version)}},
                     "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            {"Update": {"TableName": TABLE, "Key": {"pk": {"S": counter}}, "UpdateExpression": "ADD jobs :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}}]


def test_a_transaction_writes_every_part_or_none(dynamodb):
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "job_a"}, "version": {"N": "1"}})
    dynamodb.transact_write_items(TransactItems=finish("job_a", 1))
    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(TransactItems=finish("job_a", 1))  # an old version: the condition fails
    reasons = refused.value.response["CancellationReasons"]
    assert [reason["Code"] for reason in reasons] == ["ConditionalCheckFailed", "None"]
    assert reasons[0]["Item"] == {"pk": {"S": "job_a"}, "version": {"N": "2"}}  # the item as it stands
    counter = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "usage#t"}})["Item"]
    assert counter["jobs"] == {"N": "1"}  # the refused one added nothing


@pytest.mark.slow
def test_transactions_never_undo_or_fail_the_writes_other_requests_make_meanwhile(dynamodb):
    """Others' puts beside a stream of transactions, half of them refused: every put is there, no request failed
    (moto's own answered 500 when its copy of the table met a concurrent write, and its rollback undid them)."""
    errors: list[BaseException] = []

    def puts() -> None:
        try:
            for n in range(400):
                dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": f"other_{n}"}})
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    writers = [threading.Thread(target=puts) for _ in range(2)]
    for thread in writers:
        thread.start()
    refused = 0
    for n in range(150):
        dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": f"job_{n}"}, "version": {"N": "1"}})
        for version in (1, 1):  # the second is refused: its rollback must touch nothing else
            try:
                dynamodb.transact_write_items(TransactItems=finish(f"job_{n}", version, counter="usage#busy"))
            except ClientError as error:
                assert error.response["Error"]["Code"] == "TransactionCanceledException", error.response
                refused += 1
    for thread in writers:
        thread.join()
    assert not errors and refused == 150
    keys = set()
    pages = dynamodb.get_paginator("scan").paginate(TableName=TABLE, ProjectionExpression="pk")
    for page in pages:
        keys |= {item["pk"]["S"] for item in page["Items"]}
    assert {f"other_{n}" for n in range(400)} <= keys
    counter = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "usage#busy"}})["Item"]
    assert counter["jobs"] == {"N": "150"}
