"""Cold starts: importing the router (and the task catalogue) or the webhook dispatcher loads no heavy library.

Checked in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Imported where a job runs, never at import time: the anthropic SDK (jobadapters.claude imports it
# when the first call is made), and the embedding task's runtime (the gpu lane's worker loads
# jobadapters.embeddings; the router Lambda's bundle does not even contain these).
HEAVY = ("anthropic", "numpy", "onnxruntime", "tokenizers", "onnx")

PROBE = f"""
import sys
import router.handler, jobcore.tasks
loaded = sorted(name for name in {HEAVY!r} if name in sys.modules)
assert not loaded, f"imported at import time: {{loaded}}"
from jobcore.tasks.base import load_executor
assert load_executor.cache_info().currsize == 0, "an executor was loaded at import time"
# What the router does with a task it queues (validate, estimate, route) loads nothing heavy either.
spec = jobcore.tasks.CATALOGUE["embeddings.encode"]
spec.expected_duration_s(spec.validate({{"texts": ["a", "b"]}}))
loaded = sorted(name for name in {HEAVY!r} if name in sys.modules)
assert not loaded, f"imported by validating an embeddings job: {{loaded}}"
"""


def test_importing_the_router_and_the_catalogue_imports_neither_the_sdk_nor_the_embedding_runtime():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."])}

    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr


DISPATCHER_PROBE = f"""
import sys
import dispatcher.handler
loaded = sorted(name for name in {HEAVY!r} if name in sys.modules)
assert not loaded, f"imported at import time: {{loaded}}"
"""


def test_importing_the_webhook_dispatcher_does_not_import_the_anthropic_sdk():
    """The dispatcher Lambda never calls Claude, though it shares the wiring module with the router."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."])}

    done = subprocess.run([sys.executable, "-c", DISPATCHER_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr


REQUEST_PROBE = f"""
import json, os, sys
os.environ.update({{"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_REGION": "us-east-1"}})
for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "ANTHROPIC_API_KEY"):
    os.environ.pop(key, None)
import router.handler as router
import boto3
from moto import mock_aws
from local import resources
from local.gateway import LambdaContext, to_event
from tests.adapters.support import LANES, MAX_RECEIVES
from tests.bodies import LONG

with mock_aws():
    aws = resources.create(boto3.Session(region_name="us-east-1"), lanes=LANES, max_receives=MAX_RECEIVES)
    os.environ.update({{
        "STAGE": "test", "JOBS_TABLE": aws.table, "RESULTS_BUCKET": aws.bucket, "LANES": json.dumps(LANES.to_dict()),
        "PRICE_OVERRIDES": "{{}}", "LANE_QUEUE_URLS": json.dumps({{"cpu": aws.queue_urls["cpu"]}}),
        "WEBHOOK_QUEUE_URL": aws.webhook_queue_url, "MODEL_ID": "claude-test",
        "ANTHROPIC_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:anthropic",  # as in AWS
    }})
    headers = {{"x-api-key": "tenant-a-key", "content-type": "application/json"}}
    answers = [router.handler(to_event("GET", "/v1/tasks", headers, None), LambdaContext(30))["statusCode"],
               router.handler(to_event("POST", "/v1/jobs", headers, json.dumps(LONG)), LambdaContext(30))["statusCode"]]
    job = json.loads(router.handler(to_event("POST", "/v1/jobs", headers, json.dumps(LONG)), LambdaContext(30))["body"])
    answers.append(router.handler(to_event("GET", "/v1/jobs/" + job["id"], headers, None), LambdaContext(30))["statusCode"])
assert answers == [200, 202, 200], answers
loaded = sorted(name for name in {HEAVY!r} if name in sys.modules)
assert not loaded, f"imported to answer a GET or a queued POST: {{loaded}}"
# Nor the batch lane's parts (the collector's), which the router never uses.
assert "jobcore.batches" not in sys.modules, "the router imported the batch collector"
"""


def test_answering_a_get_or_a_queued_post_does_not_import_the_anthropic_sdk():
    """Only an inline run calls Claude: the SDK (about a second of CPU to import) is loaded by the first model call,
    never by the router's import, a read, or a job it queues (nor the Anthropic key fetched)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."])}

    done = subprocess.run([sys.executable, "-c", REQUEST_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr


WORKER_PROBE = """
import sys
from unittest import mock
import worker.main
calls = []
with mock.patch.object(worker.main, "start_process", lambda **kwargs: None), \\
        mock.patch.object(worker.main.WorkerSettings, "from_env", lambda env: mock.MagicMock()), \\
        mock.patch.object(worker.main.AwsClients, "create", lambda *a, **k: None), \\
        mock.patch.object(worker.main, "build_poller", lambda s, c: mock.MagicMock(run=lambda stop: calls.append(
            "anthropic.resources.messages" in sys.modules))), \\
        mock.patch.object(worker.main.os, "_exit", lambda code: None):
    assert "anthropic" not in sys.modules
    worker.main.main()
assert calls == [True], calls
"""


def test_the_worker_loads_the_sdk_before_its_first_receive_not_in_its_first_burst_of_calls():
    """The opposite of the router's choice: a worker imports the SDK once at its start (its first burst of calls waited
    5-10 s behind one thread's import), before its poll loop runs."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."])}

    done = subprocess.run([sys.executable, "-c", WORKER_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
