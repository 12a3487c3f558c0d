"""The Bedrock client's calls are allowed by the roles too (issue 22): a pipeline with ``model_providers`` =
``["bedrock"]`` records every call of each process, the anthropic SDK's Bedrock invocations included
(``local.aws_calls``: it signs and sends them itself, so botocore never sees them), while an inline and a queued job
run; ``tools.iam_check`` then evaluates each against its component's role in templates synthesized with the same
context: ``bedrock:InvokeModel`` on the inference profile and on the foundation model it routes to. Bedrock's own budget
(``bedrock_rate_limits``) paces both calls: its shared bucket's writes are checked too.

About 60 s: one pipeline start, two jobs, one synth."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # before jsii starts

import boto3  # noqa: E402
import pytest  # noqa: E402

from jobadapters.schema import CAPACITY_ITEM_PREFIX, JOBS_PARTITION_KEY  # noqa: E402
from local.aws_calls import read_records  # noqa: E402
from local.client import call  # noqa: E402
from tests.bodies import SHORT  # noqa: E402
from tests.e2e import harness  # noqa: E402
from tests.e2e.harness import finished_job, start_pipeline, stop_pipeline, submit  # noqa: E402
from tests.e2e.test_permissions import REGION, checked  # noqa: E402
from tests.infra.infra_support import synth  # noqa: E402
from tools.iam_check import Report  # noqa: E402

CONTEXT = {"model_providers": ["bedrock"], "bedrock_rate_limits": {"*": {"tpm": 2_000_000, "rpm": 1_000}}}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    logs = tmp_path_factory.mktemp("permissions-bedrock")
    ready = start_pipeline(logs, ("--providers", "bedrock", "--record-aws-calls", str(logs / "aws-calls")), config=CONTEXT)
    try:
        inline = submit(ready, SHORT)
        queued = submit(ready, {"task": "documents.summarize", "input": {"documents": [{"id": "a", "text": "One document."}]}})
        jobs = [finished_job(ready, job["id"]) for job in (inline, queued)]
        assert [job["status"] for job in jobs] == ["succeeded", "succeeded"], [job.get("error") for job in jobs]
        assert [job["route"]["lane"] for job in jobs] == ["inline", "cpu"]
        stats = harness.StandIn(ready["standin_url"]).stats()
        assert stats["requests"] == 0 and stats["bedrock"]["requests"] >= 2, stats  # every call through Bedrock
        status, _, capacity = call("GET", f"{ready['api_url']}/v1/capacity")
        assert status == 200, capacity
        table = boto3.resource("dynamodb", endpoint_url=ready["aws_endpoint"], region_name=REGION, aws_access_key_id="testing",
                               aws_secret_access_key="testing").Table(ready["table"])  # noqa: S106 - moto's
        buckets = [item for item in table.scan()["Items"] if str(item[JOBS_PARTITION_KEY]).startswith(CAPACITY_ITEM_PREFIX)]
    finally:
        stop_pipeline(ready)
    return {**ready, "calls": read_records(logs / "aws-calls"), "capacity": capacity, "buckets": buckets}


@pytest.fixture(scope="module")
def report(run) -> Report:
    app = synth(default_region=REGION, **CONTEXT)
    return checked(run, app, "Bedrock calls against their roles (tests/e2e/test_permissions_bedrock.py)")


def test_the_bedrock_client_s_invocations_were_recorded_for_the_router_and_the_worker(run):
    invoked = {(call["component"], call["params"]["modelId"]) for call in run["calls"] if call["service"] == "bedrock-runtime"}
    assert {component for component, _ in invoked} == {"router", "worker-cpu"}, invoked
    assert all(model.startswith("global.anthropic.") for _, model in invoked), invoked  # the default profile scope


def test_bedrock_s_budget_paced_the_calls_in_its_own_shared_bucket(run):
    """The calls took their grants from ``bedrock:<family>`` (its item in the jobs table; Anthropic's budget has none),
    and the capacity view shows that budget in Bedrock's terms."""
    assert [item[JOBS_PARTITION_KEY] for item in run["buckets"]] == [f"{CAPACITY_ITEM_PREFIX}bedrock:sonnet-4"]
    assert run["buckets"][0]["version"] >= 2  # leased from, by the router and the worker
    budgets = {budget["provider"]: budget for budget in run["capacity"]["budgets"]}
    assert budgets["bedrock"]["limits"] == {"tpm": 2_000_000, "rpm": 1_000, "output_burndown": 5}
    assert set(budgets["bedrock"]["in_use"]) == {"tokens", "requests"}


def test_every_call_bedrock_s_included_is_allowed_by_its_component_s_role(report):
    assert report.checked > 0
    assert not report.denied, "calls their role does not allow (AccessDenied in AWS):\n" + "\n".join(report.denied)
    # The grants the invocations used are not listed unused: the Bedrock calls were evaluated against them.
    unused = [line for line in report.unused if "bedrock:InvokeModel" in line and line.startswith(("router: ", "worker-cpu: "))]
    assert not unused, unused


def test_no_role_may_read_an_anthropic_key_without_anthropic(report):
    readers = [line for line in report.unused if "secretsmanager:" in line]
    assert readers and all("WebhookSigningSecret" in line for line in readers), readers  # the dispatcher's, only
