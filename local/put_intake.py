"""Drop a file into a running local pipeline's S3 intake, then show the job it became:
``python -m local.put_intake [FILE] [--task TASK]`` (``make intake ARGS="FILE --task TASK"``).

What ``aws s3 cp FILE s3://<bucket>/intake/<task>/<name>`` does in AWS, without the AWS CLI or credentials:
moto (``make serve``'s, on 127.0.0.1:8081 unless ``--aws-endpoint`` says otherwise) takes any.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3

from jobcore.intake import PREFIX
from local import client, resources
from local.gateway import LOCAL_API_KEY
from local.pipeline import REGION
from local.serve import API_PORT, AWS_PORT

SAMPLE = Path(__file__).resolve().parent / "samples" / "invoice_acme.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=SAMPLE, help="the object's content (default: a sample invoice)")
    parser.add_argument("--task", default="invoice.extract", help="the task its prefix names (default: invoice.extract)")
    parser.add_argument("--name", help="the object's name under intake/<task>/ (default: the file's)")
    parser.add_argument("--aws-endpoint", default=os.environ.get("AWS_ENDPOINT_URL", f"http://127.0.0.1:{AWS_PORT}"),
                        help="moto's URL (local.serve's aws_endpoint; default: AWS_ENDPOINT_URL, else make serve's)")
    parser.add_argument("--api-url", default=os.environ.get("JOBPIPE_API_URL", f"http://127.0.0.1:{API_PORT}"),
                        help="the local API, to show the job (default: JOBPIPE_API_URL, else make serve's)")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the job to finish (0: do not look)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    key = f"{PREFIX}{args.task}/{args.name or args.file.name}"
    bucket = resources.bucket_name()
    s3 = boto3.client("s3", endpoint_url=args.aws_endpoint, region_name=REGION,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=args.file.read_bytes())
    except Exception as error:  # noqa: BLE001 - the one thing to say: is the pipeline running there?
        print(f"could not put s3://{bucket}/{key} at {args.aws_endpoint} ({error}); is `make serve` running?", file=sys.stderr)
        return 1
    source = f"s3://{bucket}/{key}"
    print(f"put {source}", flush=True)
    if args.wait <= 0:
        return 0
    job = _job_of(args.api_url, source, args.wait)
    if job is None:
        print(f"no finished job for {source} within {args.wait:g} s; GET /v1/jobs?source={source}", file=sys.stderr)
        return 1
    print(f"{job['id']} {job['status']}, route {job['route']['reason']}")
    return 0 if job["status"] == "succeeded" else 1


def _job_of(api_url: str, source: str, wait_s: float) -> dict[str, Any] | None:
    """The newest job made from ``source`` once it is finished, waiting up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    url = f"{api_url}/v1/jobs?source={quote(source, safe='')}"
    while True:
        status, _, page = client.call("GET", url, key=LOCAL_API_KEY)
        jobs = page.get("jobs", []) if status == 200 else []
        if jobs and jobs[0].get("finished_at"):
            return jobs[0]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
