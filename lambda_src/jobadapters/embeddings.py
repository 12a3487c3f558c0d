"""``embeddings.encode`` on ONNX Runtime: the executor the GPU lane's worker loads (never the router).

A model is a directory holding ``model.onnx`` (a sentence-embedding model exported to ONNX), its
``tokenizer.json`` (the ``tokenizers`` library's format) and optionally ``embedding.json``
(``{"name": ..., "max_length": ...}``). It comes from one of two places (:class:`EmbeddingSettings`):

- ``EMBEDDING_MODEL_URI=s3://bucket/prefix/``: downloaded once per process start into a cache directory
  (the deploy's ``embedding_model_s3_uri``);
- ``EMBEDDING_MODEL_DIR``: a directory in the image (the GPU image bakes a public model at build time).

The session runs on CUDA when ONNX Runtime offers it (``onnxruntime-gpu`` on a GPU instance) and on the
CPU otherwise; the job's result says which provider actually ran. The graph may output token embeddings
``[batch, tokens, dim]`` (pooled here: mean over the attention mask) or sentence embeddings
``[batch, dim]`` (used as they are).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from jobadapters.settings import EmbeddingSettings
from jobcore.errors import JobError
from jobcore.model import Usage
from jobcore.tasks.base import OutputFile, RunContext, TaskResult
from jobcore.tasks.embeddings import plan_batches

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "embedding.json"
REQUIRED_FILES = (MODEL_FILE, TOKENIZER_FILE)
DEFAULT_MAX_LENGTH = 512  # when neither embedding.json nor the tokenizer says
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ModelUnavailableError(JobError):
    """The embedding model cannot be used: none configured, files missing, or a graph we cannot feed.
    A deployment problem: the job fails at once, naming it."""

    type = "model_unavailable"


class ModelDownloadError(Exception):
    """S3 would not hand over the model this time: retried like any transient failure (not a JobError)."""

    type = "model_unavailable"


def pick_providers(available: list[str]) -> list[str]:
    """CUDA first when this ONNX Runtime build has it (CPU stays as the fallback for unsupported ops)."""
    return [CUDA, CPU] if CUDA in available else [CPU]


def fetch_model(settings: EmbeddingSettings, *, s3: Callable[[], Any]) -> Path:
    """The model directory: the configured S3 prefix downloaded into the cache (once: a complete copy is
    reused), or the configured directory. ModelUnavailableError naming what is missing otherwise."""
    if settings.model_uri:
        bucket, prefix = settings.s3_location()
        target = Path(settings.cache_dir) / hashlib.sha256(settings.model_uri.encode()).hexdigest()[:16]
        if not (target / ".complete").exists():
            _download(s3(), bucket, prefix, target)
        return target
    if settings.model_dir:
        directory = Path(settings.model_dir)
        missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
        if missing:
            raise ModelUnavailableError(
                f"the embedding model directory {directory} lacks {', '.join(missing)}: build the GPU image with "
                "EMBEDDING_MODEL_REPO, or deploy with -c embedding_model_s3_uri=s3://bucket/prefix/")
        return directory
    raise ModelUnavailableError("no embedding model is configured for this worker (EMBEDDING_MODEL_URI or EMBEDDING_MODEL_DIR)")


def _download(client: Any, bucket: str, prefix: str, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in (*REQUIRED_FILES, META_FILE):
        key = f"{prefix}/{name}" if prefix else name
        partial = target / f".{name}.part"
        try:
            client.download_file(bucket, key, str(partial))
        except Exception as error:  # noqa: BLE001 - any S3 failure means the same to the job: no model
            if name == META_FILE:
                continue  # optional
            code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "403", "AccessDenied", "NoSuchBucket"}:  # won't change by retrying
                raise ModelUnavailableError(f"the embedding model's s3://{bucket}/{key} is not readable ({code}): "
                                            "check embedding_model_s3_uri and the files in it") from None
            raise ModelDownloadError(f"cannot read the embedding model's s3://{bucket}/{key} "
                                     f"({type(error).__name__})") from None
        partial.replace(target / name)
    (target / ".complete").touch()


class Encoder:
    """One loaded model: its tokenizer and ONNX Runtime session (thread-safe; one per process)."""

    def __init__(self, directory: Path, *, providers: list[str] | None = None):
        meta = _read_meta(directory)
        self.name: str = str(meta.get("name") or directory.name)
        self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        truncation = self.tokenizer.truncation
        self.max_length = int(meta.get("max_length") or (truncation or {}).get("max_length") or DEFAULT_MAX_LENGTH)
        self.tokenizer.no_padding()  # batches are padded here, each to its own longest text
        self.session = ort.InferenceSession(str(directory / MODEL_FILE),
                                            providers=providers or pick_providers(ort.get_available_providers()))
        self.provider = self.session.get_providers()[0]
        self.inputs = [i.name for i in self.session.get_inputs()]
        unknown = [name for name in self.inputs if name not in _INPUTS]
        if unknown or "input_ids" not in self.inputs:
            raise ModelUnavailableError(f"the model's inputs are {self.inputs}; expected input_ids and optionally "
                                        "attention_mask, token_type_ids")
        self.output = self.session.get_outputs()[0].name
        self._lock = threading.Lock()  # the tokenizer's truncation setting is shared state

    def tokenize(self, texts: list[str], max_length: int) -> tuple[list[list[int]], list[list[int]], int]:
        """Token ids and type ids of each text, truncated to ``max_length``; and how many were truncated."""
        with self._lock:
            self.tokenizer.enable_truncation(max_length)
            encodings = self.tokenizer.encode_batch(texts)
        truncated = sum(1 for e in encodings if e.overflowing)
        return [e.ids for e in encodings], [e.type_ids for e in encodings], truncated

    def embed(self, ids: list[list[int]], type_ids: list[list[int]]) -> np.ndarray:
        """One batch: padded to its longest text, run, pooled where the graph did not pool → [n, dim] float32."""
        width = max(len(row) for row in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        types = np.zeros((len(ids), width), dtype=np.int64)
        for row, (tokens, kinds) in enumerate(zip(ids, type_ids, strict=True)):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
            types[row, : len(kinds)] = kinds
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
        (output,) = self.session.run([self.output], {name: feeds[name] for name in self.inputs})
        output = np.asarray(output, dtype=np.float32)
        if output.ndim == 3:  # token embeddings: mean over the real (unmasked) tokens
            weights = mask[:, :, None].astype(np.float32)
            output = (output * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if output.ndim != 2 or output.shape[0] != len(ids):
            raise ModelUnavailableError(f"the model's output {self.output!r} has shape {list(output.shape)}; expected "
                                        "[batch, dim] or [batch, tokens, dim]")
        return output


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ModelUnavailableError(f"{path} is not JSON") from None
    return meta if isinstance(meta, dict) else {}


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def vectors_file(vectors: np.ndarray, output_format: str) -> tuple[str, OutputFile]:
    if output_format == "npy":
        buffer = io.BytesIO()
        np.save(buffer, vectors, allow_pickle=False)
        return "vectors.npy", OutputFile(buffer.getvalue(), "application/octet-stream")
    lines = (json.dumps({"index": i, "vector": [float(x) for x in row]}, separators=(",", ":")) for i, row in enumerate(vectors))
    return "vectors.jsonl", OutputFile(("\n".join(lines) + "\n").encode(), "application/x-ndjson")


class EmbeddingsExecutor:
    """The RunExecutor of ``embeddings.encode``. The model loads on the first job (once per process), from
    ``settings`` or, by default, the environment."""

    def __init__(self, settings: EmbeddingSettings | None = None, *, s3: Callable[[], Any] | None = None,
                 providers: list[str] | None = None):
        self._settings = settings
        self._s3 = s3 or _default_s3
        self._providers = providers  # None: CUDA when available (pick_providers)
        self._encoder: Encoder | None = None
        self._loading = threading.Lock()

    def encoder(self) -> Encoder:
        with self._loading:
            if self._encoder is None:
                settings = self._settings or EmbeddingSettings.from_env(os.environ)
                directory = fetch_model(settings, s3=self._s3)
                self._encoder = Encoder(directory, providers=self._providers)
                log.info("embedding model %s loaded from %s on %s", self._encoder.name, settings.describe(),
                         self._encoder.provider)
            return self._encoder

    def run(self, payload: dict[str, Any], ctx: RunContext) -> TaskResult:
        encoder = self.encoder()
        texts: list[str] = payload["texts"]
        max_length = min(payload.get("max_length") or encoder.max_length, encoder.max_length)
        ids, type_ids, truncated = encoder.tokenize(texts, max_length)
        vectors: np.ndarray | None = None
        batches = plan_batches([len(row) for row in ids], max_texts=payload["batch_size"])
        for batch in batches:
            ctx.check()  # a cancel or the deadline stops the job between batches
            embedded = encoder.embed([ids[i] for i in batch], [type_ids[i] for i in batch])
            if vectors is None:
                vectors = np.zeros((len(texts), embedded.shape[1]), dtype=np.float32)
            vectors[batch] = embedded
        assert vectors is not None  # validation guarantees at least one text
        if payload["normalize"]:
            vectors = normalized(vectors)
        name, file = vectors_file(vectors, payload["format"])
        output = {
            "model": encoder.name, "dimension": int(vectors.shape[1]), "count": len(texts),
            "shape": [int(n) for n in vectors.shape], "dtype": "float32", "normalized": bool(payload["normalize"]),
            "format": payload["format"], "file": name, "provider": encoder.provider, "max_length": max_length,
            "truncated": truncated, "tokens": sum(len(row) for row in ids), "batches": len(batches),
        }
        return TaskResult(output, Usage(), {name: file})


def _default_s3() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"}))
