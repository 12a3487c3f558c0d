"""The demo: the whole job path on one machine, over real HTTP, in about ten seconds.

1. Starts the local pipeline (moto server, Claude stand-in, router behind a local API Gateway,
   worker process, webhook dispatcher, webhook receiver).
2. Submits a short job (``invoice.extract``): it runs inline and the response carries the result (200).
3. Submits a long job (``documents.summarize``): it is queued (202), polled by id until it
   succeeds, and its result is shown: kept in the job item (a result over 16 KB would be read back
   through the presigned ``result_url``).
4. Waits for both signed webhooks (the short job's receiver fails its first attempt, so that one
   arrives on the retry) and shows the delivery log, and how many Messages API calls Claude got.

Exits 0 only if every step did what it should. ``python -m local.demo`` (``--providers bedrock``: every model call
through the anthropic SDK's Bedrock client, to the stand-in's Bedrock runtime path, with no Anthropic key anywhere).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from local.client import call
from local.pipeline import LocalPipeline, Options

SAMPLES = Path(__file__).resolve().parent / "samples"
POLL_TIMEOUT_S = 120.0


class DemoFailure(Exception):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


def short_job(api: str, webhook_url: str) -> str:
    text = (SAMPLES / "invoice_acme.txt").read_text()
    started = time.perf_counter()
    status, _, job = call("POST", f"{api}/v1/jobs", {"task": "invoice.extract", "input": {"text": text}, "webhook": {"url": webhook_url}})
    elapsed = (time.perf_counter() - started) * 1000
    expect(status == 200 and job.get("status") == "succeeded", f"short job: expected 200 succeeded, got {status} {job}")
    invoice = job["result"]["invoice"]
    print(f"[short] POST /v1/jobs invoice.extract -> {status} {job['status']} in {elapsed:.0f} ms")
    print(f"        route: {job['route']['lane']} ({job['route']['reason']})")
    print(f"        vendor={invoice['vendor']!r} number={invoice['invoice_number']} total={invoice['total']} {invoice['currency']}, "
          f"{len(invoice['line_items'])} lines, checks={job['result']['checks']}")
    print(f"        {describe_cost(job)}")
    return job["id"]


def long_job(api: str, webhook_url: str) -> str:
    documents = json.loads((SAMPLES / "documents.json").read_text())
    started = time.perf_counter()
    body = {"task": "documents.summarize", "input": {"documents": documents}, "webhook": {"url": webhook_url}}
    status, headers, job = call("POST", f"{api}/v1/jobs", body)
    expect(status == 202 and job.get("status") == "queued", f"long job: expected 202 queued, got {status} {job}")
    location = headers.get("Location") or headers.get("location") or ""
    expect(location == f"/v1/jobs/{job['id']}", f"long job: Location header {location!r}")
    print(f"[long]  POST /v1/jobs documents.summarize ({len(documents)} documents) -> {status} {job['status']}, Location: {location}")
    print(f"        route: {job['route']['lane']} ({job['route']['reason']})")
    job = poll(api, location, started)
    expect(job["status"] == "succeeded", f"long job ended {job['status']}: {job.get('error')}")
    if job.get("result_url"):  # a result over 16 KB is stored in S3
        with urllib.request.urlopen(job["result_url"], timeout=30) as response:
            stored = json.loads(response.read())
        expect(stored == job["result"], "the stored result differs from the one the API returned")
        where = "read back from S3 via result_url"
    else:  # a small one is kept in the job item
        stored, where = job["result"], "kept in the job item (no S3 object)"
    print(f"        result {where}: {stored['documents']} summaries, e.g. {stored['summaries'][0]['summary']!r}")
    print(f"        usage: {job['usage']}; {describe_cost(job)}")
    return job["id"]


def describe_cost(job: dict[str, Any]) -> str:
    cost = job.get("cost") or {}
    estimate, actual = cost.get("estimate"), cost.get("actual")
    if estimate is None or actual is None:
        raise DemoFailure(f"job {job['id']} has no cost estimate or actual cost: {cost}")
    return f"cost: estimated ${estimate['total']:.6f}, actual ${actual['total']:.6f} ({actual['basis'].split(';')[0]})"


def poll(api: str, location: str, started: float) -> dict[str, Any]:
    seen = None
    while time.perf_counter() - started < POLL_TIMEOUT_S:
        status, _, job = call("GET", f"{api}{location}")
        expect(status == 200, f"GET {location} -> {status} {job}")
        if job["status"] != seen:
            seen = job["status"]
            print(f"        poll +{(time.perf_counter() - started) * 1000:.0f} ms: {seen} (attempts {job['attempts']})")
        if seen not in {"queued", "running"}:
            return job
        time.sleep(0.25)
    raise DemoFailure(f"{location} did not finish in {POLL_TIMEOUT_S:g} s")


def intake_job(api: str, bucket: str) -> str:
    """An invoice dropped into the bucket's intake prefix: S3's notification → the intake queue → a job."""
    import boto3

    key = "intake/invoice.extract/invoice_acme.txt"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=(SAMPLES / "invoice_acme.txt").read_bytes())
    source = f"s3://{bucket}/{key}"
    deadline = time.perf_counter() + POLL_TIMEOUT_S
    while True:
        status, _, page = call("GET", f"{api}/v1/jobs?{urllib.parse.urlencode({'source': source})}")
        expect(status == 200, f"GET /v1/jobs?source= -> {status} {page}")
        jobs = page["jobs"]
        if jobs and jobs[0]["status"] in {"succeeded", "failed"}:
            break
        expect(time.perf_counter() < deadline, f"the intake object {source} did not become a finished job: {jobs}")
        time.sleep(0.2)
    expect(len(jobs) == 1 and jobs[0]["status"] == "succeeded", f"intake job: expected one succeeded job, got {jobs}")
    status, _, job = call("GET", f"{api}/v1/jobs/{jobs[0]['id']}")
    invoice = job["result"]["invoice"]
    print(f"[s3]    PUT {source} -> job {job['id']} {job['status']} (GET /v1/jobs?source= finds it)")
    print(f"        route: {job['route']['lane']} ({job['route']['reason']})")
    print(f"        vendor={invoice['vendor']!r} number={invoice['invoice_number']} total={invoice['total']} {invoice['currency']}")
    return str(job["id"])


def webhooks(pipeline: LocalPipeline, api: str, job_ids: list[str]) -> None:
    for job_id in job_ids:
        event = pipeline.webhooks.wait_for(job_id, timeout_s=30)
        if event is None:
            raise DemoFailure(f"no webhook for {job_id}")
        tries = pipeline.webhooks.attempts[event["id"]]
        print(f"[hook]  {event['type']} for {job_id}: signature verified, webhook-id {event['id']}, attempt {tries}")
        log = delivery_log(api, job_id)
        expect(log["state"] == "delivered" and len(log["attempts"]) == tries,
               f"the delivery log of {job_id} does not match what the receiver saw: {log}")
        if tries > 1:
            for attempt in log["attempts"]:
                outcome = f"HTTP {attempt['status']}" if "status" in attempt else attempt.get("error")
                print(f"        GET /v1/jobs/{{id}}/deliveries: attempt {attempt['attempt']} at {attempt['at']}: {outcome}"
                      f" ({attempt['duration_ms']} ms)")
            print(f"        {log['summary']}")
    expect(not pipeline.webhooks.rejected, f"webhooks with bad signatures: {pipeline.webhooks.rejected}")


def delivery_log(api: str, job_id: str) -> dict[str, Any]:
    """The job's delivery, once the dispatcher has recorded the attempt the receiver answered."""
    deadline = time.perf_counter() + 10
    while True:
        status, _, body = call("GET", f"{api}/v1/jobs/{job_id}/deliveries")
        expect(status == 200 and len(body.get("deliveries", [])) == 1, f"GET deliveries of {job_id} -> {status} {body}")
        delivery = body["deliveries"][0]
        if delivery["state"] != "pending" or time.perf_counter() > deadline:
            return delivery
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The whole job path on one machine, end to end.")
    parser.add_argument("--providers", default=None,
                        help="model providers in order, e.g. bedrock or anthropic,bedrock (default: cdk.json's model_providers)")
    args = parser.parse_args(argv)
    providers = [p.strip() for p in args.providers.split(",")] if args.providers else None
    bedrock_only = providers == ["bedrock"]
    # With Bedrock alone the stand-in answers every call (locally Bedrock is only ever the stand-in's path) and no
    # Anthropic key is read, even one in the environment.
    use_standin = bedrock_only or not os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("USE_STANDIN") == "1"
    if bedrock_only:
        os.environ.pop("ANTHROPIC_API_KEY", None)  # nor do the pipeline's processes inherit one
    pipeline = LocalPipeline(Options(use_standin=use_standin, config={"model_providers": providers} if providers else {}))
    with pipeline as endpoints:
        print(f"local pipeline up: API {endpoints.api_url}, AWS (moto) {endpoints.aws_endpoint}, "
              f"Claude {'stand-in ' + endpoints.standin_url if endpoints.standin_url else 'API (ANTHROPIC_API_KEY)'}")
        try:
            # The short job's receiver answers 503 once: its webhook arrives on the second attempt.
            ids = [short_job(endpoints.api_url, f"{endpoints.webhook_url}?fail=1"),
                   long_job(endpoints.api_url, endpoints.webhook_url),
                   intake_job(endpoints.api_url, endpoints.resources.bucket)]  # its webhook: the intake's (this receiver)
            webhooks(pipeline, endpoints.api_url, ids)
        except DemoFailure as failure:
            print(f"DEMO FAILED: {failure}\n(logs: {Path(endpoints.worker_log).parent})", file=sys.stderr)
            return 1
        if pipeline.standin is not None:
            stats = pipeline.standin.stats()
            print(f"[claude] the stand-in answered {stats['requests']} Messages API requests from the anthropic SDK"
                  f" and {stats['bedrock']['requests']} Bedrock InvokeModel requests from its Bedrock client")
            if bedrock_only and (stats["requests"] or not stats["bedrock"]["requests"]):
                print("DEMO FAILED: with providers [bedrock] every model call goes to Bedrock", file=sys.stderr)
                return 1
    print("demo succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
