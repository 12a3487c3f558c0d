"""JobStorage: the job table, the job bucket, and the only policy that touches them."""

from __future__ import annotations

import re

from aws_cdk.assertions import Match
from infra_support import REPO, actions, managed_policy_statements, one, resources

from jobadapters import schema
from jobcore.dispatch import WEBHOOKS_PREFIX

# Renaming one of these replaces the resource and loses its data: a failure here means "don't".
PINNED_DATA_IDS = {
    "StorageTableB43FDCE7": "AWS::DynamoDB::Table",
    "StorageBucket5CB7C8EA": "AWS::S3::Bucket",
    "StorageAccessLogs96FB524C": "AWS::S3::Bucket",
    "SecretsAnthropicApiKeyF6E99229": "AWS::SecretsManager::Secret",
    "SecretsWebhookSigningSecretA45B9F6F": "AWS::SecretsManager::Secret",
}


def test_stateful_logical_ids_are_pinned(default_app, gpu_app):
    for app in (default_app, gpu_app):
        template = app.data_json["Resources"]
        assert {k: template[k]["Type"] for k in PINNED_DATA_IDS if k in template} == PINNED_DATA_IDS


def test_table_is_on_demand_with_pitr_ttl_the_tenant_delivery_and_watch_indexes(default_app):
    default_app.data_template.has_resource("AWS::DynamoDB::Table", {
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": schema.JOBS_PARTITION_KEY, "KeyType": "HASH"}],
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": schema.TTL_ATTRIBUTE, "Enabled": True},
            "GlobalSecondaryIndexes": [{
                "IndexName": schema.TENANT_INDEX,
                "KeySchema": [
                    {"AttributeName": schema.TENANT_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": schema.TENANT_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                # Only what a list entry shows: a lease renewal or a watch entry changes none of it.
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(schema.TENANT_INDEX_ATTRIBUTES)},
            }, {
                # Sparse: only jobs whose webhook delivery is pending carry these two attributes.
                "IndexName": schema.DELIVERY_INDEX,
                "KeySchema": [
                    {"AttributeName": schema.DELIVERY_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": schema.DELIVERY_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }, {
                # Sparse: only jobs the sweeper watches (running: the lease's end; queued with a deadline).
                "IndexName": schema.WATCH_INDEX,
                "KeySchema": [
                    {"AttributeName": schema.WATCH_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": schema.WATCH_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }],
            "AttributeDefinitions": Match.array_with([
                {"AttributeName": schema.TENANT_INDEX_SORT_KEY, "AttributeType": "N"},
                {"AttributeName": schema.DELIVERY_INDEX_PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": schema.DELIVERY_INDEX_SORT_KEY, "AttributeType": "N"},
                {"AttributeName": schema.WATCH_INDEX_PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": schema.WATCH_INDEX_SORT_KEY, "AttributeType": "N"},
            ]),
        },
    })


def test_the_table_keeps_its_logical_id_with_the_new_indexes(default_app, gpu_app):
    # A GSI is added to the deployed table in place; a new logical id would be a new, empty table.
    for app in (default_app, gpu_app):
        table_id, table = one(app.data_json, "AWS::DynamoDB::Table")
        assert table_id == "StorageTableB43FDCE7"
        assert [i["IndexName"] for i in table["Properties"]["GlobalSecondaryIndexes"]] == [
            schema.TENANT_INDEX, schema.DELIVERY_INDEX, schema.WATCH_INDEX]


def test_the_tenant_index_holds_no_lease_watch_or_bulky_attribute():
    """What changes while a job runs (its lease, its watch entry) and what is large (its input, its result's text)
    stay out of the tenant index: those writes never reach a tenant's partition."""
    kept = set(schema.TENANT_INDEX_ATTRIBUTES)
    assert kept.isdisjoint({"lease_owner", "lease_expires_at", schema.WATCH_INDEX_SORT_KEY, schema.WATCH_INDEX_PARTITION_KEY,
                            "input", "hints", "result_json", "version", schema.TTL_ATTRIBUTE})


def test_the_first_step_of_the_two_step_deploy_keeps_the_old_tenant_index_beside_the_new_one():
    """CloudFormation creates or deletes one GSI per table update: the step that creates by_tenant_list keeps
    by_tenant (legacy_tenant_index), the next drops it; the table keeps its logical id throughout."""
    from infra_support import synth

    app = synth(legacy_tenant_index=True, tenant_index_shards=8, watch_index_shards=16)
    table_id, table = one(app.data_json, "AWS::DynamoDB::Table")
    assert table_id == "StorageTableB43FDCE7"
    indexes = {i["IndexName"]: i for i in table["Properties"]["GlobalSecondaryIndexes"]}
    assert list(indexes) == [schema.TENANT_INDEX, schema.LEGACY_TENANT_INDEX, schema.DELIVERY_INDEX, schema.WATCH_INDEX]
    assert indexes[schema.LEGACY_TENANT_INDEX]["Projection"] == {"ProjectionType": "ALL"}
    from infra_support import router_variables, sweeper_variables

    for variables in (router_variables(app), sweeper_variables(app)):  # every function is told the shards
        assert schema.IndexShards.parse(variables[schema.INDEX_SHARDS_ENV]) == schema.IndexShards(tenant=8, watch=16, delivery=4)


def test_bucket_is_encrypted_private_ssl_only_and_expires_job_objects(default_app):
    days = default_app.config.result_retention_days
    default_app.data_template.has_resource("AWS::S3::Bucket", {
        "DeletionPolicy": "Retain",
        "Properties": {
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True},
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LoggingConfiguration": {"DestinationBucketName": {"Ref": "StorageAccessLogs96FB524C"},
                                     "LogFilePrefix": "job-bucket/"},
            "LifecycleConfiguration": {"Rules": Match.array_with([
                Match.object_like({"Prefix": schema.RESULTS_PREFIX, "ExpirationInDays": days, "Status": "Enabled"}),
                Match.object_like({"Prefix": schema.INPUTS_PREFIX, "ExpirationInDays": days, "Status": "Enabled"}),
                Match.object_like({"Prefix": WEBHOOKS_PREFIX, "ExpirationInDays": days, "Status": "Enabled"}),
                Match.object_like({"Prefix": schema.UPLOADS_PREFIX, "ExpirationInDays": days, "Status": "Enabled"}),
            ])},
        },
    })


def test_both_buckets_refuse_plain_http_and_old_tls(default_app):
    policies = resources(default_app.data_json, "AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        conditions = [s.get("Condition") for s in policy["Properties"]["PolicyDocument"]["Statement"]
                      if s["Effect"] == "Deny"]
        assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
        assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in conditions


def test_job_data_policy_reads_and_writes_items_and_job_objects_only(default_app):
    statements = managed_policy_statements(default_app.data_json)
    granted = actions(statements)
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
            "s3:GetObject", "s3:PutObject"} <= granted
    # Nobody who holds it can drop the stores, delete a job or a result, or scan every tenant's jobs:
    # jobs and results expire (TTL, lifecycle rules), they are never deleted by the code.
    assert not {a for a in granted if "Delete" in a}
    assert not granted & {"dynamodb:BatchWriteItem", "dynamodb:PartiQLDelete", "dynamodb:TransactWriteItems"}
    assert not {a for a in granted if "*" in a or a in {"dynamodb:Scan", "s3:PutBucketPolicy"}}
    object_resources = [r for s in statements if s["Sid"] == "JobObjects" for r in s["Resource"]]
    assert sorted(r["Fn::Join"][1][-1] for r in object_resources) == sorted(
        f"/{prefix}*" for prefix in (schema.RESULTS_PREFIX, schema.INPUTS_PREFIX, WEBHOOKS_PREFIX, schema.UPLOADS_PREFIX))
    assert WEBHOOKS_PREFIX == "webhooks/"  # the dispatcher's event bodies
    assert schema.UPLOADS_PREFIX == "uploads/"  # POST /v1/uploads: the router presigns PUTs, the workers read them


def test_job_items_grant_exactly_the_item_calls_the_runtime_makes(default_app):
    # GetItem (jobs, key records), PutItem (conditional: jobs, key reservations), UpdateItem (lease renewal,
    # key completion and release: never DeleteItem), Query (the tenant, delivery and watch indexes), BatchGetItem
    # (a worker's heartbeat reading its jobs in flight).
    (items,) = [s for s in managed_policy_statements(default_app.data_json) if s["Sid"] == "JobItems"]
    assert set(items["Action"]) == {
        "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem", "dynamodb:Query", "dynamodb:DescribeTable"}


def test_job_items_cover_every_table_call_of_the_dynamodb_adapter(default_app):
    # The adapter is the only code that touches the table: each ``self._table.<call>(`` it makes needs its
    # action here (put_item -> dynamodb:PutItem), and none of them deletes.
    source = (REPO / "lambda_src" / "jobadapters" / "dynamo.py").read_text()
    called = {"dynamodb:" + "".join(part.capitalize() for part in call.split("_"))
              for call in re.findall(r"self\._table\.(?:meta\.client\.)?(\w+)\(", source)}
    # A transaction is authorized as the writes it holds (the terminal write's Put of the job, Update of the usage
    # counters): IAM has no TransactWriteItems action to grant (DynamoDB developer guide, "Using IAM with transactions").
    assert "dynamodb:TransactWriteItems" in called
    called = (called - {"dynamodb:TransactWriteItems"}) | {"dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"} <= called
    (items,) = [s for s in managed_policy_statements(default_app.data_json) if s["Sid"] == "JobItems"]
    assert called <= set(items["Action"])
    assert not {call for call in called if "Delete" in call}


def test_index_access_names_every_index_not_a_wildcard(default_app):
    (items,) = [s for s in managed_policy_statements(default_app.data_json) if s["Sid"] == "JobItems"]
    table, *indexes = items["Resource"]
    assert table == {"Fn::GetAtt": ["StorageTableB43FDCE7", "Arn"]}
    assert sorted(index["Fn::Join"][1][1] for index in indexes) == sorted(
        f"/index/{name}" for name in (schema.TENANT_INDEX, schema.DELIVERY_INDEX, schema.WATCH_INDEX))
    assert all(index["Fn::Join"][1][0] == table for index in indexes)


def test_secrets_are_generated_so_tasks_start_before_the_real_key_is_set(default_app):
    _, webhook = one(default_app.data_json, "AWS::SecretsManager::Secret", "SecretsWebhookSigningSecret")
    assert webhook["Properties"]["GenerateSecretString"] == {
        "ExcludePunctuation": True, "IncludeSpace": False, "PasswordLength": 64}
    _, anthropic = one(default_app.data_json, "AWS::SecretsManager::Secret", "SecretsAnthropicApiKey")
    assert "put-secret-value" in anthropic["Properties"]["Description"]


def test_data_stack_outputs_name_the_table_bucket_and_how_to_set_the_key(default_app):
    outputs = default_app.data_json["Outputs"]
    assert outputs["JobsTableName"]["Value"] == {"Ref": "StorageTableB43FDCE7"}
    assert outputs["JobBucketName"]["Value"] == {"Ref": "StorageBucket5CB7C8EA"}
    assert "aws secretsmanager put-secret-value" in str(outputs["SetClaudeKeyCommand"]["Value"])


def test_uploads_may_be_presigned_and_read_by_the_router_and_read_by_the_workers(default_app):
    """POST /v1/uploads: the router's role signs the PUT (PutObject on uploads/*) and HEADs it (GetObject); the
    workers read it. Both hold the job-data policy, whose JobObjects statement covers uploads/*."""
    from infra_support import attached_managed_policies, is_job_data_policy

    statements = managed_policy_statements(default_app.data_json)
    (objects,) = [s for s in statements if s["Sid"] == "JobObjects"]
    assert {"s3:GetObject", "s3:PutObject"} <= set(objects["Action"])
    assert "/uploads/*" in [r["Fn::Join"][1][-1] for r in objects["Resource"]]
    roles = {logical_id for logical_id, role in resources(default_app.service_json, "AWS::IAM::Role").items()
             if any(is_job_data_policy(arn) for arn in attached_managed_policies(default_app.service_json, logical_id))}
    assert any(r.startswith("RouterRole") for r in roles), roles
    assert any(r.startswith("CpuWorkerTaskDefinitionTaskRole") for r in roles), roles
