"""Benchmark of the idle-lane wake call: what waking an idle lane adds to a queued submit.

    python -m bench.bench_wake [--quick] [--submits 40]

On moto (``mock_aws``, in this process: the DynamoDB table, the S3 bucket, the lane queues and an ECS cluster
with the cpu lane's service at 0 tasks), the router's job service (``jobadapters.wiring.build_service`` with
``LANE_SERVICES``) submits queued jobs (documents.summarize) three ways, ``--submits`` each:

* without a waker (the backlog alarm alone, as before);
* with the waker on an idle lane: every submit finds the service at 0 (set back before each) and a fresh gate,
  so each pays the whole wake (DescribeServices + UpdateService);
* with the waker and its gate closed (a lane woken in the last ``WAKE_EVERY_S``): what almost every submit pays.

It reports the median and p95 submit time of each, the AWS calls of one submit on an idle lane (counted with
botocore's ``before-call`` event), and that the service's desired count went 0 → 1. moto answers in-process, so
the times are this code's and moto's, not AWS's network round trips (two ECS calls: tens of ms in a region, once
per lane per ``WAKE_EVERY_S`` per router environment). It never fails a build.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from typing import Any
from unittest import mock

from bench.report import Goal, Section, percentile
from jobcore.lanes import FargateCompute

CLUSTER, SERVICE = "bench-workers", "bench-cpu"
GOAL_EXTRA_CALLS = 2  # DescribeServices + UpdateService, on an idle lane only
GOAL_GATED_EXTRA_MS = 1.0  # a closed gate: no call at all


def measure(submits: int) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from jobadapters.ecs import EcsLaneWaker, LaneService
    from jobadapters.settings import RouterSettings
    from jobadapters.wiring import AwsClients, build_service
    from jobcore.requests import SubmitRequest
    from jobcore.wake import GatedWaker, WakeGate
    from local import resources
    from local.aws_calls import AwsCalls
    from stacks.config import PipelineConfig

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1"}
    with mock.patch.dict(os.environ, env):  # restores the environment as it was, AWS_ENDPOINT_URL included
        os.environ.pop("AWS_ENDPOINT_URL", None)
        with mock_aws():
            config = PipelineConfig()
            lanes = config.lanes()
            session = boto3.Session(region_name="us-east-1")
            made = resources.create(session, lanes=lanes, max_receives=config.max_receives, prefix="bench-wake")
            ecs = session.client("ecs")
            ecs.create_cluster(clusterName=CLUSTER)
            ecs.register_task_definition(family="bench-cpu", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                                         cpu="1024", memory="2048",
                                         containerDefinitions=[{"name": "Worker", "image": "worker", "essential": True}])
            arn = ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition="bench-cpu", desiredCount=0,
                                     launchType="FARGATE")["service"]["serviceArn"]
            env = {
                "STAGE": "bench", "JOBS_TABLE": made.table, "RESULTS_BUCKET": made.bucket, "LANES": json.dumps(lanes.to_dict()),
                "PRICE_OVERRIDES": "{}", "LANE_QUEUE_URLS": json.dumps(made.queue_urls), "WEBHOOK_QUEUE_URL": made.webhook_queue_url,
                "MODEL_ID": config.model_id, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "LANE_SERVICES": json.dumps({"cpu": arn}),
            }
            settings = RouterSettings.from_env(env)
            clients = AwsClients(session.resource("dynamodb").Table(made.table), session.client("sqs"), session.client("s3"))
            service = build_service(settings, clients)
            counted = AwsCalls(ecs, clients.table, clients.sqs, clients.s3)

            def calls() -> dict[str, int]:
                return dict(Counter(call.split(":")[1] for call in counted.take()))
            services = {"cpu": LaneService.from_arn(arn)}
            request = SubmitRequest(task="documents.summarize",
                                    input={"documents": [{"id": "a", "text": "One short document."}]})

            def desired() -> int:
                return int(ecs.describe_services(cluster=CLUSTER, services=[arn])["services"][0]["desiredCount"])

            def submit() -> float:
                t = time.perf_counter()
                submitted = service.submit(request, tenant_id="bench")
                elapsed = time.perf_counter() - t
                assert submitted.job.lane == "cpu", submitted.job.route_reason
                return elapsed

            def idle_lane() -> None:
                ecs.update_service(cluster=CLUSTER, service=arn, desiredCount=0)
                service.waker = GatedWaker(EcsLaneWaker(ecs, services), lanes=lanes, gate=WakeGate(monotonic=time.monotonic))

            woken = GatedWaker(EcsLaneWaker(ecs, services), lanes=lanes, gate=WakeGate(monotonic=time.monotonic))
            woken.wake("cpu")  # opens its window: every submit through it finds the gate closed
            for _ in range(5):  # warm-up: the first submits of a process build caches
                submit()
            without: list[float] = []
            waking: list[float] = []
            gated: list[float] = []
            for _ in range(submits):  # interleaved, so a disturbance of the shared machine hits all three alike
                service.waker = None
                without.append(submit())
                idle_lane()
                waking.append(submit())
                service.waker = woken
                gated.append(submit())
            # One submit on an idle lane, its AWS calls counted (the waker's ECS client too).
            idle_lane()
            before = desired()
            calls()
            service.submit(request, tenant_id="bench")
            one_submit = calls()
            after = desired()
            service.waker = woken
            calls()
            service.submit(request, tenant_id="bench")
            gated_submit = calls()
    return {"without": without, "waking": waking, "gated": gated, "one_submit": one_submit, "gated_submit": gated_submit,
            "before": before, "after": after, "submits": submits}


def section(quick: bool = False, *, submits: int | None = None) -> Section:
    from jobcore.limits import WAKE_EVERY_S
    from jobcore.pricing import default_prices
    from jobcore.warmth import warm_tasks_month
    from stacks.config import PipelineConfig

    m = measure(submits or (10 if quick else 40))
    base = statistics.median(m["without"])
    wake_ms = 1000 * (statistics.median(m["waking"]) - base)
    gated_ms = 1000 * (statistics.median(m["gated"]) - base)
    ecs_calls = {k: v for k, v in m["one_submit"].items() if k in ("DescribeServices", "UpdateService")}
    other_calls = {k: v for k, v in m["one_submit"].items() if k not in ecs_calls}
    gated_ecs = {k: v for k, v in m["gated_submit"].items() if k in ("DescribeServices", "UpdateService")}
    cpu = PipelineConfig().lanes().get("cpu")
    warm = warm_tasks_month(default_prices(), cpu.compute)

    sec = Section("The idle-lane wake call (`python -m bench.bench_wake`)")
    sec.goals += [
        Goal("a queued submit on a lane at 0 tasks raises its desired count to 1 itself", f"{m['before']} → {m['after']}",
             (m["before"], m["after"]) == (0, 1)),
        Goal(f"the wake adds at most {GOAL_EXTRA_CALLS} AWS calls, on an idle lane only",
             f"{sum(ecs_calls.values())} ({', '.join(sorted(ecs_calls))}); {sum(gated_ecs.values())} once woken",
             sum(ecs_calls.values()) <= GOAL_EXTRA_CALLS and not gated_ecs),
        Goal(f"a submit in the gate's window ({WAKE_EVERY_S:g} s) pays nothing for it (≤ {GOAL_GATED_EXTRA_MS:g} ms)",
             f"{gated_ms:+.2f} ms", gated_ms <= GOAL_GATED_EXTRA_MS),
    ]
    rows = [("no waker (the alarm alone)", m["without"]), ("waking an idle lane (each submit)", m["waking"]),
            ("waker, gate closed (lane woken < 30 s ago)", m["gated"])]
    sec.lines += [
        f"{m['submits']} queued submits each (documents.summarize to the cpu lane), on moto in this process:",
        "",
        "| submit | median | p95 | added to the median |",
        "|---|---|---|---|",
        *[f"| {name} | {1000 * statistics.median(t):.1f} ms | {1000 * percentile(t, 0.95):.1f} ms | "
          f"{1000 * (statistics.median(t) - base):+.1f} ms |" for name, t in rows],
        "",
        f"One submit on an idle lane: {', '.join(f'{k} {v}' for k, v in sorted(other_calls.items()))} for the job, and "
        f"{', '.join(f'{k} {v}' for k, v in sorted(ecs_calls.items()))} for the wake ({wake_ms:+.1f} ms here; in AWS two "
        "ECS round trips, each bounded by the waker's 1 s connect / 2 s read timeouts, one attempt).",
        f"What it saves: the backlog alarm's path (a 1-minute metric, an alarm evaluation, a step policy: one to three "
        f"minutes before ECS starts a task). The alternative, a warm minimum of 1 task on the cpu lane "
        f"({_describe(cpu.compute)}), "
        f"costs ${warm:.2f} a month (jobcore.warmth, prices.json).",
    ]
    return sec


def _describe(compute: Any) -> str:
    if isinstance(compute, FargateCompute):
        return f"{compute.vcpu:g} vCPU / {compute.memory_mb} MB Fargate{' Spot' if compute.spot else ''}"
    return compute.kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 submits each instead of 40")
    parser.add_argument("--submits", type=int, default=None)
    args = parser.parse_args(argv)
    print(section(args.quick, submits=args.submits).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
