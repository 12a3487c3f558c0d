"""``embeddings.encode``'s executor on a tiny but real model (``local.tiny_embedder``): ONNX Runtime's CPU
provider, the ``tokenizers`` library, model directories from disk and from S3 (moto)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError

from jobadapters.embeddings import (
    CPU,
    CUDA,
    EmbeddingsExecutor,
    ModelDownloadError,
    ModelUnavailableError,
    fetch_model,
    pick_providers,
)
from jobadapters.settings import ConfigError, EmbeddingSettings, WorkerSettings
from jobcore.context import JobContext
from jobcore.errors import JobCanceledError, JobError
from jobcore.model import Job, JobStatus, Mode
from jobcore.runner import JobRunner
from jobcore.tasks import CATALOGUE, RunContext
from jobcore.views import render
from local import resources, tiny_embedder
from tests.fakes import FakeClock, MemoryBlobs, MemoryJobStore, RecordingDeliveryQueue, make_lanes

SPEC = CATALOGUE["embeddings.encode"]
TEXTS = ["The invoice is due in thirty days.", "Vectors of numbers.", "The invoice is due in thirty days.",
         "A worker drains the queue", "GPUs encode many sentences"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_embedder.build(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def unpooled_dir(tmp_path_factory) -> Path:
    return tiny_embedder.build(tmp_path_factory.mktemp("model") / "tokens", pooled=False)


def executor(directory: Path) -> EmbeddingsExecutor:
    return EmbeddingsExecutor(EmbeddingSettings(model_dir=str(directory)))


def ctx(check=lambda: None) -> RunContext:
    return RunContext(llm=None, model_id="unused", check=check)  # type: ignore[arg-type]  # no model calls


def encode(directory: Path, texts: list[str], **options) -> tuple[dict, np.ndarray]:
    result = executor(directory).run(SPEC.validate({"texts": texts, **options}), ctx())
    (name, file), = result.files.items()
    assert name == result.output["file"]
    if name.endswith(".npy"):
        return result.output, np.load(io.BytesIO(file.data), allow_pickle=False)
    rows = [json.loads(line) for line in file.data.decode().splitlines()]
    assert [row["index"] for row in rows] == list(range(len(texts)))
    return result.output, np.array([row["vector"] for row in rows], dtype=np.float32)


def test_vectors_have_the_models_shape_unit_norms_and_tell_texts_apart(model_dir):
    output, vectors = encode(model_dir, TEXTS)
    assert output["model"] == "tiny-embedder" and output["dimension"] == tiny_embedder.DIMENSION
    assert output["shape"] == [len(TEXTS), tiny_embedder.DIMENSION] and vectors.shape == tuple(output["shape"])
    assert vectors.dtype == np.float32 and output["provider"] == CPU
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    distinct = [vectors[i] for i in (0, 1, 3, 4)]
    for i, a in enumerate(distinct):
        for b in distinct[i + 1:]:
            assert np.abs(a - b).max() > 0.05


def test_a_texts_vector_does_not_depend_on_its_batch_or_padding(model_dir):
    _, alone = encode(model_dir, [TEXTS[1]])
    _, padded = encode(model_dir, [TEXTS[1], "a much longer text " * 5], batch_size=2)
    _, split = encode(model_dir, TEXTS, batch_size=1)
    _, together = encode(model_dir, TEXTS, batch_size=64)
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-6)
    np.testing.assert_allclose(split, together, atol=1e-6)


def test_token_embedding_graphs_are_mean_pooled_here_to_the_same_vectors(model_dir, unpooled_dir):
    _, pooled = encode(model_dir, TEXTS)
    _, ours = encode(unpooled_dir, TEXTS)
    np.testing.assert_allclose(pooled, ours, atol=1e-6)


def test_normalisation_is_an_option(unpooled_dir):
    _, raw = encode(unpooled_dir, TEXTS, normalize=False)
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0)
    _, unit = encode(unpooled_dir, TEXTS, normalize=True)
    np.testing.assert_allclose(unit, raw / norms[:, None], atol=1e-6)


def test_texts_are_truncated_to_the_smaller_of_the_request_and_the_models_maximum(model_dir):
    long_text = "zebra crossing " * 100
    output, _ = encode(model_dir, [long_text, "short"])
    assert output["max_length"] == tiny_embedder.MAX_LENGTH and output["truncated"] == 1
    assert output["tokens"] <= tiny_embedder.MAX_LENGTH + 10
    output, _ = encode(model_dir, [long_text, "short text here"], max_length=4)
    assert output["max_length"] == 4 and output["truncated"] == 2 and output["tokens"] == 8
    output, _ = encode(model_dir, ["short"], max_length=4096)  # above the model's: the model's
    assert output["max_length"] == tiny_embedder.MAX_LENGTH


def test_json_lines_carry_the_same_vectors_as_npy(model_dir):
    _, npy = encode(model_dir, TEXTS)
    output, jsonl = encode(model_dir, TEXTS, format="jsonl")
    assert output["file"] == "vectors.jsonl"
    np.testing.assert_allclose(npy, jsonl, atol=1e-6)


def test_batches_follow_token_length_and_batch_size(model_dir):
    output, _ = encode(model_dir, TEXTS * 10, batch_size=8)
    assert output["batches"] == 7 and output["count"] == 50


def test_a_cancel_stops_the_job_between_batches(model_dir):
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 2:
            raise JobCanceledError("canceled")

    with pytest.raises(JobCanceledError):
        executor(model_dir).run(SPEC.validate({"texts": TEXTS * 4, "batch_size": 2}), ctx(check))
    assert len(calls) == 3


def test_cuda_is_chosen_whenever_onnx_runtime_offers_it():
    assert pick_providers([CUDA, CPU, "AzureExecutionProvider"]) == [CUDA, CPU]
    assert pick_providers(["AzureExecutionProvider", CPU]) == [CPU]


# --- where the model comes from ----------------------------------------------------------------------


def test_no_model_configured_fails_the_job_saying_how_to_configure_one():
    with pytest.raises(ModelUnavailableError, match="no embedding model is configured"):
        fetch_model(EmbeddingSettings(), s3=lambda: None)


def test_a_directory_without_the_model_files_is_named(tmp_path):
    with pytest.raises(ModelUnavailableError, match="lacks model.onnx, tokenizer.json.*embedding_model_s3_uri"):
        fetch_model(EmbeddingSettings(model_dir=str(tmp_path)), s3=lambda: None)


def test_a_model_in_s3_is_downloaded_once_and_wins_over_the_baked_directory(aws, boto_session, model_dir, tmp_path):
    uri = resources.upload_model(boto_session, model_dir, bucket="models", prefix="team/minilm")
    assert uri == "s3://models/team/minilm/"
    made = []

    def s3():
        made.append(1)
        return boto_session.client("s3")

    settings = EmbeddingSettings(model_uri=uri, model_dir="/nonexistent", cache_dir=str(tmp_path))
    first = fetch_model(settings, s3=s3)
    second = fetch_model(settings, s3=s3)
    assert first == second and len(made) == 1
    assert sorted(p.name for p in first.iterdir()) == [".complete", "embedding.json", "model.onnx", "tokenizer.json"]
    output, _ = encode(first, TEXTS[:2])
    assert output["model"] == "tiny-embedder"


def test_a_missing_s3_model_fails_the_job_and_a_flaky_s3_is_retried(aws, boto_session, tmp_path):
    boto_session.client("s3").create_bucket(Bucket="empty-models")
    settings = EmbeddingSettings(model_uri="s3://empty-models/none/", cache_dir=str(tmp_path))
    with pytest.raises(ModelUnavailableError, match=r"s3://empty-models/none/model.onnx is not readable \(404\)"):
        fetch_model(settings, s3=lambda: boto_session.client("s3"))

    class Throttled:
        def download_file(self, *args):
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "GetObject")

    with pytest.raises(ModelDownloadError, match="SlowDown|ClientError"):
        fetch_model(EmbeddingSettings(model_uri="s3://models/x/", cache_dir=str(tmp_path)), s3=Throttled)
    assert not issubclass(ModelDownloadError, JobError)  # not a JobError: the runner retries it


@pytest.mark.parametrize("uri", ["https://models/x/", "s3://UPPER/x/", "s3://a/x", "models/x"])  # s3://a: too short a bucket
def test_the_model_uri_is_checked_when_the_worker_starts(uri):
    with pytest.raises(ConfigError, match="EMBEDDING_MODEL_URI"):
        EmbeddingSettings.from_env({"EMBEDDING_MODEL_URI": uri})


def test_worker_settings_carry_the_embedding_model(tmp_path):
    from tests.core.test_settings import WORKER

    settings = WorkerSettings.from_env({**WORKER, "EMBEDDING_MODEL_URI": "s3://my-models/minilm/",
                                        "EMBEDDING_MODEL_DIR": "/opt/model"})
    assert settings.embedding.model_uri == "s3://my-models/minilm/"
    assert settings.embedding.s3_location() == ("my-models", "minilm")


# --- the runner stores the vectors next to the result ------------------------------------------------


def test_the_runner_stores_the_vectors_as_a_file_of_the_job_and_the_view_links_it(model_dir, monkeypatch):
    import jobcore.tasks.base as base

    monkeypatch.setattr(base, "load_executor", lambda path: executor(model_dir))
    clock, blobs, store = FakeClock(), MemoryBlobs(), MemoryJobStore()
    runner = JobRunner(context=JobContext(store=store, blobs=blobs, clock_ms=clock.ms, lanes=make_lanes(gpu_enabled=True)),
                       deliveries=RecordingDeliveryQueue())
    job = Job(job_id="job_1", tenant_id="t", task=SPEC.name, status=JobStatus.RUNNING, lane="gpu", route_reason="gpu",
              mode=Mode.AUTO, created_at=clock.ms(), updated_at=clock.ms(), started_at=clock.ms(),
              input=SPEC.validate({"texts": TEXTS}))
    store.create(job)
    done = runner.execute(job, ctx()).job
    assert done.status is JobStatus.SUCCEEDED
    key = "results/job_1/vectors.npy"
    data, content_type = blobs.files[key]
    assert np.load(io.BytesIO(data)).shape == (len(TEXTS), tiny_embedder.DIMENSION)
    assert done.files == {"vectors.npy": {"key": key, "bytes": len(data), "content_type": content_type}}
    view = render(store.get("job_1"), blobs)
    assert view["files"]["vectors.npy"]["bytes"] == len(data) and view["files"]["vectors.npy"]["url"]
    assert view["result"]["shape"] == [len(TEXTS), tiny_embedder.DIMENSION]
