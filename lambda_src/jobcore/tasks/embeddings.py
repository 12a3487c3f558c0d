"""``embeddings.encode``: many texts in, one vector each out, on the GPU lane.

The spec (what the router imports) and the batch plan (pure arithmetic over token lengths) live here;
the executor, which needs ONNX Runtime, ``tokenizers`` and numpy, lives in :mod:`jobadapters.embeddings`
and is imported only by the worker that runs the job.

Input::

    {"texts": ["...", ...],          # 1..MAX_TEXTS non-empty strings
     "normalize": true,              # L2-normalise each vector (default true)
     "max_length": 256,              # tokens per text; never more than the model's own maximum
     "batch_size": 64,               # texts per ONNX Runtime call at most
     "format": "npy"}                # the vectors file: "npy" (float32, shape [n, d]) or "jsonl"

The result names the model, its dimension, the vectors' shape, how many texts were truncated and which
execution provider ran (``CUDAExecutionProvider`` on the GPU lane); the vectors themselves are a file of
the job (``files.vectors.npy``: a presigned URL), never inline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobcore.errors import InvalidInputError
from jobcore.routing import TaskProfile, Trigger
from jobcore.validation import expect_object, get, in_range, reject_unknown

MAX_TEXTS = 20_000
MAX_TEXT_CHARS = 100_000
MAX_BATCH_SIZE = 1_024
MAX_LENGTH_TOKENS = 8_192
FORMATS = ("npy", "jsonl")
# Padded tokens in one ONNX Runtime call at most: bounds a batch's activation memory whatever its texts.
TOKENS_PER_BATCH = 32_768
# Throughput of a MiniLM-class sentence model (6 layers, 384 wide) on ~128-token texts, end to end
# (tokenize, run, pool, write): the routing estimate and the cost comparison (`make cost`) use these.
# GPU: one A10G/L4, fp32, batches of 64; an assumption, conservative against published V100 figures
# (~14,000/s for the model alone): no GPU was available to measure it. CPU: per vCPU, ONNX Runtime's CPU
# provider, measured (bench/bench_embeddings.py: ~42 texts/s on 2 vCPUs; bench/README.md).
GPU_TEXTS_PER_S = 2_000.0
CPU_TEXTS_PER_S_PER_VCPU = 20.0
_LOAD_S = 2.0  # a job's fixed part: its input read, its file written


class EmbeddingsTask:
    name = "embeddings.encode"
    description = "Many texts in; one embedding vector each out (ONNX Runtime on the GPU lane), as .npy or JSON lines."
    profile = TaskProfile(
        expected_duration_s=10.0, memory_mb=4096, gpu=True, trigger=Trigger.BACKGROUND, timeout_s=1_800.0, model_calls=False,
    )
    executor = "jobadapters.embeddings:EmbeddingsExecutor"
    # The input as a JSON Schema (the API description's; :meth:`validate` is the authority).
    input_schema: dict[str, Any] = {
        "type": "object", "additionalProperties": False, "required": ["texts"],
        "properties": {
            "texts": {"type": "array", "minItems": 1, "maxItems": MAX_TEXTS,
                      "items": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}},
            "normalize": {"type": "boolean", "default": True},
            "max_length": {"type": "integer", "minimum": 2, "maximum": MAX_LENGTH_TOKENS},
            "batch_size": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE, "default": 64},
            "format": {"enum": list(FORMATS), "default": "npy"},
        },
    }

    def validate(self, payload: Any) -> dict[str, Any]:
        body = expect_object(payload, "input")
        reject_unknown(body, {"texts", "normalize", "max_length", "batch_size", "format"}, "input")
        texts = get(body, "texts", list, "input")
        if not texts:
            raise InvalidInputError("input.texts", "must not be empty")
        if len(texts) > MAX_TEXTS:
            raise InvalidInputError("input.texts", f"must hold at most {MAX_TEXTS:,} texts, not {len(texts):,}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"input.texts[{i}]", "must be a string")
            if not text.strip():
                raise InvalidInputError(f"input.texts[{i}]", "must not be empty")
            if len(text) > MAX_TEXT_CHARS:
                raise InvalidInputError(f"input.texts[{i}]", f"must be at most {MAX_TEXT_CHARS:,} characters")
        normalize = get(body, "normalize", bool, "input", required=False, default=True)
        max_length = get(body, "max_length", int, "input", required=False)
        if max_length is not None:
            in_range(max_length, "input.max_length", 2, MAX_LENGTH_TOKENS)
        batch_size = in_range(get(body, "batch_size", int, "input", required=False, default=64), "input.batch_size",
                              1, MAX_BATCH_SIZE)
        output_format = get(body, "format", str, "input", required=False, default="npy")
        if output_format not in FORMATS:
            raise InvalidInputError("input.format", f"must be one of {', '.join(FORMATS)}")
        normalised = {"texts": texts, "normalize": normalize, "batch_size": int(batch_size), "format": output_format}
        if max_length is not None:
            normalised["max_length"] = int(max_length)
        return normalised

    def expected_duration_s(self, payload: dict[str, Any]) -> float:
        return round(_LOAD_S + len(payload["texts"]) / GPU_TEXTS_PER_S, 1)


def plan_batches(lengths: Sequence[int], *, max_texts: int, max_tokens: int = TOKENS_PER_BATCH) -> list[list[int]]:
    """Indices of ``lengths`` (token counts) grouped into batches of similar length.

    Texts are taken shortest first, so a batch pads little; a batch holds at most ``max_texts`` texts and
    at most ``max_tokens`` once padded to its longest (a text longer than ``max_tokens`` gets a batch of
    its own). Every index appears in exactly one batch.
    """
    if max_texts < 1 or max_tokens < 1:
        raise ValueError("max_texts and max_tokens must be positive")
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        padded = lengths[index] * (len(current) + 1)  # sorted: this text is the batch's longest so far
        if current and (len(current) >= max_texts or padded > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
