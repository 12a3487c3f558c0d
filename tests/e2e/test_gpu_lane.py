"""The GPU lane end to end: ``embeddings.encode`` through the local pipeline with the gpu lane on.

The pipeline builds a tiny but real ONNX model and tokenizer (``local.tiny_embedder``), uploads it to its
S3 as a deploy's ``embedding_model_s3_uri`` would hold it, and runs a gpu-lane worker that downloads and
loads it with ONNX Runtime (the CPU provider here: the machine has no GPU). The vectors are read back
through the job's presigned file URL, as a client would.
"""

from __future__ import annotations

import io
import urllib.request

import numpy as np

from local import client
from tests.e2e.harness import wait_until

PIPELINE_ARGS = ("--gpu",)


def api(pipeline, method, path, body=None):
    return client.call(method, pipeline["api_url"] + path, body)


def finished(pipeline, job_id):
    def done():
        _, _, job = api(pipeline, "GET", f"/v1/jobs/{job_id}")
        return job if job["status"] not in {"queued", "running"} else None
    return wait_until(done, timeout_s=60, what=f"job {job_id} finishing")


def test_tasks_route_embeddings_to_the_gpu_lane(pipeline):
    _, _, body = api(pipeline, "GET", "/v1/tasks")
    task = next(t for t in body["tasks"] if t["name"] == "embeddings.encode")
    assert task["route"]["lane"] == "gpu"
    assert task["profile"]["gpu"] is True


def test_an_embeddings_job_runs_on_the_gpu_worker_and_its_vectors_check_out(pipeline):
    texts = ["The invoice is due in thirty days.", "Vectors of numbers.", "The invoice is due in thirty days.",
             "zebra " * 200]
    status, _, job = api(pipeline, "POST", "/v1/jobs", {"task": "embeddings.encode", "input": {"texts": texts}})
    assert status == 202, job
    assert job["route"]["lane"] == "gpu"

    job = finished(pipeline, job["id"])
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["model"] == "tiny-embedder"
    assert result["provider"] == "CPUExecutionProvider"
    assert result["shape"] == [4, result["dimension"]] and result["dimension"] == 32
    assert result["truncated"] == 1  # the 200-word text, at the model's 64 tokens

    with urllib.request.urlopen(job["files"]["vectors.npy"]["url"], timeout=10) as response:
        vectors = np.load(io.BytesIO(response.read()), allow_pickle=False)
    assert vectors.shape == (4, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])  # identical texts, identical vectors
    assert np.abs(vectors[0] - vectors[1]).max() > 0.05  # different texts differ


def test_bad_embeddings_input_is_a_422_naming_the_field(pipeline):
    status, _, body = api(pipeline, "POST", "/v1/jobs", {"task": "embeddings.encode", "input": {"texts": ["ok", 7]}})
    assert status == 422 and "input.texts[1]" in body["error"]["message"]


def test_embeddings_cannot_run_sync(pipeline):
    status, _, body = api(pipeline, "POST", "/v1/jobs",
                          {"task": "embeddings.encode", "mode": "sync", "input": {"texts": ["hello"]}})
    assert status == 422 and "GPU" in body["error"]["message"]
