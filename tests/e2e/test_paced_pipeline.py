"""Admission end to end: the local pipeline with its Claude stand-in limited as Anthropic limits (``--model-limits``)
and the same limits as the pipeline's budget (cdk.json's model_rate_limits, as a deploy reads it), the real router,
worker, anthropic SDK and DynamoDB (moto) between them."""

from __future__ import annotations

import pytest

from local import client
from tests.e2e.harness import StandIn, finished_job, start_pipeline, stop_pipeline

LIMITS = {"rpm": 30, "itpm": 100_000, "otpm": 100_000}
DOCUMENTS = [{"id": f"d{i}", "text": f"Paced document number {i}."} for i in range(3)]


@pytest.fixture(scope="module")
def paced(tmp_path_factory):
    limits = ",".join(f"{name}={value}" for name, value in LIMITS.items())
    ready = start_pipeline(tmp_path_factory.mktemp("paced"), ("--model-limits", limits))
    yield ready
    stop_pipeline(ready)


def test_queued_jobs_beyond_the_burst_are_paced_and_all_succeed_and_the_budget_is_visible(paced):
    """GIVEN a budget of 30 requests a minute, of which queued work may burst 24 (the inline reserve kept)
    WHEN 10 summarize jobs of 3 calls each (30 calls) are queued at once
    THEN all of them succeed, some having waited for grants, the stand-in refused none of its exactly 30 calls (no
    429, no blind retry), and GET /v1/capacity shows the budget nearly spent, with the caller's own share."""
    api = paced["api_url"]
    ids = []
    for _ in range(10):
        status, _, job = client.call("POST", f"{api}/v1/jobs", {"task": "documents.summarize", "input": {"documents": DOCUMENTS}})
        assert status == 202, job
        ids.append(job["id"])
    jobs = [finished_job(paced, job_id, timeout_s=90) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 10
    assert sum(job.get("capacity_wait_ms", 0) for job in jobs) > 0  # calls beyond the burst waited for grants
    stats = StandIn(paced["standin_url"]).stats()
    assert stats["requests"] == 30 and not any(stats["limits"]["refused_by"].values()) and "429" not in stats["by_status"]

    status, _, capacity = client.call("GET", f"{api}/v1/capacity")
    assert status == 200 and capacity["admission"] == "on"
    budget = capacity["budgets"][0]
    assert budget["limits"] == LIMITS and budget["your_recent_share"] == 1.0
    assert budget["in_use"]["requests"] > 0.5  # 30 requests within a minute of a budget of 30
