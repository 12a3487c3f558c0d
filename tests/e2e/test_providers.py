"""Failover end to end: the local pipeline with model_providers ["anthropic", "bedrock"], both answered by the
stand-in (the Messages API and Bedrock's InvokeModel path), the Anthropic side answering 529 to every call.

Inline and queued jobs all succeed through Bedrock while it does, and name it in their usage; once Anthropic
answers again, traffic returns to it after the breakers' cool-down (3 s here, BREAKER_COOL_DOWN_S; 30 s by
default). The issue's full run (100 queued + 20 inline over 60 s of 529s) is the same test with bigger
numbers; this one keeps them small for the suite. Nothing here races a timer: the 529s last until the test
clears them, and the return to Anthropic is awaited, bounded, rather than timed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.bodies import SHORT
from tests.e2e.harness import StandIn, finished_job, start_pipeline, stop_pipeline, submit, wait_until

INLINE_JOBS, QUEUED_JOBS = 4, 6
COOL_DOWN_S = 3


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    ready = start_pipeline(Path(tmp_path_factory.mktemp("providers")), ("--providers", "anthropic,bedrock"),
                           env={"BREAKER_COOL_DOWN_S": str(COOL_DOWN_S)})
    yield ready
    stop_pipeline(ready)


def providers_of(job: dict[str, Any]) -> set[str]:
    return set(job["usage"].get("by_provider", {}))


def test_jobs_fail_over_to_bedrock_while_anthropic_is_overloaded_and_come_back(pipeline):
    standin = StandIn(pipeline["standin_url"])
    standin(fail={"status": 529})
    queued = [submit(pipeline, {**SHORT, "mode": "async"}) for _ in range(QUEUED_JOBS)]
    inline = [submit(pipeline, {**SHORT, "mode": "sync"}) for _ in range(INLINE_JOBS)]
    jobs = [finished_job(pipeline, job["id"], timeout_s=120) for job in queued + inline]
    assert [job["status"] for job in jobs] == ["succeeded"] * len(jobs)
    assert all(providers_of(job) == {"bedrock"} for job in jobs)
    stats = standin.stats()
    assert stats["bedrock"]["by_status"].get("200", 0) >= len(jobs)
    refused = stats["by_status"].get("529", 0)
    assert 0 < refused < len(jobs) * 4  # the breakers stopped the calls to Anthropic (4: one try and 3 SDK retries)

    standin(fail=None)

    def anthropic_again() -> bool:
        return providers_of(finished_job(pipeline, submit(pipeline, {**SHORT, "mode": "sync"})["id"])) == {"anthropic"}

    wait_until(anthropic_again, timeout_s=COOL_DOWN_S * 10, every_s=0.5, what="a job answered by Anthropic again")
    after = finished_job(pipeline, submit(pipeline, {**SHORT, "mode": "async"})["id"], timeout_s=60)
    assert providers_of(after) == {"anthropic"}
