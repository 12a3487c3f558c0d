"""AWS calls per job, counted on the real adapters (moto): an inline job is recorded and finished in two
DynamoDB writes and nothing else; reading it back is one GetItem. bench/bench_calls.py reports every path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobadapters.dynamo import DynamoJobStore
from jobadapters.settings import RouterSettings
from jobadapters.wiring import build_runner, build_service
from jobcore.deliveries import Attempt, Delivery, DeliveryState
from jobcore.limits import MAX_METADATA_KEY_CHARS, MAX_METADATA_KEYS, MAX_METADATA_VALUE_CHARS, RESULT_IN_ITEM_BYTES
from jobcore.model import ATTEMPT_ERRORS_KEPT, ERROR_MESSAGE_CHARS, JobStatus, Webhook
from jobcore.requests import parse_submit
from jobcore.service import INLINE_INPUT_LIMIT
from jobcore.tasks import RunContext
from local.aws_calls import AwsCalls
from tests.adapters.support import LANES, make_job
from tests.fakes import ScriptedModel, text_response

MESSAGES = {"max_tokens": 20, "messages": [{"role": "user", "content": "Ping."}]}
TENANT = "tenant-a"


@pytest.fixture
def service(aws, clients):
    env = {
        "STAGE": "test", "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket, "LANES": json.dumps(LANES.to_dict()),
        "PRICE_OVERRIDES": "{}", "LANE_QUEUE_URLS": json.dumps({"cpu": aws.queue_urls["cpu"]}),
        "WEBHOOK_QUEUE_URL": aws.webhook_queue_url, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "MODEL_ID": "claude-test",
        "RESULT_RETENTION_DAYS": "30", "JOB_TTL_DAYS": "30",
    }
    built = build_service(RouterSettings.from_env(env), clients, env=env)
    built.llm = ScriptedModel(default=lambda params: text_response("pong"))  # never the network
    return built


@pytest.fixture
def calls(clients):
    return AwsCalls(clients.table, clients.sqs, clients.s3)


def submit(service: Any, **body: Any) -> Any:
    return service.submit(parse_submit({"task": "claude.messages", "input": MESSAGES, **body}), tenant_id=TENANT)


def test_an_inline_job_is_two_dynamodb_writes_record_it_then_finish_it_and_count_its_usage_at_once(service, calls):
    submitted = submit(service, mode="sync")

    assert submitted.job.status is JobStatus.SUCCEEDED and submitted.job.lane == "inline"
    # running under its inline lease; succeeded, with its tenant's usage of the day in the same transaction (issue 23)
    assert calls.take() == ["dynamodb:PutItem", "dynamodb:TransactWriteItems"]


def test_reading_a_finished_inline_job_is_one_getitem_with_its_result(service, calls):
    job_id = submit(service, mode="sync").job.job_id
    calls.take()

    view = service.view(service.get(job_id, tenant_id=TENANT))

    assert view["result"]["content"][0]["text"] == "pong"
    assert calls.take() == ["dynamodb:GetItem"]


def test_a_webhook_adds_only_its_hand_over_to_the_dispatcher(service, calls):
    submit(service, mode="sync", webhook={"url": "https://hooks.example.com/jobs"})

    assert calls.take() == ["dynamodb:PutItem", "dynamodb:TransactWriteItems", "sqs:SendMessage"]


def test_an_idempotency_key_adds_its_reservation_and_its_completion(service, calls):
    request = parse_submit({"task": "claude.messages", "input": MESSAGES, "mode": "sync"})
    first = service.submit(request, tenant_id=TENANT, idempotency_key="key-1")
    # the key reserved; the job; finished with its usage; the key completed
    assert calls.take() == ["dynamodb:PutItem", "dynamodb:PutItem", "dynamodb:TransactWriteItems", "dynamodb:UpdateItem"]

    again = service.submit(request, tenant_id=TENANT, idempotency_key="key-1")

    assert again.job.job_id == first.job.job_id and again.status_code == 200
    assert calls.take() == ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:GetItem"]  # refused; the key; the job


def test_a_worker_runs_a_queued_job_without_s3(service, calls, aws, clients):
    job_id = submit(service, mode="async").job.job_id
    calls.take()
    worker = build_runner(clients, aws.bucket, aws.webhook_queue_url, LANES, cost_model=None, role="worker-cpu",
                          result_retention_days=30)

    done = worker.process(job_id, ctx=RunContext(llm=service.llm, model_id="claude-test"), receive_count=1, max_receives=5)

    assert done.delete and done.job.status is JobStatus.SUCCEEDED
    # Claimed without a read, its lease item written; finished with its usage (one transaction); its lease item ended.
    assert calls.take() == ["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:TransactWriteItems", "dynamodb:UpdateItem"]


def test_the_largest_job_item_with_a_result_at_the_item_limit_fits_dynamodb(clients):
    """The sizing of RESULT_IN_ITEM_BYTES: a result at the limit beside the largest input kept in the item, the
    most metadata (4-byte characters), every attempt error and a long delivery log is still one item."""
    store = DynamoJobStore(clients.table)
    metadata = {f"{n:02d}".ljust(MAX_METADATA_KEY_CHARS, "k"): "😀" * MAX_METADATA_VALUE_CHARS for n in range(MAX_METADATA_KEYS)}
    errors = tuple({"attempt": n, "at": 0, "type": "model_unavailable", "message": "é" * ERROR_MESSAGE_CHARS}
                   for n in range(ATTEMPT_ERRORS_KEPT))
    attempts = tuple(Attempt(number=n, series=1, at_ms=0, duration_ms=30_000, status=500, error="server error",
                             detail="x" * 200) for n in range(60))
    url = "https://hooks.example.com/" + "p" * 2_000
    delivery = Delivery(event_id="evt_1", event_type="job.succeeded", url=url, state=DeliveryState.FAILED, attempts=attempts)
    job = make_job("job_big", status=JobStatus.SUCCEEDED, input={"text": "i" * (INLINE_INPUT_LIMIT - 20)}, metadata=metadata,
                   webhook=Webhook(url), attempt_errors=errors, delivery=delivery,
                   result_json=json.dumps({"text": "r" * (RESULT_IN_ITEM_BYTES - 20)}), result_bytes=RESULT_IN_ITEM_BYTES)

    store.create(job)

    assert store.get("job_big") == job
