"""A multi-call job keeps the answers it already has: when one of its calls is refused, the next run makes only the
refused calls again (documents.summarize, one call per document)."""

from __future__ import annotations

import json

from jobcore.errors import ModelUnavailableError
from jobcore.model import Job, JobStatus
from jobcore.schema_keys import partial_key
from jobcore.tasks import RunContext
from tests.fakes import ScriptedModel, harness, text_response

DOCUMENTS = {"documents": [{"id": f"d{i}", "text": f"Document number {i}."} for i in range(4)], "max_words": 20,
             "instructions": ""}


def test_a_summarize_job_whose_last_call_is_refused_retries_only_that_call():
    """GIVEN a 4-document summarize job whose call for the last document is refused once (429)
    WHEN the worker runs it, and again when it comes back
    THEN the second run calls the model for that document only: 5 calls in all, not 8, and the result and usage
    hold all four answers."""
    refused = []

    def answer(params):
        text = params["messages"][0]["content"]
        if text.endswith("3.") and not refused:
            refused.append(text)
            raise ModelUnavailableError("the model was rate-limited (429)", retry_after_s=1, status=429)
        return text_response(f"Summary: {text}", input_tokens=7, output_tokens=3)

    model = ScriptedModel(default=answer)
    h = harness()
    h.store.create(Job(job_id="job_1", tenant_id="t", task="documents.summarize", status=JobStatus.QUEUED, lane="cpu",
                       route_reason="cpu: test", created_at=h.clock.ms(), updated_at=h.clock.ms(), input=DOCUMENTS))
    ctx = RunContext(llm=model, model_id="claude-test")

    first = h.runner.process("job_1", ctx=ctx, receive_count=1, max_receives=5)
    assert first.requeue and len(model.calls) == 4
    assert sorted(h.blobs.get_json(partial_key("job_1"))) == ["doc-0", "doc-1", "doc-2"]
    h.clock.advance(first.retry_in_s)
    h.runner.process("job_1", ctx=ctx, receive_count=1, max_receives=5)

    done = h.store.get("job_1")
    assert done.status is JobStatus.SUCCEEDED
    assert len(model.calls) == 5 and model.calls[-1][0]["messages"][0]["content"] == "Document number 3."
    assert [s["summary"] for s in done_result(h, done)["summaries"]] == [f"Summary: Document number {i}." for i in range(4)]
    assert done.usage.model_calls == 4 and done.usage.input_tokens == 28


def done_result(h, job):
    return json.loads(job.result_json) if job.result_json else h.blobs.get_json(job.result_ref)
