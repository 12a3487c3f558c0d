"""Keep the local pipeline running for curl: ``python -m local.serve [--port 8080] [--gpu]``.

Prints one JSON line with the endpoints once everything is up (tests read it), then, on stderr, where each
part listens, and a line per webhook its receiver verifies; serves until Ctrl-C or SIGTERM. The API, moto
and the webhook receiver listen on fixed ports by default, so the docs' commands can name them
(``--port``, ``--aws-port``, ``--webhook-port``; 0 takes any free port).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from jobadapters.process import stop_on_signals
from local.gateway import LOCAL_API_KEY
from local.pipeline import REGION, LocalPipeline, Options
from local.standin.limits import limits_argument

API_PORT, AWS_PORT, WEBHOOK_PORT = 8080, 8081, 9999


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=API_PORT, help="API port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--aws-port", type=int, default=AWS_PORT, help="moto's port (AWS_ENDPOINT_URL; 0: any free port)")
    parser.add_argument("--webhook-port", type=int, default=WEBHOOK_PORT,
                        help="the webhook receiver's port (0: any free port)")
    parser.add_argument("--inline-budget", type=int, help="seconds an inline run may take (default: cdk.json's)")
    parser.add_argument("--standin-latency", type=float, default=0.0, help="seconds the Claude stand-in waits per answer")
    parser.add_argument("--batch-delay", type=float, default=Options.standin_batch_delay_s,
                        help="seconds the Claude stand-in takes to process a Message Batch")
    parser.add_argument("--model-limits", type=limits_argument, default=None,
                        help="the Claude stand-in's rate limits per minute, e.g. rpm=120,itpm=40000,otpm=8000 (default: none)")
    parser.add_argument("--providers", default=None,
                        help="model providers in order, e.g. anthropic,bedrock (default: cdk.json's model_providers)")
    parser.add_argument("--worker-concurrency", type=int, help="jobs a cpu worker runs at once (default: cdk.json's)")
    parser.add_argument("--webhook-schedule", default=Options.webhook_retry_schedule_s,
                        help="seconds between webhook attempts, comma-separated (WEBHOOK_RETRY_SCHEDULE_S)")
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument("--gpu", action="store_true", help="turn the gpu lane on (embeddings.encode; CPU provider here)")
    parser.add_argument("--embedding-model", type=Path, default=None,
                        help="the gpu lane's model directory (model.onnx + tokenizer.json); default: a tiny one built offline")
    parser.add_argument("--record-aws-calls", type=Path, default=None, metavar="DIR",
                        help="each process records every AWS call it makes under DIR (for tools/iam_check.py)")
    parser.add_argument("--traces", type=Path, default=None, metavar="FILE",
                        help="every process appends its OpenTelemetry spans to FILE as JSON lines (python -m local.traces FILE)")
    parser.add_argument("--metrics", type=Path, default=None, metavar="FILE",
                        help="every process appends its EMF metric lines to FILE (instead of its log)")
    parser.add_argument("--context", type=json.loads, default={},
                        help="cdk.json context overrides as a JSON object, e.g. '{\"max_receives\": 2}'")
    return parser.parse_args(argv)


def taken_ports(args: argparse.Namespace) -> list[str]:
    """The fixed ports something else already listens on (moto would wait forever on a port it cannot bind)."""
    taken = []
    for flag, port in (("--port", args.port), ("--aws-port", args.aws_port), ("--webhook-port", args.webhook_port)):
        if port:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    taken.append(f"{flag} {port}")
    return taken


def print_event(event: dict[str, Any]) -> None:
    print(f"webhook {event.get('type')} for {event.get('data', {}).get('id')}: signature verified", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if taken := taken_ports(args):
        sys.exit(f"local.serve: in use: {', '.join(taken)}; another `make serve`? Give another port (0: any free one).")
    config = {**args.context, "inline_budget_s": args.inline_budget, "worker_concurrency": args.worker_concurrency,
              "gpu_enabled": True if args.gpu else None,
              "model_providers": [p.strip() for p in args.providers.split(",")] if args.providers else None}
    options = Options(
        api_port=args.port, aws_port=args.aws_port, webhook_port=args.webhook_port,
        standin_latency_s=args.standin_latency, log_dir=args.log_dir,
        webhook_retry_schedule_s=args.webhook_schedule, embedding_model_dir=args.embedding_model,
        standin_batch_delay_s=args.batch_delay, aws_calls_dir=args.record_aws_calls,
        standin_limits=args.model_limits,
        traces_file=args.traces, metrics_file=args.metrics,
        config={key: value for key, value in config.items() if value is not None},
    )
    stop = stop_on_signals()
    pipeline = LocalPipeline(options)
    pipeline.webhooks.on_event = print_event
    try:
        endpoints = pipeline.start()
        print(json.dumps({"ready": True, **endpoints.as_dict(), "webhook_secret": options.webhook_secret,
                          "pids": pipeline.pids()}), flush=True)
        print("\n".join([
            "local pipeline up; Ctrl-C stops it.",
            f"  API         {endpoints.api_url}  (header x-api-key: {LOCAL_API_KEY}; each key is a tenant)",
            f"  console     {endpoints.api_url}/console  (in a browser; enter the key {LOCAL_API_KEY})",
            f"  AWS (moto)  {endpoints.aws_endpoint}  (region {REGION}, any credentials; bucket {endpoints.resources.bucket})",
            f"  webhooks    {endpoints.webhook_url}  (any path; a line here per verified event)",
            f"  Claude      {endpoints.standin_url or 'the real API (ANTHROPIC_API_KEY)'}",
            f"  logs        {Path(endpoints.worker_log).parent}",
        ]), file=sys.stderr, flush=True)
        stop.wait()
    finally:
        pipeline.stop()


if __name__ == "__main__":
    main()
    # Everything is stopped: leave without the interpreter's teardown (joining idle pool threads, collecting the
    # moto backends), most of a second that each test module's pipeline paid on its stop.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
