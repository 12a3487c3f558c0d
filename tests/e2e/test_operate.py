"""Operating the pipeline, end to end on the local runtime: one trace per job across the queue, the EMF metrics
with their dimensions, usage per tenant from the terminal writes, and budgets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobcore.costing import CostModel
from jobcore.tasks import CATALOGUE
from local import client, traces
from local.gateway import api_key_id
from local.pipeline import deployment_config
from tests.bodies import LONG, SHORT
from tests.e2e.harness import StandIn, finished_job, start_pipeline, stop_pipeline, wait_until

TENANT_A, TENANT_B, BUDGETED = "usage-a", "usage-b", "budgeted"
# A micro-dollar over one job's estimate: the first job is accepted, any later one would pass the budget.
BUDGET_MARGIN_USD = 0.000001


def short_estimate_usd() -> float:
    """SHORT's estimate, computed as the router does (its task's profile, the deployment's cost model)."""
    config = deployment_config()
    spec = CATALOGUE[SHORT["task"]]
    payload = spec.validate(SHORT["input"])
    estimate = CostModel(config.prices(), config.lanes()).estimate(
        lane="inline", model_id=config.model_id, expected_duration_s=spec.expected_duration_s(payload),
        input_tokens=spec.profile.typical_input_tokens, output_tokens=spec.profile.typical_output_tokens)
    return float(estimate["total"])


@pytest.fixture(scope="module")
def operated(tmp_path_factory) -> Any:
    logs = tmp_path_factory.mktemp("operate")
    budget = round(short_estimate_usd() + BUDGET_MARGIN_USD, 8)
    ready = start_pipeline(logs, ("--traces", str(logs / "spans.jsonl"), "--metrics", str(logs / "metrics.emf")),
                           config={"tenant_budgets_usd": {api_key_id(BUDGETED): budget}})
    ready["budget"] = budget
    yield ready
    stop_pipeline(ready)


def call(method: str, url: str, body: Any = None, *, key: str) -> tuple[int, dict[str, str], Any]:
    return client.call(method, url, body, key=key)


def spans(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    return traces.read(Path(pipeline["logs"]) / "spans.jsonl")


def test_a_queued_job_is_one_trace_from_the_api_to_the_model_and_the_webhook(operated):
    receiver = operated["receiver"]
    status, _, job = call("POST", f"{operated['api_url']}/v1/jobs", {**LONG, "webhook": {"url": receiver.url}}, key=TENANT_A)
    assert status == 202, job
    assert receiver.wait_for(job["id"], timeout_s=60) is not None
    trace_id = finished_job(operated, job["id"], key=TENANT_A)["trace_id"]
    assert len(trace_id) == 32

    trace = wait_until(lambda: (found := traces.of_trace(spans(operated), trace_id))
                       and any(s["name"] == "webhook.deliver" for s in found) and found,
                       timeout_s=30, what="the webhook's span")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in trace:
        by_name.setdefault(span["name"], []).append(span)
    (api,) = [s for s in by_name["api.request"] if s["attributes"].get("http.response.status_code") == 202]
    assert {"job.route", "worker.run", "job.run", "model.call", "webhook.deliver"} <= set(by_name)
    (run,) = by_name["worker.run"]
    # The worker's run is linked to the submit (the request's span), in the same trace.
    assert [(link["trace_id"], link["span_id"]) for link in run["links"]] == [(trace_id, api["span_id"])]
    assert run["service"] == "worker-cpu" and api["service"] == "router" and by_name["webhook.deliver"][0]["service"] == "webhooks"
    spans_by_id = {s["span_id"]: s for s in trace}
    for call_span in by_name["model.call"]:  # each model call under the worker's run
        parent, chain = call_span["parent_id"], []
        while parent in spans_by_id:
            chain.append(spans_by_id[parent]["name"])
            parent = spans_by_id[parent]["parent_id"]
        assert chain[:2] == ["job.run", "worker.run"], chain
        assert call_span["attributes"]["gen_ai.usage.output_tokens"] > 0
    assert len(by_name["model.call"]) == 2  # one per document
    print(traces.tree(trace))


def ancestry(span: dict[str, Any], trace: list[dict[str, Any]]) -> list[str]:
    """The names of ``span``'s parents, nearest first."""
    by_id, names, parent = {s["span_id"]: s for s in trace}, [], span["parent_id"]
    while parent in by_id:
        names.append(by_id[parent]["name"])
        parent = by_id[parent]["parent_id"]
    return names


# A sentence of 40 words: the stand-in's summary repeats it, so 40 such documents make a result of some 20 KB, past
# what the job item keeps (RESULT_IN_ITEM_BYTES): the result goes to S3.
SENTENCE = " ".join(f"word{n:02d}" for n in range(40)) + "."
BIG_RESULT = {"task": "documents.summarize", "input": {"documents": [{"id": str(i), "text": SENTENCE} for i in range(40)]}}


def test_a_jobs_writes_to_dynamodb_and_s3_are_spans_under_the_steps_that_make_them(operated):
    """One queued job's trace holds its create (the router's request), its claim (the worker's run), its result's
    upload and its terminal write (the job's run), each a CLIENT span with OpenTelemetry's AWS SDK attributes."""
    standin = StandIn(operated["standin_url"])
    standin(latency_s=0)
    try:
        status, _, job = call("POST", f"{operated['api_url']}/v1/jobs", BIG_RESULT, key=TENANT_A)
        assert status == 202, job
        done = finished_job(operated, job["id"], key=TENANT_A)
    finally:
        standin.reset()
    assert done["status"] == "succeeded"
    trace = wait_until(lambda: (found := traces.of_trace(spans(operated), done["trace_id"]))
                       and any(s["name"] == "dynamodb.TransactWriteItems jobs" for s in found) and found,
                       timeout_s=30, what="the terminal write's span")
    writes = {s["name"]: s for s in trace if s["attributes"].get("rpc.system") == "aws-api"}
    assert ancestry(writes["dynamodb.PutItem jobs"], trace)[-1:] == ["api.request"]
    assert ancestry(writes["dynamodb.UpdateItem jobs"], trace)[:1] == ["worker.run"]
    assert ancestry(writes["dynamodb.TransactWriteItems jobs"], trace)[:2] == ["job.run", "worker.run"]
    assert ancestry(writes["s3.PutObject results"], trace)[:2] == ["job.run", "worker.run"]
    table = writes["dynamodb.PutItem jobs"]["attributes"]
    assert (table["rpc.service"], table["rpc.method"]) == ("DynamoDB", "PutItem") and len(table["aws.dynamodb.table_names"]) == 1
    upload = writes["s3.PutObject results"]["attributes"]
    assert (upload["rpc.service"], upload["rpc.method"]) == ("S3", "PutObject")
    assert upload["aws.s3.key"] == f"results/{job['id']}.json" and upload["aws.s3.bucket"]


def test_the_emf_lines_carry_each_job_metric_with_its_dimensions(operated):
    status, _, job = call("POST", f"{operated['api_url']}/v1/jobs", LONG, key=TENANT_A)
    assert status == 202
    finished_job(operated, job["id"], key=TENANT_A)
    path = Path(operated["logs"]) / "metrics.emf"

    def seen() -> dict[str, list[str]] | None:
        found: dict[str, list[str]] = {}
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            document = json.loads(line)
            (directive,) = document["_aws"]["CloudWatchMetrics"]
            assert directive["Namespace"] == "HybridJobs"
            for metric in directive["Metrics"]:
                found.setdefault(metric["Name"], directive["Dimensions"][0])
                assert document["stage"] == "local"
        wanted = {"JobsSubmitted", "JobsStarted", "QueueWaitMs", "JobsFinished", "RunTimeMs", "CostUsd", "ModelCalls",
                  "InputTokens", "OutputTokens", "CacheReadTokens", "CacheWriteTokens"}
        return found if wanted <= set(found) else None

    found = wait_until(seen, timeout_s=20, what="every job metric")
    for name in ("JobsSubmitted", "JobsStarted", "QueueWaitMs"):
        assert found[name] == ["stage", "task", "lane"]
    for name in ("JobsFinished", "RunTimeMs", "CostUsd", "ModelCalls", "InputTokens", "CacheWriteTokens"):
        assert found[name] == ["stage", "task", "lane", "outcome"]


def test_a_rate_limited_model_is_counted_and_its_job_waits_for_capacity(operated):
    standin = StandIn(operated["standin_url"])
    standin(fail={"status": 429, "times": 2})
    try:
        status, _, job = call("POST", f"{operated['api_url']}/v1/jobs", SHORT, key=TENANT_B + "-429")
        assert status == 202, job  # queued to wait for the model
    finally:
        standin.reset()
    path = Path(operated["logs"]) / "metrics.emf"

    def names() -> set[str]:
        return {m["Name"] for line in path.read_text(encoding="utf-8").splitlines()
                for m in json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Metrics"]}

    wait_until(lambda: {"ModelRateLimited", "ModelCapacityWaits"} <= names(), timeout_s=20, what="the 429 metrics")


def test_each_tenants_usage_is_the_sum_of_its_own_jobs_to_the_cent(operated):
    jobs: dict[str, list[dict[str, Any]]] = {TENANT_A + "-sum": [], TENANT_B + "-sum": []}
    for key, bodies in ((TENANT_A + "-sum", [SHORT, SHORT, LONG]), (TENANT_B + "-sum", [SHORT, LONG])):
        for body in bodies:
            status, _, job = call("POST", f"{operated['api_url']}/v1/jobs", body, key=key)
            assert status in (200, 202), job
            jobs[key].append(finished_job(operated, job["id"], key=key))
    for key, own in jobs.items():
        # A job's usage is added by a write just after its terminal one: wait until its last job is counted.
        wait_until(lambda key=key, own=own: call("GET", f"{operated['api_url']}/v1/usage", key=key)[2]["total"]["jobs"]["total"]
                   >= len(own), timeout_s=30, what="the last job counted")
        status, _, usage = call("GET", f"{operated['api_url']}/v1/usage?group_by=task", key=key)
        assert status == 200, usage
        total = usage["total"]
        assert total["jobs"]["total"] == len(own) and total["jobs"]["succeeded"] == len(own)  # none of the other's
        assert round(total["cost_usd"], 2) == round(sum(job["cost"]["actual"]["total"] for job in own), 2)
        assert abs(total["cost_usd"] - sum(job["cost"]["actual"]["total"] for job in own)) < 1e-5
        assert total["tokens"]["input"] == sum(job["usage"]["input_tokens"] for job in own)
        assert total["tokens"]["output"] == sum(job["usage"]["output_tokens"] for job in own)
        assert total["model_calls"] == sum(job["usage"]["model_calls"] for job in own)
        assert {group["task"] for group in usage["groups"]} == {job["task"] for job in own}


def test_usage_refuses_a_bad_range(operated):
    status, _, body = call("GET", f"{operated['api_url']}/v1/usage?from=2026-01-01&to=2026-12-31", key=TENANT_A)
    assert (status, body["error"]["field"]) == (422, "from")


def test_the_submission_that_would_pass_the_budget_is_refused_and_the_one_before_it_is_not(operated):
    url = f"{operated['api_url']}/v1/jobs"
    status, _, first = call("POST", url, SHORT, key=BUDGETED)
    assert status == 200 and first["status"] == "succeeded", first
    spent = wait_until(lambda: call("GET", f"{operated['api_url']}/v1/usage", key=BUDGETED)[2]["budget"]["month_spent_usd"],
                       timeout_s=10, what="the first job's cost")
    status, _, refused = call("POST", url, SHORT, key=BUDGETED)
    assert status == 402, refused
    error = refused["error"]
    assert error["type"] == "budget_exceeded"
    assert error["figures"]["budget_usd"] == operated["budget"]
    assert error["figures"]["month_spent_usd"] == pytest.approx(first["cost"]["actual"]["total"], abs=1e-6) == spent
    assert error["figures"]["estimate_usd"] == pytest.approx(first["cost"]["estimate"]["total"], abs=1e-6)


def test_a_job_whose_estimate_exceeds_its_max_cost_is_refused(operated):
    status, _, refused = call("POST", f"{operated['api_url']}/v1/jobs", {**SHORT, "max_cost_usd": 0.000001}, key=TENANT_A)
    assert status == 402 and refused["error"]["type"] == "budget_exceeded", refused
    assert refused["error"]["figures"]["max_cost_usd"] == 0.000001


def test_a_job_capped_by_max_cost_usd_stops_before_the_call_that_could_pass_it(operated):
    """Its estimate (the task's typical tokens) fits under the cap; its call's ceiling (input + max_tokens) does not."""
    url, key = f"{operated['api_url']}/v1/jobs", TENANT_A + "-cap"
    body = {"task": "claude.messages", "input": {"max_tokens": 4000, "messages": [{"role": "user", "content": "Write at length."}]}}
    status, _, refused = call("POST", url, {**body, "max_cost_usd": 0.000001}, key=key)
    assert status == 402, refused
    cap = refused["error"]["figures"]["estimate_usd"] + 0.00001  # just over this job's estimate: accepted

    status, _, job = call("POST", url, {**body, "max_cost_usd": cap}, key=key)
    assert status in (200, 202), job
    done = finished_job(operated, job["id"], key=key)
    assert done["status"] == "failed" and done["error"]["type"] == "budget_exceeded", done
    assert "max_cost_usd" in done["error"]["message"] and done["usage"]["model_calls"] == 0
    assert done["max_cost_usd"] == cap
