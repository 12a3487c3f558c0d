"""Faults, end to end: the local pipeline's real processes (moto server, the Claude stand-in, the router
behind the local gateway, a supervised worker, dispatcher and sweeper), driven over HTTP and, where a
fault cannot be provoked from outside, through moto's endpoint.

This module's pipeline runs one job at a time on its cpu worker (``--worker-concurrency 1``), so that a
job can be held in the queue behind another. The tests that need a message to reach the dead-letter
queue run on a second pipeline with ``max_receives`` 2 (see ``few_receives``): with the deployment's 5,
a poison message takes five minutes to get there. Every wait is bounded; the slow tests say how long
they may take and why.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from bench.report import epoch_s
from jobadapters.dynamo import DynamoJobStore
from jobadapters.wiring import WORKER_SDK_RETRIES
from jobcore.limits import API_GATEWAY_TIMEOUT_S
from jobcore.model import Job, JobStatus
from jobcore.schema_keys import result_key
from jobcore.tasks import CATALOGUE
from local import client
from local.gateway import api_key_id
from tests.bodies import LONG, SHORT
from tests.e2e.harness import TERMINAL, StandIn, children, exited, start_pipeline, stop_pipeline, wait_until

PIPELINE_ARGS = ("--worker-concurrency", "1")
# A worker's claim lasts 15 s here (the deployment's: 60 s, jobcore.limits.LEASE_S): a killed worker's job comes back
# sooner, by the same path. Its heartbeat (every 2 s) renews it every 5 s.
LEASE_S = 15
PIPELINE_ENV = {"LEASE_S": str(LEASE_S)}
KEY = "faults-key"
REGION = "us-east-1"


def documents(n: int) -> dict[str, Any]:
    return {"task": "documents.summarize",
            "input": {"documents": [{"id": f"d{i}", "text": f"Document number {i}. It says little."} for i in range(n)]}}


def call(method: str, url: str, body: Any = None, *, key: str | None = KEY) -> tuple[int, dict[str, str], Any]:
    return client.call(method, url, body, key=key)


def jobs_url(pipeline: dict[str, Any], *parts: str) -> str:
    return "/".join([f"{pipeline['api_url']}/v1/jobs", *parts])


def get(pipeline: dict[str, Any], job_id: str, *, key: str = KEY) -> dict[str, Any]:
    status, _, job = call("GET", jobs_url(pipeline, job_id), key=key)
    assert status == 200, job
    return job


def settle(pipeline: dict[str, Any], job_id: str, *, timeout_s: float, key: str = KEY) -> tuple[dict[str, Any], list[str]]:
    """The job once terminal, and every status it was seen in on the way (polled every 0.2 s)."""
    seen: list[str] = []

    def finished() -> dict[str, Any] | None:
        job = get(pipeline, job_id, key=key)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        return job if job["status"] in TERMINAL else None

    return wait_until(finished, timeout_s=timeout_s, what=f"{job_id} to finish (seen: {seen})"), seen


def wait_for_status(pipeline: dict[str, Any], job_id: str, status: str, *, timeout_s: float) -> dict[str, Any]:
    def there() -> dict[str, Any] | None:
        job = get(pipeline, job_id)
        return job if job["status"] == status else None

    return wait_until(there, timeout_s=timeout_s, every_s=0.1, what=f"{job_id} to be {status}")


def log_text(pipeline: dict[str, Any], name: str) -> str:
    path = Path(pipeline["logs"]) / name
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for_log(pipeline: dict[str, Any], name: str, text: str, *, timeout_s: float) -> str:
    def logged() -> str | None:
        log = log_text(pipeline, name)
        return log if text in log else None

    return wait_until(logged, timeout_s=timeout_s, every_s=0.5, what=f"{text!r} in {name}")


def aws(pipeline: dict[str, Any], service: str, *, resource: bool = False) -> Any:
    """A boto3 client (or resource) of the pipeline's moto server."""
    make = boto3.resource if resource else boto3.client
    return make(service, endpoint_url=pipeline["aws_endpoint"], region_name=REGION,
                aws_access_key_id="testing", aws_secret_access_key="testing")


def queue_depth(pipeline: dict[str, Any], url: str) -> int:
    attributes = aws(pipeline, "sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def restarts(pipeline: dict[str, Any]) -> str:
    """What the supervisor restarted, from the logs (empty when nothing died)."""
    return "".join(line for line in log_text(pipeline, "serve.log").splitlines(keepends=True) if "restarting it" in line)


# --- 1. a worker killed mid-job ----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(300)  # 90 s after the kill (below), and the module's pipeline start when it runs first
def test_a_worker_killed_mid_job_is_restarted_and_the_job_completes_exactly_once(pipeline, standin):
    """kill -9 the cpu worker while its job waits on the model; the supervisor starts a new worker, and
    the job runs again and succeeds, with one result and one webhook event.

    Slow, up to 90 s: the dead worker's lease (LEASE_S) must run out before the job runs again, claimed
    either from its own message (a worker hides a message only as long as a lease, so it comes back
    then) or from the sweeper's re-queue (after its 5 s grace); whichever comes second finds it taken.
    """
    receiver = pipeline["receiver"]
    pid = pipeline["pids"]["worker-cpu"]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"worker.main" in cmdline, f"pid {pid} is not the pipeline's cpu worker: {cmdline}"
    standin(latency_s=4)  # each of the job's two model calls takes 4 s: time to kill its worker mid-call
    before = standin.requests()
    status, _, job = call("POST", jobs_url(pipeline), {**LONG, "webhook": {"url": receiver.url}})
    assert status == 202, job
    wait_for_status(pipeline, job["id"], "running", timeout_s=30)
    # A bound, not a wait: each call takes 4 s, so both are still in flight whenever this returns; 5 s was
    # too short on a 2-core machine running another test process (make test).
    wait_until(lambda: standin.requests() - before == 2, timeout_s=30, every_s=0.05, what="both model calls to be in flight")
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for_log(pipeline, "worker.log", "--- supervisor: restart 1 after exit -9 ---", timeout_s=10)
    assert get(pipeline, job["id"])["status"] == "running"  # the kill came mid-run
    standin(latency_s=0)  # the run again answers at once (the dead worker's two calls still wait their 4 s)

    done, seen = settle(pipeline, job["id"], timeout_s=90 - (time.monotonic() - killed_at))
    assert done["status"] == "succeeded", (done, seen)
    assert done["attempts"] == 2, done  # it ran again, once
    assert [s["id"] for s in done["result"]["summaries"]] == ["a", "b"]
    assert done["usage"]["model_calls"] == 2  # the usage of the run that finished, not of both
    assert standin.requests() - before == 4  # two calls lost with the dead worker, two that answered
    # Written once, by the run that finished, in the job item (a small result): nothing in S3 from either run.
    objects = aws(pipeline, "s3").list_objects_v2(Bucket=pipeline["bucket"], Prefix=result_key(job["id"]))
    assert objects.get("Contents", []) == []

    event = receiver.wait_for(job["id"], timeout_s=30)
    assert event is not None and event["type"] == "job.succeeded" and event["data"]["attempts"] == 2
    time.sleep(3)  # anything sent twice would arrive within the quick webhook schedule's first attempts
    assert [e["data"]["id"] for e in receiver.events].count(job["id"]) == 1
    assert receiver.attempts[f"evt_{job['id']}_succeeded"] == 1 and receiver.rejected == []
    assert "restarting it (restart 1)" in restarts(pipeline)


# --- 2. an inline run whose router died --------------------------------------------------------------

def test_an_inline_run_whose_router_died_is_requeued_by_the_sweeper_and_run_by_a_worker(pipeline):
    """The router runs inline jobs in its own process, so it cannot be killed alone: its death is written
    as it would be left behind, a running inline job whose router lease (API Gateway's 29 s + 1) ran out
    10 s ago, through the same store code the router uses, so the item carries the watch index's keys."""
    table = aws(pipeline, "dynamodb", resource=True).Table(pipeline["table"])
    now = int(time.time() * 1000)
    started = now - (API_GATEWAY_TIMEOUT_S + 1) * 1000 - 10_000
    job = Job(
        job_id=f"job_{uuid.uuid4().hex}", tenant_id=api_key_id(KEY), task="claude.messages", status=JobStatus.RUNNING,
        lane="inline", route_reason="inline: expected 2 s <= budget 4 s, 256 MB <= 1024 MB",
        created_at=started, updated_at=started, started_at=started, attempts=1,
        input=CATALOGUE["claude.messages"].validate(SHORT["input"]), expires_at=now // 1000 + 30 * 86_400,
        lease_owner=f"router:{socket.gethostname()}:{os.getpid()}:deadbeef",
        lease_expires_at=started + (API_GATEWAY_TIMEOUT_S + 1) * 1000,
    )
    DynamoJobStore(table).create(job)
    item = table.get_item(Key={"job_id": job.job_id}, ConsistentRead=True)["Item"]
    assert item["watch_shard"].startswith("watch-") and int(item["watch_at"]) == job.lease_expires_at
    # No read of its status here: the sweeper (every 2 s) may already have re-queued and run it, and the reason
    # checked below says it did.

    done, seen = settle(pipeline, job.job_id, timeout_s=60)
    assert done["status"] == "succeeded", (done, seen)
    assert done["route"]["lane"] == "cpu" and done["attempts"] == 2
    reason = done["route"]["reason"]
    assert reason.startswith("cpu: re-queued by the sweeper") and f"no heartbeat from {job.lease_owner}" in reason, reason
    assert reason.endswith(f"({job.route_reason})"), reason
    assert done["result"]["content"][0]["text"].startswith("Summary: Name one AWS region.")
    assert f"sweeper: job {job.job_id} no heartbeat from" in log_text(pipeline, "sweeper.log")


# --- 4. cancel -----------------------------------------------------------------------------------------

def test_cancel_of_a_queued_job_cancels_it_at_once_and_it_never_runs(pipeline, standin):
    """The single cpu worker is held by a 5 s job, so the job to cancel stays queued (deterministic)."""
    standin(latency_s=5)
    _, _, blocker = call("POST", jobs_url(pipeline), documents(1))
    wait_for_status(pipeline, blocker["id"], "running", timeout_s=30)
    status, _, job = call("POST", jobs_url(pipeline), LONG)
    assert status == 202 and job["status"] == "queued", job

    status, _, canceled = call("POST", jobs_url(pipeline, job["id"], "cancel"))
    assert status == 200, canceled
    assert canceled["status"] == "canceled" and canceled["attempts"] == 0 and "started_at" not in canceled

    assert settle(pipeline, blocker["id"], timeout_s=30)[0]["status"] == "succeeded"
    # The worker, free again, receives the canceled job's message and drops it without running it.
    wait_for_log(pipeline, "worker.log", f"job {job['id']}: canceled already canceled", timeout_s=30)
    after = get(pipeline, job["id"])
    assert after["status"] == "canceled" and after["attempts"] == 0 and "started_at" not in after


def test_cancel_of_a_running_job_stops_it_before_most_of_its_model_calls(pipeline, standin):
    """50 documents, 8 calls at a time, 1 s each (the uncanceled run: 7 s). The heartbeat sees the cancel
    within its 2 s period and the run stops before its next call: a few waves of 8 calls, not 50.
    (At 0.5 s a call, 5 waves would start within the heartbeat's period: too close to 50 to tell.)"""
    standin(latency_s=1)
    before = standin.requests()
    status, _, job = call("POST", jobs_url(pipeline), documents(50))
    assert status == 202, job
    wait_for_status(pipeline, job["id"], "running", timeout_s=30)

    status, _, canceling = call("POST", jobs_url(pipeline, job["id"], "cancel"))
    canceled_at = time.monotonic()
    assert status == 202 and canceling["status"] == "canceling", canceling
    status, _, done = call("GET", jobs_url(pipeline, job["id"]) + "?wait=10")
    took = time.monotonic() - canceled_at
    assert status == 200 and done["status"] == "canceled", done
    assert took < 5, f"canceled only {took:.1f} s after the cancel"

    calls = standin.requests() - before
    assert calls <= 32, f"{calls} model calls for a job canceled at its start (at most 4 waves of 8 expected)"
    time.sleep(2)  # the stopped run makes no further call
    assert standin.requests() - before == calls
    assert "result" not in done and done["attempts"] == 1


def test_cancel_of_a_finished_job_is_refused_with_its_state(pipeline):
    status, _, job = call("POST", jobs_url(pipeline), SHORT)
    assert status == 200 and job["status"] == "succeeded", job
    status, _, answer = call("POST", jobs_url(pipeline, job["id"], "cancel"))
    assert status == 409, answer
    assert answer["error"]["type"] == "job_finished" and answer["error"]["status"] == "succeeded"
    assert get(pipeline, job["id"])["status"] == "succeeded"


# --- 5. concurrent submits with one Idempotency-Key ------------------------------------------------------

def submit_with_key(pipeline: dict[str, Any], body: Any, idempotency_key: str, *, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        jobs_url(pipeline), data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json", "x-api-key": key, "Idempotency-Key": idempotency_key},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_fifty_concurrent_submits_with_one_idempotency_key_make_one_job_and_one_model_call(pipeline, standin):
    """50 threads POST the same body with ``Idempotency-Key: same`` at once. A 409 ``idempotency_in_progress``
    is retried, as the API asks; so is a 429 ``THROTTLED`` (past the router's concurrency limit, as Lambda
    throttles) and a connection reset before the local gateway read it: retrying a request whose fate is
    unknown is what the key is for."""
    tenant = f"idem-{uuid.uuid4().hex[:8]}"
    before = standin.requests()
    start = threading.Barrier(50)
    answers: list[tuple[int, Any] | None] = [None] * 50
    first_answers: list[int] = [0] * 50

    def submit(i: int) -> None:
        start.wait(timeout=30)
        for attempt in range(20):  # retried 0.5 s apart, 10 s at most
            try:
                status, body = submit_with_key(pipeline, SHORT, "same", key=tenant)
            except (ConnectionError, urllib.error.URLError) as error:
                status, body = -1, repr(error)
            if attempt == 0:
                first_answers[i] = status
            answers[i] = (status, body)
            retry = status in (-1, 429) or (status == 409 and body["error"]["type"] == "idempotency_in_progress")
            if not retry:
                return
            time.sleep(0.5)

    threads = [threading.Thread(target=submit, args=(i,), daemon=True) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a submit did not return within 90 s"

    assert all(answer is not None for answer in answers)
    statuses = sorted({status for status, _ in answers})
    assert statuses == [200], [a for a in answers if a and a[0] != 200][:3]
    ids = {body["id"] for _, body in answers}
    assert len(ids) == 1, ids
    assert set(first_answers) <= {200, 409, 429, -1}, first_answers  # -1: the connection was reset
    (job_id,) = ids
    status, _, page = call("GET", f"{pipeline['api_url']}/v1/jobs?limit=100", key=tenant)
    assert status == 200 and [job["id"] for job in page["jobs"]] == [job_id] and page["next_cursor"] is None
    assert standin.requests() - before == 1


# --- 6. tenant isolation ------------------------------------------------------------------------------

def test_another_tenant_gets_404_on_every_route_and_never_sees_the_job_listed(pipeline):
    receiver = pipeline["receiver"]
    status, _, job = call("POST", jobs_url(pipeline), {**SHORT, "webhook": {"url": receiver.url}})
    assert status == 200, job
    assert receiver.wait_for(job["id"], timeout_s=30) is not None
    other = f"tenant-b-{uuid.uuid4().hex[:8]}"
    status, _, own = call("POST", jobs_url(pipeline), SHORT, key=other)
    assert status == 200, own

    started = time.monotonic()
    for method, url in [
        ("GET", jobs_url(pipeline, job["id"])),
        ("GET", jobs_url(pipeline, job["id"]) + "?wait=1"),
        ("POST", jobs_url(pipeline, job["id"], "cancel")),
        ("GET", jobs_url(pipeline, job["id"], "deliveries")),
        ("POST", jobs_url(pipeline, job["id"], "deliveries")),
    ]:
        status, _, body = call(method, url, key=other)
        assert status == 404 and body["error"]["type"] == "not_found", (method, url, status, body)
    assert time.monotonic() - started < 5  # ?wait does not wait on a job it cannot see

    for query in ("", "?status=succeeded", "?limit=100"):
        status, _, page = call("GET", f"{pipeline['api_url']}/v1/jobs{query}", key=other)
        assert status == 200 and [j["id"] for j in page["jobs"]] == [own["id"]], (query, page)
    # Nothing the other tenant asked for changed the job.
    status, _, deliveries = call("GET", jobs_url(pipeline, job["id"], "deliveries"))
    assert status == 200 and deliveries["deliveries"][0]["series"] == 1
    assert get(pipeline, job["id"])["status"] == "succeeded"


# --- 7. long poll ---------------------------------------------------------------------------------------

def test_a_long_poll_returns_as_soon_as_the_queued_job_finishes(pipeline, standin):
    standin(latency_s=2)
    status, _, job = call("POST", jobs_url(pipeline), LONG)
    assert status == 202 and job["status"] == "queued", job
    started = time.monotonic()
    status, _, done = call("GET", jobs_url(pipeline, job["id"]) + "?wait=20")
    answered_at, took = time.time(), time.monotonic() - started
    assert status == 200 and done["status"] == "succeeded", done
    assert 2 <= took < 10, f"the long poll answered after {took:.1f} s"  # it waited for the 2 s calls, not for 20 s
    assert answered_at - epoch_s(done["finished_at"]) < 1.5  # the wait re-reads at least every second


# --- 8. the router's execution environments --------------------------------------------------------------

def test_sixteen_long_polls_at_once_leave_room_for_submissions(pipeline, standin):
    """16 ``?wait=20`` polls of a job that stays queued (the single cpu worker is held by a 60 s job) hold 16
    execution environments; a POST meanwhile gets one of its own and its answer, not API Gateway's 504 after
    29 s behind them (a fixed pool of 8 did that, the job created and its id never told)."""
    standin(latency_s=60)
    _, _, blocker = call("POST", jobs_url(pipeline), documents(1))
    wait_for_status(pipeline, blocker["id"], "running", timeout_s=30)
    status, _, target = call("POST", jobs_url(pipeline), LONG)
    assert status == 202, target
    host, port = pipeline["api_url"].removeprefix("http://").split(":")
    sent = threading.Barrier(17)
    polls: list[tuple[int, Any] | None] = [None] * 16

    def poll(i: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            connection.request("GET", f"/v1/jobs/{target['id']}?wait=20", headers={"x-api-key": KEY})
            sent.wait(timeout=30)
            answer = connection.getresponse()
            polls[i] = answer.status, json.loads(answer.read())
        finally:
            connection.close()

    threads = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(16)]
    for thread in threads:
        thread.start()
    sent.wait(timeout=30)
    answers = []
    for _ in range(10):  # a 429 (no environment free or started in time on a loaded machine) is retried, as the SDK does
        status, _, submitted = call("POST", jobs_url(pipeline), {**SHORT, "mode": "async"}, key=KEY)
        answers.append(status)
        if status != 429:
            break
    assert status == 202 and submitted["status"] == "queued", (answers, submitted)
    for job in (target, blocker, submitted):
        call("POST", jobs_url(pipeline, job["id"], "cancel"))
    for thread in threads:
        thread.join(timeout=60)
    standin(release=True)  # the blocker's call answers now: its run sees the cancel and ends, not 60 s later
    # 429: throttled while waiting for a start slot (cold starts are slow on a loaded machine); never a hang
    assert all(answer is not None and answer[0] in (200, 429) for answer in polls), polls
    assert settle(pipeline, blocker["id"], timeout_s=60)[0]["status"] == "canceled"


def test_a_killed_router_environment_is_replaced_and_the_api_keeps_answering(pipeline):
    # Every router environment alive now (the warm one of the ready line, and any an earlier test left warm), so
    # that the next request cannot be served by a survivor: it finds a dead one, which must be replaced.
    environments = children(pipeline["process"].pid, "local.gateway")
    assert set(pipeline["pids"]["router"]) <= set(environments) and environments
    for pid in environments:
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda pid=pid: exited(pid), timeout_s=30, every_s=0.05, what=f"router process {pid} exiting")
    statuses = [call("GET", f"{pipeline['api_url']}/v1/tasks")[0] for _ in range(10)]
    assert statuses == [200] * 10
    assert "a new one replaces it" in log_text(pipeline, "serve.log")
    assert set(children(pipeline["process"].pid, "local.gateway")).isdisjoint(environments)


# --- 3. poison messages and jobs that fail on every receive (a pipeline with max_receives 2) --------------

MAX_RECEIVES = 2
MODEL_WAIT_LIMIT_S = 14
MALFORMED_RETRY_S = 3
BACKOFF_BASE_S = 2


@pytest.fixture(scope="module")
def few_receives(tmp_path_factory):
    """A second pipeline whose queues redrive after 2 receives (the deployment's: 5), whose workers wait
    for an unavailable model for 14 s in all (the deployment's: an hour), back off from 2 s (the deployment's: 15 s,
    then 30 s, 60 s…, equal jitter) and hide a message that is not a job 3 s per receive (the deployment's: 60 s):
    with the deployment's settings these tests would take 4 to 5 minutes."""
    ready = start_pipeline(tmp_path_factory.mktemp("few-receives"), config={"max_receives": MAX_RECEIVES},
                           env={"MODEL_WAIT_LIMIT_S": str(MODEL_WAIT_LIMIT_S), "MALFORMED_RETRY_S": str(MALFORMED_RETRY_S),
                                "BACKOFF_BASE_S": str(BACKOFF_BASE_S)})
    yield ready
    stop_pipeline(ready)


@pytest.mark.slow
@pytest.mark.timeout(360)  # 120 s at most (below), and few_receives' pipeline start
def test_a_model_failing_every_call_is_waited_for_beyond_the_receives_then_the_job_fails_saying_how_long(few_receives):
    """The model answers 500 to every call: each attempt makes 1 + 3 SDK retries; the worker re-queues the
    job as a new delayed message each time (1-2 s, 2-4 s, 4-8 s, then the rest of the 14 s wait), so it gets more
    attempts than its 2 receives would allow, and fails once it has waited 14 s, saying so. About 16 s;
    120 s at most."""
    standin = StandIn(few_receives["standin_url"])
    # Each 500 says retry after 0.1 s: the SDK's own retries of an attempt take that, not its 0.5-8 s back-off (the
    # worker's back-off between attempts takes a Retry-After as a floor only, so it is unchanged).
    standin(fail={"status": 500, "retry_after": 0.1})
    waiting: list[str] = []
    try:
        status, _, job = call("POST", jobs_url(few_receives), documents(1))
        assert status == 202, job

        def watch() -> dict[str, Any] | None:
            current = get(few_receives, job["id"])
            if current.get("waiting"):
                waiting.append(current["waiting"])
            return current if current["status"] in TERMINAL else None

        done = wait_until(watch, timeout_s=120, what="the job to settle")
        calls = standin.stats()["by_status"]
    finally:
        standin.reset()
    assert done["status"] == "failed", done
    assert done["attempts"] > MAX_RECEIVES, done  # waiting for the model spent none of its receives
    assert done["error"]["type"] == "model_unavailable", done["error"]
    message = done["error"]["message"]
    assert message.startswith("the model stayed unavailable (model server error (500)): gave up after waiting "), message
    assert f"(the limit is {MODEL_WAIT_LIMIT_S} s) over {done['attempts']} attempts" in message, message
    # Each attempt's error in the job's history, the last one the give-up.
    errors = [e["message"] for e in done["attempt_errors"]]
    assert errors == ["the model failed with a server error (500)"] * (done["attempts"] - 1) + [message], errors
    assert waiting and waiting[0].startswith("model server error (500); next attempt at "), waiting
    assert calls == {"500": done["attempts"] * (1 + WORKER_SDK_RETRIES)}, calls
    # Failed with its message deleted: nothing left in the queue (visible or not) or for the dead-letter queue.
    time.sleep(1)
    assert get(few_receives, job["id"])["status"] == "failed"
    assert queue_depth(few_receives, few_receives["queues"]["cpu"]) == 0
    assert queue_depth(few_receives, few_receives["dead_letter_queues"]["cpu"]) == 0
    assert restarts(few_receives) == ""


@pytest.mark.slow
@pytest.mark.timeout(300)  # 90 s at most (below), and few_receives' pipeline start when it runs first
def test_a_poison_message_goes_to_the_dead_letter_queue_and_the_sweeper_drains_it(few_receives):
    """A message that is not a job: the worker hides it MALFORMED_RETRY_S per receive, so SQS moves it to the
    dead-letter queue on the receive after the second, about 6 s after it was sent; the sweeper (every 2 s)
    deletes it there. 90 s at most.

    Nothing but that move takes it off the lane's queue (the worker never deletes a message that is not a
    job), and only the sweeper reads the dead-letter queue: both queues empty means it went that way."""
    sqs = aws(few_receives, "sqs")
    cpu, dlq = few_receives["queues"]["cpu"], few_receives["dead_letter_queues"]["cpu"]
    body = f"not a job {uuid.uuid4().hex}"
    sqs.send_message(QueueUrl=cpu, MessageBody=body)
    wait_until(lambda: queue_depth(few_receives, cpu) == 0 and queue_depth(few_receives, dlq) == 0,
               timeout_s=90, every_s=1, what="the poison message to leave the cpu queue and its dead-letter queue")
    worker_log = log_text(few_receives, "worker.log")
    assert worker_log.count(f"not a job message: {body!r}") == MAX_RECEIVES, worker_log[-2000:]
    for name in ("worker.log", "sweeper.log", "dispatcher.log"):
        assert "Traceback" not in log_text(few_receives, name), name
    assert restarts(few_receives) == "" and few_receives["process"].poll() is None
    # And the pipeline still works after it.
    status, _, job = call("POST", jobs_url(few_receives), SHORT)
    assert status == 200 and job["status"] == "succeeded", job


def test_the_sweeper_reports_the_dead_letters_it_drains(few_receives):
    """A poison message put straight on the cpu lane's dead-letter queue (as SQS leaves one there): the
    sweeper drains it within a round or two and says so (``settled: SweepReport(... poison=1)``)."""
    sqs = aws(few_receives, "sqs")
    dlq = few_receives["dead_letter_queues"]["cpu"]
    before = log_text(few_receives, "sweeper.log").count("poison=1")
    sqs.send_message(QueueUrl=dlq, MessageBody=f"not a job {uuid.uuid4().hex}")
    wait_until(lambda: queue_depth(few_receives, dlq) == 0, timeout_s=30, what="the sweeper to drain the dead-letter queue")
    # The round that drained it logs its report as it ends.
    wait_until(lambda: log_text(few_receives, "sweeper.log").count("poison=1") > before, timeout_s=10,
               what="the sweeper's report of the poison message")
