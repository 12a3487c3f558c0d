"""Benchmark of the router's cold start, as ratios to the anthropic SDK's own import.

    python -m bench.bench_coldstart [--quick] [--repeats 7]

Each figure is the median of ``--repeats`` fresh interpreters (each timed from inside, so the interpreter's own
start is left out), on this machine, against a moto server (AWS) in this process:

* ``import anthropic``: the reference (about a second of CPU; only an inline run needs it);
* ``import router.handler``: what every cold start pays before its first request;
* the first ``GET /v1/tasks`` and the first queued ``POST /v1/jobs`` of a fresh router (each in its own
  interpreter: settings, boto3 clients, the first AWS calls);
* the same first request after :func:`router.snapstart.prime` (what SnapStart's snapshot already holds, so
  roughly what a restored router pays, restore itself aside);
* a warm request of each (the median of 20 once the router is up): the figure cold starts are compared with;
* the first and a warm queued ``POST /v1/jobs`` with tracing on: ``TRACES_ENDPOINT`` an OTLP/HTTP sink on 127.0.0.1
  in this process, so the first request imports the OpenTelemetry SDK and its OTLP exporter, and every request ends
  with the export's POST (as ``traces_endpoint: xray`` does, less SigV4's signing and the network to the Region).

Goals (bench/README.md): importing the router costs well under the SDK's import (≤ 0.5 ×), and neither the import
nor a GET or a queued POST loads the SDK. It never fails a build.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import Goal, Section

ROOT = Path(__file__).resolve().parents[1]
GOAL_IMPORT_RATIO = 0.5  # the router's import at most half the SDK's
WARM_REQUESTS = 20

_SDK = """
import time
t = time.perf_counter()
import anthropic
print(time.perf_counter() - t)
"""

# argv[1]: "import" | "get" | "post"; argv[2]: "cold" | "primed". Prints one JSON line of seconds.
_ROUTER = """
import json, sys, time
t = time.perf_counter()
import router.handler as router
imported = time.perf_counter() - t
from local.gateway import LambdaContext, to_event
from tests.bodies import LONG
what, how = sys.argv[1], sys.argv[2]
out = {"import": imported, "sdk_loaded": "anthropic" in sys.modules}
if how == "primed":
    t = time.perf_counter()
    from router import snapstart
    snapstart.prime(router.service)
    out["prime"] = time.perf_counter() - t
headers = {"x-api-key": "bench-tenant", "content-type": "application/json"}
def request(kind):
    event = (to_event("GET", "/v1/tasks", headers, None) if kind == "get"
             else to_event("POST", "/v1/jobs", headers, json.dumps(LONG)))
    t = time.perf_counter()
    answer = router.handler(event, LambdaContext(30))
    elapsed = time.perf_counter() - t
    assert answer["statusCode"] in (200, 202), answer
    return elapsed
if what != "import":
    out["first"] = request(what)
    out["warm_get"] = sorted(request("get") for _ in range(int(sys.argv[3])))[int(sys.argv[3]) // 2]
    out["warm_post"] = sorted(request("post") for _ in range(int(sys.argv[3])))[int(sys.argv[3]) // 2]
out["sdk_loaded"] = "anthropic" in sys.modules
print(json.dumps(out))
"""


@dataclass
class Figures:
    sdk_s: float
    import_s: float
    first_get_s: float
    first_post_s: float
    primed_get_s: float
    primed_post_s: float
    prime_s: float
    warm_get_s: float
    warm_post_s: float
    traced_post_s: float
    traced_warm_post_s: float
    traced_spans: int
    sdk_loaded: bool
    repeats: int


def _run(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return done.stdout.strip().splitlines()[-1]


def _median(values: list[float]) -> float:
    return statistics.median(values)


def measure(repeats: int) -> Figures:
    from moto.server import ThreadedMotoServer

    from local import resources
    from local.otlp_sink import OtlpSink
    from stacks.config import PipelineConfig

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    sink = OtlpSink().start()
    try:
        host, port = server.get_host_and_port()
        aws = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
        import boto3

        config = PipelineConfig()
        lanes = config.lanes()
        session = boto3.Session(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
                                aws_session_token="testing")
        old = {key: os.environ.get(key) for key in aws}
        os.environ.update(aws)
        try:
            made = resources.create(session, lanes=lanes, max_receives=config.max_receives, prefix="bench-coldstart")
            # The cpu lane's ECS service at 0 tasks: a queued POST wakes it, as in AWS (LANE_SERVICES below).
            ecs = session.client("ecs")
            ecs.create_cluster(clusterName="bench-workers")
            ecs.register_task_definition(family="bench-cpu", containerDefinitions=[{"name": "Worker", "image": "worker", "memory": 512}])
            service_arn = ecs.create_service(cluster="bench-workers", serviceName="bench-cpu", taskDefinition="bench-cpu",
                                             desiredCount=0)["service"]["serviceArn"]
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        env = {
            **os.environ, **aws, "PYTHONPATH": os.pathsep.join(["lambda_src", "container_src", "."]),
            "LANES": json.dumps(lanes.to_dict()), "PRICE_OVERRIDES": "{}", "STAGE": "bench", "JOBS_TABLE": made.table,
            "RESULTS_BUCKET": made.bucket, "LANE_QUEUE_URLS": json.dumps(made.queue_urls),
            "WEBHOOK_QUEUE_URL": made.webhook_queue_url, "MODEL_ID": config.model_id,
            "LANE_SERVICES": json.dumps({"cpu": service_arn}),
            # As in AWS: the key in Secrets Manager (never fetched: no request here calls Claude).
            "ANTHROPIC_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:anthropic",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        env.pop("ANTHROPIC_BASE_URL", None)
        traced_env = {**env, "TRACES_ENDPOINT": sink.url}
        kinds = (("import", "cold"), ("get", "cold"), ("post", "cold"), ("get", "primed"), ("post", "primed"))
        sdk: list[float] = []
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {kind: [] for kind in kinds}
        traced: list[dict[str, Any]] = []
        for _ in range(repeats):  # interleaved: a busy spell of the shared machine weighs on the SDK and the router alike
            sdk.append(float(_run(_SDK, env)))
            for what, how in kinds:
                runs[(what, how)].append(json.loads(_run(_ROUTER, env, what, how, str(WARM_REQUESTS))))
            traced.append(json.loads(_run(_ROUTER, traced_env, "post", "cold", str(WARM_REQUESTS))))
    finally:
        server.stop()
        sink.stop()

    def med(key: tuple[str, str], field: str) -> float:
        return _median([run[field] for run in runs[key]])

    every = [run for group in runs.values() for run in group]
    return Figures(
        sdk_s=_median(sdk), import_s=med(("import", "cold"), "import"),
        first_get_s=med(("get", "cold"), "first"), first_post_s=med(("post", "cold"), "first"),
        primed_get_s=med(("get", "primed"), "first"), primed_post_s=med(("post", "primed"), "first"),
        prime_s=med(("get", "primed"), "prime"),
        warm_get_s=_median([run["warm_get"] for key, group in runs.items() if key[0] != "import" for run in group]),
        warm_post_s=_median([run["warm_post"] for key, group in runs.items() if key[0] != "import" for run in group]),
        traced_post_s=_median([run["import"] + run["first"] for run in traced]),
        traced_warm_post_s=_median([run["warm_post"] for run in traced]), traced_spans=len(sink.received),
        sdk_loaded=any(run["sdk_loaded"] for run in every), repeats=repeats,
    )


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms" if seconds >= 0.01 else f"{1000 * seconds:.1f} ms"


def section(quick: bool = False, *, repeats: int | None = None) -> Section:
    f = measure(repeats or (3 if quick else 7))
    sec = Section("The router's cold start, as ratios to the anthropic SDK's import (`python -m bench.bench_coldstart`)")

    def ratio(seconds: float) -> str:
        return f"{seconds / f.sdk_s:.3f} ×" if seconds < 0.01 * f.sdk_s else f"{seconds / f.sdk_s:.2f} ×"

    sec.goals += [
        Goal(f"importing the router ≤ {GOAL_IMPORT_RATIO:g} × importing the SDK", f"{ratio(f.import_s)} "
             f"({_ms(f.import_s)} vs {_ms(f.sdk_s)})", f.import_s <= GOAL_IMPORT_RATIO * f.sdk_s),
        Goal("the router's import, a GET and a queued POST never load the SDK", "not loaded" if not f.sdk_loaded else "loaded",
             not f.sdk_loaded),
    ]
    cold_get, cold_post = f.import_s + f.first_get_s, f.import_s + f.first_post_s
    sec.lines += [
        f"The SDK's import, the unit: {_ms(f.sdk_s)} (median of {f.repeats} fresh interpreters). Each cold figure is "
        "the median of as many fresh interpreters, against a moto server; warm ones, of 20 requests of a warm router.",
        "",
        "| figure | time | × the SDK's import |",
        "|---|---|---|",
        f"| `import anthropic` | {_ms(f.sdk_s)} | 1.00 × |",
        f"| `import router.handler` | {_ms(f.import_s)} | {ratio(f.import_s)} |",
        f"| first `GET /v1/tasks` (settings, clients, cost model) | {_ms(f.first_get_s)} | {ratio(f.first_get_s)} |",
        f"| first queued `POST /v1/jobs` (+ the first DynamoDB, SQS and ECS calls) | {_ms(f.first_post_s)} | {ratio(f.first_post_s)} |",
        f"| cold start to a GET answered (import + first GET) | {_ms(cold_get)} | {ratio(cold_get)} |",
        f"| cold start to a queued POST answered (import + first POST) | {_ms(cold_post)} | {ratio(cold_post)} |",
        f"| SnapStart's priming (`router.snapstart.prime`, in the snapshot) | {_ms(f.prime_s)} | {ratio(f.prime_s)} |",
        f"| first GET after priming | {_ms(f.primed_get_s)} | {ratio(f.primed_get_s)} |",
        f"| first queued POST after priming | {_ms(f.primed_post_s)} | {ratio(f.primed_post_s)} |",
        f"| warm GET /v1/tasks | {_ms(f.warm_get_s)} | {ratio(f.warm_get_s)} |",
        f"| warm queued POST /v1/jobs | {_ms(f.warm_post_s)} | {ratio(f.warm_post_s)} |",
        f"| tracing on: cold start to a queued POST answered (+ OpenTelemetry's SDK and OTLP exporter, the export) | "
        f"{_ms(f.traced_post_s)} | {ratio(f.traced_post_s)} |",
        f"| tracing on: warm queued POST /v1/jobs (its spans exported before it returns) | {_ms(f.traced_warm_post_s)} | "
        f"{ratio(f.traced_warm_post_s)} |",
        "",
        f"Tracing on: `TRACES_ENDPOINT` an OTLP/HTTP sink on 127.0.0.1, which took {f.traced_spans} exports (one per "
        "request: the router flushes its spans before it returns). `traces_endpoint: xray` adds SigV4's signing "
        "(botocore, already loaded) and the network to the Region's endpoint to each export.",
        "",
        "Lambda adds its own init (the runtime, unpacking the bundle) before the import; with SnapStart a restore "
        "replaces the import and the priming, with provisioned concurrency neither is on the request's path. Costs of "
        "each: docs/deploy.md, \"The router's cold start\".",
    ]
    return sec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 interpreters a figure instead of 7")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    print(section(args.quick, repeats=args.repeats).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
