"""Keep the local pipeline running for curl: ``python -m local.serve [--port 8080]``.

Prints one JSON line with the endpoints once everything is up (tests read it), then serves until
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobadapters.process import stop_on_signals
from local.pipeline import LocalPipeline, Options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="API port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--inline-budget", type=int, help="seconds an inline run may take (default: cdk.json's)")
    parser.add_argument("--standin-latency", type=float, default=0.0, help="seconds the Claude stand-in waits per answer")
    parser.add_argument("--batch-delay", type=float, default=Options.standin_batch_delay_s,
                        help="seconds the Claude stand-in takes to process a Message Batch")
    parser.add_argument("--worker-concurrency", type=int, help="jobs a cpu worker runs at once (default: cdk.json's)")
    parser.add_argument("--webhook-schedule", default=Options.webhook_retry_schedule_s,
                        help="seconds between webhook attempts, comma-separated (WEBHOOK_RETRY_SCHEDULE_S)")
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument("--gpu", action="store_true", help="turn the gpu lane on (embeddings.encode; CPU provider here)")
    parser.add_argument("--embedding-model", type=Path, default=None,
                        help="the gpu lane's model directory (model.onnx + tokenizer.json); default: a tiny one built offline")
    parser.add_argument("--record-aws-calls", type=Path, default=None, metavar="DIR",
                        help="each process records every AWS call it makes under DIR (for tools/iam_check.py)")
    parser.add_argument("--context", type=json.loads, default={},
                        help="cdk.json context overrides as a JSON object, e.g. '{\"max_receives\": 2}'")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = {**args.context, "inline_budget_s": args.inline_budget, "worker_concurrency": args.worker_concurrency,
              "gpu_enabled": True if args.gpu else None}
    options = Options(
        api_port=args.port, standin_latency_s=args.standin_latency, log_dir=args.log_dir,
        webhook_retry_schedule_s=args.webhook_schedule, embedding_model_dir=args.embedding_model,
        standin_batch_delay_s=args.batch_delay, aws_calls_dir=args.record_aws_calls,
        config={key: value for key, value in config.items() if value is not None},
    )
    stop = stop_on_signals()
    pipeline = LocalPipeline(options)
    try:
        endpoints = pipeline.start()
        print(json.dumps({"ready": True, **endpoints.as_dict(), "webhook_secret": options.webhook_secret,
                          "pids": pipeline.pids()}), flush=True)
        print(f"API at {endpoints.api_url} (header x-api-key: local-dev-key); Ctrl-C stops.", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        pipeline.stop()


if __name__ == "__main__":
    main()
