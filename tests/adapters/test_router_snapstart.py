"""The router under Lambda SnapStart (router.snapstart): the hooks are registered where Lambda's runtime offers them;
priming builds the service and walks the catalogue without a network call or the anthropic SDK; a restore gives the
environment its own lease owner and clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from router import snapstart

ROOT = Path(__file__).resolve().parents[2]
LANES = {
    "inline": {"queued": False, "memory_mb": 1024, "time_limit_s": 20, "compute": {"kind": "lambda", "memory_mb": 1024}},
    "cpu": {"queued": True, "memory_mb": 2048, "time_limit_s": 900, "concurrency": 8,
            "compute": {"kind": "fargate", "vcpu": 1, "memory_mb": 2048, "spot": True}},
}

PROBE = f"""
import json, os, sys, types
hooks = {{"before": [], "after": []}}
fake = types.ModuleType("snapshot_restore_py")  # what Lambda's Python runtime provides
fake.register_before_snapshot = lambda f, *a, **k: hooks["before"].append((f, a, k))
fake.register_after_restore = lambda f, *a, **k: hooks["after"].append((f, a, k))
sys.modules["snapshot_restore_py"] = fake

import boto3
sent = []
def refuse(request, **_):
    sent.append(request.url)
    raise RuntimeError("no network call may be made before the snapshot or at restore: " + request.url)
boto3.setup_default_session(region_name="us-east-1")
boto3.DEFAULT_SESSION.events.register("before-send", refuse)

os.environ.update({{
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    "STAGE": "test", "JOBS_TABLE": "jobs", "RESULTS_BUCKET": "results", "LANES": {json.dumps(json.dumps(LANES))},
    "PRICE_OVERRIDES": "{{}}", "LANE_QUEUE_URLS": json.dumps({{"cpu": "https://sqs.us-east-1.amazonaws.com/1/cpu"}}),
    "WEBHOOK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/webhooks", "MODEL_ID": "claude-test",
    "ANTHROPIC_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:anthropic",
    "LANE_SERVICES": json.dumps({{"cpu": "arn:aws:ecs:us-east-1:1:service/workers/cpu"}}),
}})
import router.handler as router
assert [h[0].__name__ for h in hooks["before"]] == ["prime"] and [h[0].__name__ for h in hooks["after"]] == ["restore"]
assert router.service._service is None  # importing builds nothing

for f, a, k in hooks["before"]:
    f(*a, **k)
primed = router.service._service
assert primed is not None, "prime built no service"
for f, a, k in hooks["after"]:
    f(*a, **k)
restored = router.service._service
assert restored is not None and restored is not primed
assert restored.runner.owner != primed.runner.owner, "a restored environment kept the snapshot's lease owner"
assert sent == [], sent
assert "anthropic" not in sys.modules, "priming imported the anthropic SDK"
print("ok")
"""


def test_the_snapshot_is_primed_without_a_network_call_and_each_restore_is_its_own():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."])}
    env.pop("AWS_ENDPOINT_URL", None)

    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_outside_lambda_nothing_is_registered():
    assert "snapshot_restore_py" not in sys.modules
    assert snapstart.register(object()) is False  # type: ignore[arg-type]


class Cache:
    def __init__(self, build):
        self.build = build
        self.built = 0
        self.cleared = 0

    def __call__(self):
        self.built += 1
        return self.build()

    def cache_clear(self):
        self.cleared += 1


def test_a_misconfigured_router_is_primed_without_failing_the_snapshot():
    from jobcore.errors import MisconfiguredError

    def refuse():
        raise MisconfiguredError("bad LANES")

    cache = Cache(refuse)
    snapstart.prime(cache)
    snapstart.restore(cache)  # logged; the first request answers 503 as usual

    assert cache.built == 2 and cache.cleared == 1
