"""Benchmark of webhook delivery: jobs with webhooks while their receiver is down, then up.

    python -m bench.bench_webhooks [--jobs 1000] [--down 15] [--clients 8]

Submits ``--jobs`` inline jobs, each with a webhook, through the local pipeline's API while the
receiver's port refuses connections; after ``--down`` seconds the receiver starts listening. Reports
delivered, failed, lost (neither delivered nor failed nor still pending) and duplicated events (the
same ``webhook-id`` received more than once), and the time from each job's end to its delivery.
Goal (bench/README.md): every event delivered once the receiver is up, none lost, duplicates only
ever with the same webhook-id. It never fails a build: speed and counts are measured here, not in tests.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from local.client import call
from local.pipeline import LocalPipeline, Options
from local.webhook_receiver import WebhookReceiver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--down", type=float, default=15.0, help="seconds the receiver refuses connections")
    parser.add_argument("--clients", type=int, default=8, help="concurrent submitting clients")
    parser.add_argument("--settle", type=float, default=300.0, help="seconds to wait for every delivery to settle")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks"
    pipeline = LocalPipeline(Options())
    with pipeline as endpoints:
        api = endpoints.api_url
        body = {"task": "claude.messages", "mode": "sync", "webhook": {"url": url},
                "input": {"max_tokens": 20, "messages": [{"role": "user", "content": "Ping."}]}}
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            submitted = list(pool.map(lambda _: call("POST", f"{api}/v1/jobs", body), range(args.jobs)))
        ids = [job["id"] for status, _, job in submitted if status == 200]
        submit_s = time.perf_counter() - started
        time.sleep(max(0.0, args.down - submit_s))
        receiver = WebhookReceiver(pipeline.options.webhook_secret, port=port).start()
        up_at = time.perf_counter()
        states = settle(api, ids, args.settle)
        receiver.stop()
    received = Counter(event["id"] for event in receiver.events)
    wanted = {f"evt_{job_id}_succeeded" for job_id in ids}
    report = {
        "jobs": args.jobs, "accepted": len(ids), "receiver_down_s": round(up_at - started, 1),
        "submit_s": round(submit_s, 1),
        "delivered": sum(1 for state in states.values() if state["state"] == "delivered"),
        "failed": sum(1 for state in states.values() if state["state"] == "failed"),
        "still_pending": sum(1 for state in states.values() if state["state"] == "pending"),
        # An accepted job whose event neither reached the receiver nor is recorded as failed or pending.
        "lost": sum(1 for job_id, s in states.items()
                    if s["state"] == "missing" or (s["state"] == "delivered" and f"evt_{job_id}_succeeded" not in received)),
        "received_events": sum(received.values()), "duplicated": sum(n - 1 for n in received.values() if n > 1),
        "foreign_events": len(set(received) - wanted), "bad_signatures": len(receiver.rejected),
        "all_delivered_s_after_up": round(max((s["settled_at"] for s in states.values()), default=up_at) - up_at, 1),
        "attempts_per_delivery": Counter(s["attempts"] for s in states.values()),
    }
    report["goal_met"] = report["delivered"] == len(ids) and report["lost"] == 0 and report["foreign_events"] == 0
    print(json.dumps(report, indent=2, default=str))
    return 0


def settle(api: str, ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Each job's delivery state, once none is pending (or the timeout passed)."""
    states: dict[str, dict[str, Any]] = {}
    deadline = time.perf_counter() + timeout_s
    pending = set(ids)
    while pending and time.perf_counter() < deadline:
        for job_id in list(pending):
            _, _, body = call("GET", f"{api}/v1/jobs/{job_id}/deliveries")
            delivery = (body.get("deliveries") or [{}])[0]
            states[job_id] = {"state": delivery.get("state", "missing"), "attempts": len(delivery.get("attempts", [])),
                              "settled_at": time.perf_counter()}
            if delivery.get("state") in {"delivered", "failed"}:
                pending.discard(job_id)
        time.sleep(0.5)
    return states


if __name__ == "__main__":
    sys.exit(main())
