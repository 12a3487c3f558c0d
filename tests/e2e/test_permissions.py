"""Every AWS call each component makes is allowed by its role in the synthesized templates (issue 20).

moto enforces no IAM: a call the role does not allow passes every other test and is AccessDenied in AWS. Here one
local pipeline (the gpu and batch lanes on, as the templates are synthesized with the same context) records every
call of each process (``--record-aws-calls``: router, each worker lane, collector, dispatcher and its sweep, intake,
sweeper; the lane waker runs in the router and the intake) while a scenario drives every path: an inline job whose
webhook fails its first attempt, a queued job whose model is overloaded (the worker puts it back with a delayed
message to wait), a GPU job reading its model and writing a result file, a batch job, an S3 intake object, an upload,
a dead letter the sweeper drains. Then ``tools.iam_check`` evaluates each call against its component's role: a call not allowed fails,
naming the component, the action and the resource; grants no call used are listed at the end of the run.

About 100 s on a loaded 2-core machine: one pipeline start, the scenario, one synth.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # before jsii starts

import boto3  # noqa: E402  (after the line above: jsii reads it when it starts)
import pytest  # noqa: E402
from aws_cdk import Stack  # noqa: E402

from local import client  # noqa: E402
from local.aws_calls import read_records  # noqa: E402
from local.dispatcher import SWEEP_COMPONENT  # noqa: E402
from stacks.names import construct_id  # noqa: E402
from tests.bodies import SHORT  # noqa: E402
from tests.e2e import harness  # noqa: E402
from tests.e2e.harness import finished_job, start_pipeline, stop_pipeline, submit, wait_until  # noqa: E402
from tests.infra.infra_support import GPU_REGION, Synth, synth  # noqa: E402
from tools.iam_check import Account, Report, Role, Templates, check  # noqa: E402

# The local model's place (local.resources.upload_model) as the deployment's embedding_model_s3_uri: the gpu
# worker's grant to read it is then on the objects it reads.
CONTEXT = {"gpu_enabled": True, "embedding_model_s3_uri": "s3://hybrid-local-models/embedding-model/", "batch_window_s": 1}
MODEL_WAIT_LIMIT_S = 2  # the first wait for an overloaded model is then 2 s (the deployment's back-off: 15 s)
COMPONENTS = ("router", "worker-cpu", "worker-gpu", "collector", "dispatcher", SWEEP_COMPONENT, "intake", "sweeper")
# Grants used on a component's behalf by what records no call: listed apart, not as unused.
OUTSIDE = {
    "logs:*": "the Lambda runtime writes the function's log group",
    "ecs:*TaskProtection": "the worker sets its task's scale-in protection through the ECS agent endpoint, with its task role",
}
REGION = "us-east-1"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    """The scenario on a recording pipeline: its ready line (``calls``: every recorded call), stopped at the end."""
    logs = tmp_path_factory.mktemp("permissions")
    ready = start_pipeline(logs, ("--gpu", "--record-aws-calls", str(logs / "aws-calls")), config=CONTEXT,
                           env={"MODEL_WAIT_LIMIT_S": str(MODEL_WAIT_LIMIT_S), "BACKOFF_BASE_S": "2"})  # the waited job: 1-2 s
    try:
        scenario(ready)
    finally:
        stop_pipeline(ready)
    return {**ready, "calls": read_records(logs / "aws-calls")}


def api(ready: dict[str, Any], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, answer = client.call(method, ready["api_url"] + path, body)
    return status, answer


def scenario(ready: dict[str, Any]) -> None:
    standin = harness.StandIn(ready["standin_url"])
    aws = {"endpoint_url": ready["aws_endpoint"], "region_name": REGION, "aws_access_key_id": "testing",
           "aws_secret_access_key": "testing"}
    s3, sqs = boto3.client("s3", **aws), boto3.client("sqs", **aws)
    receiver = ready["receiver"]

    # First what makes no Messages API call (the embedder, the Message Batches API, S3, SQS): it runs while the
    # waited job below waits, and cannot take the model failures meant for that job.
    gpu = submit(ready, {"task": "embeddings.encode", "input": {"texts": ["An invoice.", "A receipt."]}})
    batch = submit(ready, {**SHORT, "mode": "batch"})
    upload = upload_input(ready, json.dumps({"documents": [{"id": "u", "text": "Uploaded."}]}).encode())
    sqs.send_message(QueueUrl=ready["dead_letter_queues"]["cpu"], MessageBody="not a job")
    inline = submit(ready, {**SHORT, "webhook": {"url": receiver.url + "?fail=1"}})  # delivered on the second attempt
    # The model overloaded for one attempt (a call and its 3 SDK retries): the worker puts the job back to wait.
    standin(fail={"status": 529, "times": 4, "retry_after": 0.1})  # the SDK's retries 0.1 s apart, not 0.5-2 s
    waited = submit(ready, {"task": "documents.summarize", "input": {"documents": [{"id": "a", "text": "One document."}]}})
    assert finished_job(ready, waited["id"])["attempts"] >= 2, "the job did not wait for the model"
    standin.reset()
    uploaded = submit(ready, {"task": "documents.summarize", "input_upload": upload})
    source = f"s3://{ready['bucket']}/intake/invoice.extract/permissions.txt"
    s3.put_object(Bucket=ready["bucket"], Key="intake/invoice.extract/permissions.txt", Body=b"Invoice INV-1, total 10.00 USD")

    jobs = [finished_job(ready, job["id"]) for job in (inline, waited, gpu, batch, uploaded)]
    assert [job["status"] for job in jobs] == ["succeeded"] * len(jobs), [job.get("error") for job in jobs]
    with urllib.request.urlopen(jobs[2]["files"]["vectors.npy"]["url"], timeout=10) as response:  # presigned by the router
        assert response.status == 200
    wait_until(lambda: intake_job(ready, source), timeout_s=60, what="the intake job")
    assert receiver.wait_for(inline["id"], timeout_s=60), "the inline job's webhook did not arrive"
    assert api(ready, "GET", f"/v1/jobs/{inline['id']}/deliveries")[0] == 200
    assert api(ready, "GET", "/v1/jobs?limit=5")[0] == 200
    wait_until(lambda: not int(sqs.get_queue_attributes(QueueUrl=ready["dead_letter_queues"]["cpu"], AttributeNames=[
        "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]), timeout_s=30, what="the sweeper draining")


def upload_input(ready: dict[str, Any], data: bytes) -> str:
    status, created = api(ready, "POST", "/v1/uploads", {"content_type": "application/json", "size": len(data)})
    assert status == 201, created
    request = urllib.request.Request(created["url"], data=data, method="PUT", headers=created["headers"])
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    return created["upload_id"]


def intake_job(ready: dict[str, Any], source: str) -> bool:
    status, page = api(ready, "GET", f"/v1/jobs?{urlencode({'source': source})}")
    assert status == 200, page
    return bool(page["jobs"]) and all(job["status"] in harness.TERMINAL for job in page["jobs"])


# --- the templates, resolved to what the run made -----------------------------------------------------------


def logical_id(construct: Any) -> str:
    return Stack.of(construct).get_logical_id(construct.node.default_child)


def queue_name(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


def local_names(app: Synth, ready: dict[str, Any]) -> dict[str, str]:
    """The run's resources by the logical ids of the resources they stand for."""
    service, storage = app.service.node, app.data.storage
    names = {logical_id(storage.table): ready["table"], logical_id(storage.bucket): ready["bucket"],
             logical_id(app.data.intake.job_queue.queue): queue_name(ready["intake_queue"]),
             logical_id(service.find_child("Webhooks").job_queue.queue): queue_name(ready["webhook_queue"])}
    for lane, url in ready["queues"].items():
        job_queue = service.find_child(f"{construct_id(lane)}Lane")
        names[logical_id(job_queue.queue)] = queue_name(url)
        names[logical_id(job_queue.dead_letter_queue)] = queue_name(ready["dead_letter_queues"][lane])
    for lane, arn in ready["lane_services"].items():
        cluster, name = arn.rsplit("/", 2)[-2:]
        names[logical_id(service.find_child("Workers").cluster)] = cluster
        names[logical_id(service.find_child(f"{construct_id(lane)}Worker").service)] = name
    return names


def roles(app: Synth, templates: Templates) -> dict[str, Role]:
    """Each component's role, as the templates grant it."""
    service = app.service.node
    webhooks = service.find_child("Webhooks")
    made = {"router": service.find_child("Router").role, "dispatcher": webhooks.dispatcher.role,
            SWEEP_COMPONENT: webhooks.sweep.role, "sweeper": service.find_child("Sweeper").role,
            "intake": service.find_child("Intake").role}
    collector = service.try_find_child("Collector")  # none when the batch lane is off (Bedrock alone)
    if collector is not None:
        made["collector"] = collector.role
    for lane in app.config.lanes().worker_lanes():
        made[f"worker-{lane.name}"] = service.find_child(f"{construct_id(lane.name)}Worker").task_definition.task_role
    return {component: templates.role(app.service.stack_name, logical_id(role)) for component, role in made.items()}


def checked(run: dict[str, Any], app: Synth, title: str) -> Report:
    """The run's calls evaluated against the roles of ``app``'s templates, resolved to what the run made (in moto's
    account and region, where the calls were made); the report is listed at the end of the suite under ``title``."""
    account = urlsplit(run["queues"]["cpu"]).path.strip("/").split("/")[0]  # moto's
    where = Account(account=account, region=REGION)
    templates = Templates({app.data.stack_name: app.data_json, app.service.stack_name: app.service_json}, where,
                          names=local_names(app, run))
    made = check(run["calls"], roles(app, templates), where, outside=OUTSIDE)
    harness.SUMMARIES.append((title, made.lines()))
    return made


@pytest.fixture(scope="module")
def report(run) -> Report:
    # Synthesized for a region the GPU lane's AMI release is verified in.
    return checked(run, synth(default_region=GPU_REGION, **CONTEXT), "AWS calls against their roles (tests/e2e/test_permissions.py)")


def test_each_component_s_calls_were_recorded(run):
    assert {call["component"] for call in run["calls"]} >= set(COMPONENTS)
    waker = {(call["component"], call["operation"]) for call in run["calls"] if call["service"] == "ecs"}
    assert ("router", "DescribeServices") in waker  # the lane waker, on the router's path


def test_the_worker_put_a_job_back_to_wait_for_the_model_with_a_new_message(run):
    sends = [call for call in run["calls"] if call["component"] == "worker-cpu" and call["operation"] == "SendMessage"]
    assert any(call["params"]["QueueUrl"] == run["queues"]["cpu"] for call in sends), sends


def test_every_call_is_allowed_by_its_component_s_role(report):
    assert report.checked > 0
    assert not report.denied, "AWS calls their role does not allow (AccessDenied in AWS):\n" + "\n".join(report.denied)


def test_grants_no_call_used_are_listed(report):
    # The router reads the Anthropic key from Secrets Manager in AWS; locally it talks to the stand-in.
    router = [line for line in report.unused if line.startswith("router: ")]
    assert any("secretsmanager:GetSecretValue" in line for line in router), router
    assert not any("sqs:SendMessage" in line for line in router), router  # it queued jobs
