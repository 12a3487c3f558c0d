"""The batch lane's adapters: the Message Batches API through the anthropic SDK against the stand-in, the batch
records in DynamoDB and the batch lane's queue in SQS (moto), and one collector pass over all of them."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from jobadapters.batches import AnthropicBatches
from jobadapters.claude import STANDIN_API_KEY
from jobadapters.dynamo import DynamoBatchStore, DynamoJobStore
from jobadapters.sqs import SqsBatchInbox
from jobcore.batches import BatchGoneError
from jobcore.errors import ConflictError, ModelUnavailableError
from jobcore.ports import BatchRecord, BatchRequest
from local.claude_standin import ClaudeStandIn


@pytest.fixture
def fast_standin():
    with ClaudeStandIn(batch_delay_s=0.2, batch_cancel_delay_s=0.1) as server:
        yield server


def api_for(server: ClaudeStandIn) -> AnthropicBatches:
    return AnthropicBatches(api_key=lambda: STANDIN_API_KEY, base_url=server.base_url, max_retries=0)


def params(text: str) -> dict:
    return {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": text}]}


def wait_ended(api: AnthropicBatches, batch_id: str):
    for _ in range(100):
        info = api.retrieve(batch_id)
        if info.status == "ended":
            return info
        time.sleep(0.05)
    raise AssertionError("the batch never ended")


def test_a_batch_goes_through_the_sdk_and_its_results_come_back_by_custom_id(fast_standin):
    fast_standin.configure(batch_fail=[{"custom_id": "j1-r0", "error_type": "invalid_request_error"},
                                       {"custom_id": "j2-r0", "result": "expired"}])
    api = api_for(fast_standin)
    info = api.create([BatchRequest(f"j{n}-r0", params(f"Question {n}.")) for n in range(3)])
    assert info.status == "in_progress" and info.batch_id.startswith("msgbatch_")
    assert info.expires_at - info.created_at == 86_400_000
    ended = wait_ended(api, info.batch_id)
    assert ended.counts == {"processing": 0, "succeeded": 1, "errored": 1, "canceled": 0, "expired": 1}
    results = {r.custom_id: r for r in api.results(info.batch_id)}
    assert results["j0-r0"].kind == "succeeded" and results["j0-r0"].message["content"][0]["text"].startswith("Summary:")
    assert results["j0-r0"].message["usage"]["input_tokens"] > 0
    assert results["j1-r0"].kind == "errored" and results["j1-r0"].error["type"] == "invalid_request_error"
    assert results["j2-r0"].kind == "expired" and results["j2-r0"].message is None


def test_cancel_ends_the_batch_with_its_requests_canceled(fast_standin):
    fast_standin.configure(batch_delay_s=30)
    api = api_for(fast_standin)
    info = api.create([BatchRequest("j0-r0", params("Hello."))])
    assert api.cancel(info.batch_id).status in ("canceling", "ended")
    wait_ended(api, info.batch_id)
    assert [r.kind for r in api.results(info.batch_id)] == ["canceled"]


def test_sdk_errors_become_the_domains(fast_standin):
    api = api_for(fast_standin)
    with pytest.raises(BatchGoneError):
        api.retrieve("msgbatch_nope")
    unreachable = AnthropicBatches(api_key=lambda: STANDIN_API_KEY, base_url="http://127.0.0.1:9", max_retries=0, timeout_s=2)
    with pytest.raises(ModelUnavailableError) as raised:
        unreachable.create([BatchRequest("j0-r0", params("Hello."))])
    assert raised.value.retryable


def test_batch_records_are_written_on_their_version_and_listed_while_open(clients):
    store = DynamoBatchStore(clients.table)
    record = BatchRecord(batch_id="msgbatch_1", created_at=1_700_000_000_000, expires_at=1_700_086_400_000, model_id="m",
                         jobs=(("job_" + "a" * 32, 3), ("job_" + "b" * 32, 1)))
    store.create_batch(record)
    store.create_batch(replace(record, batch_id="msgbatch_2"))
    with pytest.raises(ConflictError):
        store.create_batch(record)
    assert store.open_batches() == ["msgbatch_1", "msgbatch_2"]
    assert store.get_batch("msgbatch_1") == record and store.get_batch("msgbatch_9") is None
    done = replace(record, status="done", ended_at=1_700_000_100_000, counts={"succeeded": 4}, version=1)
    store.save_batch(done, expected_version=0)
    with pytest.raises(ConflictError):
        store.save_batch(done, expected_version=0)
    assert store.open_batches() == ["msgbatch_2"] and store.get_batch("msgbatch_1") == done
    assert DynamoJobStore(clients.table).get("batch#msgbatch_1") is None  # never read as a job


def test_the_inbox_receives_deletes_and_releases(clients, aws):
    url = aws.queue_urls["cpu"]  # any queue: the inbox is the batch lane's in a deployment
    clients.sqs.send_message(QueueUrl=url, MessageBody='{"job_id": "job_1", "task": "claude.messages"}')
    clients.sqs.send_message(QueueUrl=url, MessageBody="not a job")
    inbox = SqsBatchInbox(clients.sqs, url)
    received = inbox.receive(limit=10)
    assert sorted(job_id or "" for job_id, _ in received) == ["", "job_1"]
    for job_id, receipt in received:
        (inbox.release(receipt, delay_s=0) if job_id else inbox.delete(receipt))
    assert [job_id for job_id, _ in inbox.receive(limit=10)] == ["job_1"]
