"""``documents.summarize``: a long job. One Claude call per document, run concurrently, combined.

A background task: nobody waits on it, so the router queues it for a worker, which makes the calls side by
side (Claude work is I/O-bound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jobcore.errors import InvalidInputError
from jobcore.routing import TaskProfile, Trigger
from jobcore.tasks.base import ModelRequest, text_of
from jobcore.tasks.caching import cached_system
from jobcore.validation import expect_object, get, in_range, non_empty, reject_unknown

MAX_DOCUMENTS = 500
MAX_ID_CHARS = 200  # an id is echoed in the digest, one per document
# Sent with every document's call, in the system prompt: long enough (about 5,000 tokens) for a style guide
# or a rubric, which is then the request's cached prefix (see SummarizeExecutor).
MAX_INSTRUCTIONS_CHARS = 20_000
_SECONDS_PER_DOCUMENT = 8.0
_ASSUMED_CONCURRENCY = 8


class SummarizeTask:
    name = "documents.summarize"
    description = "Many documents in; one summary each (one Claude call each, concurrently) and a digest out."
    profile = TaskProfile(
        expected_duration_s=60.0, memory_mb=1024, trigger=Trigger.BACKGROUND, typical_input_tokens=20_000,
        typical_output_tokens=2_000, timeout_s=3_600.0,
    )
    executor = "jobcore.tasks.summarize:SummarizeExecutor"
    # The input as a JSON Schema (the API description's; :meth:`validate` is the authority: ids unique too).
    input_schema: dict[str, Any] = {
        "type": "object", "additionalProperties": False, "required": ["documents"],
        "properties": {
            "documents": {"type": "array", "minItems": 1, "maxItems": MAX_DOCUMENTS, "items": {
                "type": "object", "additionalProperties": False, "required": ["text"],
                "properties": {
                    "id": {"type": "string", "maxLength": MAX_ID_CHARS, "description": "Unique; default: its position, from 1"},
                    "text": {"type": "string", "minLength": 1, "maxLength": 400_000},
                },
            }},
            "max_words": {"type": "integer", "minimum": 5, "maximum": 1000, "default": 80},
            "instructions": {"type": "string", "maxLength": MAX_INSTRUCTIONS_CHARS, "default": ""},
        },
    }

    def validate(self, payload: Any) -> dict[str, Any]:
        body = expect_object(payload, "input")
        reject_unknown(body, {"documents", "max_words", "instructions"}, "input")
        documents = get(body, "documents", list, "input")
        in_range(len(documents), "input.documents", 1, MAX_DOCUMENTS)
        normalised = []
        for i, doc in enumerate(documents):
            path = f"input.documents[{i}]"
            expect_object(doc, path)
            reject_unknown(doc, {"id", "text"}, path)
            text = non_empty(get(doc, "text", str, path), f"{path}.text", max_chars=400_000)
            doc_id = get(doc, "id", str, path, required=False, default=str(i + 1))
            if len(doc_id) > MAX_ID_CHARS:
                raise InvalidInputError(f"{path}.id", f"must be at most {MAX_ID_CHARS} characters")
            normalised.append({"id": doc_id, "text": text})
        if len({d["id"] for d in normalised}) != len(normalised):
            raise InvalidInputError("input.documents", "ids must be unique")
        max_words = in_range(get(body, "max_words", int, "input", required=False, default=80), "input.max_words", 5, 1000)
        instructions = get(body, "instructions", str, "input", required=False, default="")
        if len(instructions) > MAX_INSTRUCTIONS_CHARS:
            raise InvalidInputError("input.instructions", f"must be at most {MAX_INSTRUCTIONS_CHARS:,} characters")
        return {"documents": normalised, "max_words": max_words, "instructions": instructions}

    def expected_duration_s(self, payload: dict[str, Any]) -> float:
        waves = math.ceil(len(payload["documents"]) / _ASSUMED_CONCURRENCY)
        return waves * _SECONDS_PER_DOCUMENT



class SummarizeExecutor:
    def requests(self, payload: dict[str, Any], *, model_id: str) -> list[ModelRequest]:
        prompt = f"Summarize in at most {payload['max_words']} words. {payload['instructions']}".strip()
        # Every document is its own request with the same system prompt: that prompt is the shared prefix,
        # marked for caching when it is long enough for the model (long instructions), else sent as text.
        system = cached_system(prompt, model_id)
        return [
            ModelRequest(f"doc-{i}", {
                "model": model_id,
                "max_tokens": payload["max_words"] * 2 + 50,
                "system": system,
                "messages": [{"role": "user", "content": doc["text"]}],
            })
            for i, doc in enumerate(payload["documents"])
        ]

    def assemble(self, payload: dict[str, Any], responses: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        summaries = [
            {"id": doc["id"], "summary": text_of(responses[f"doc-{i}"]).strip()} for i, doc in enumerate(payload["documents"])
        ]
        digest = "\n".join(f"[{s['id']}] {s['summary']}" for s in summaries)
        return {"documents": len(summaries), "summaries": summaries, "digest": digest}
