"""The whole job path on one machine: moto server, the Claude stand-in, the router behind a local
API Gateway, a worker process per worker lane, the batch collector (the batch lane), the webhook dispatcher,
the sweeper and a webhook receiver — the same code that runs in AWS.

AWS is moto in server mode (boto3 reaches it through AWS_ENDPOINT_URL, in this process and in the
worker's); Claude is the offline stand-in unless ANTHROPIC_API_KEY is set and no stand-in is asked for.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from jobcore.capacity import UNLIMITED_PER_MINUTE
from local import aws_calls, resources
from local.aws_server import CREDENTIALS, AwsServer, dynamodb_process
from local.claude_standin import ClaudeStandIn, ModelLimits
from local.gateway import LOCAL_API_KEY, LOCAL_ROUTER_CONCURRENCY, ExecutionEnvironments, Gateway, api_key_id
from local.server_process import ServerProcess
from local.standin.remote import StandInProcess
from local.webhook_receiver import WebhookReceiver
from stacks.config import PipelineConfig
from stacks.lane_env import compact_json, lane_environment, service_settings

ROOT = Path(__file__).resolve().parent.parent
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("lambda_src", "container_src", "."))
REGION = "us-east-1"
ROUTER_HANDLER = "router.handler:handler"
log = logging.getLogger("local.pipeline")


def deployment_config(**overrides: Any) -> PipelineConfig:
    """The configuration ``cdk deploy`` reads (cdk.json), with ``overrides`` on top: the local pipeline
    runs the lanes, sizes and prices of the default deployment, not numbers of its own."""
    context = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    return PipelineConfig.from_mapping({**context, **overrides})


LOCAL_STAGE = "local"


def local_service_settings(config: PipelineConfig) -> dict[str, str]:
    """The settings a deploy of ``config`` gives its router (``runtime_env.service_environment``), but the stage."""
    return service_settings(
        stage=LOCAL_STAGE, model_id=config.model_id, model_providers=config.model_providers,
        job_ttl_days=config.job_ttl_days, result_retention_days=config.result_retention_days,
        task_rates_per_min=config.task_rates_per_min, tenant_budgets_usd=config.tenant_budgets_usd,
        traces_endpoint=config.traces_endpoint, index_shards=config.index_shards(), capacity=config.capacity(),
        inline_concurrency=config.inline_concurrency())




def budget_of(limits: ModelLimits | None) -> dict[str, Any]:
    """The pipeline's model budget (cdk.json's ``model_rate_limits``) for a stand-in limited to ``limits``: the same
    limits, for every model, as an operator would configure their tier's; nothing when the stand-in is unlimited.
    A ``model_rate_limits`` of the run's own config wins."""
    if limits is None:
        return {}
    # A dimension the stand-in leaves unlimited is, for the pipeline's budget, one it can never spend in a minute.
    per_minute = {key: value or UNLIMITED_PER_MINUTE for key, value in
                  (("rpm", limits.rpm), ("itpm", limits.itpm), ("otpm", limits.otpm))}
    return {"model_rate_limits": {"*": per_minute}}


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass
class Options:
    api_port: int = 0
    aws_port: int = 0  # moto's
    webhook_port: int = 0  # the pipeline's own webhook receiver's
    # cdk.json context keys to change for this run, e.g. {"inline_budget_s": 4, "worker_concurrency": 16}
    config: dict[str, Any] = field(default_factory=dict)
    standin_latency_s: float = 0.0
    # Seconds between webhook attempts: Standard Webhooks' schedule (about 27 h) compressed to about 2 min.
    webhook_retry_schedule_s: str = "1,2,4,8,16,32,64"
    webhook_sweep_every_s: float = 1.0
    sweep_every_s: float = 2.0  # the job sweeper (stale leases, queue deadlines, dead letters); a minute in AWS
    collect_every_s: float = 1.0  # the batch collector's passes; a minute in AWS
    intake_every_s: float = 0.5  # the S3 intake's receives (an SQS event source in AWS)
    # The stand-in's Message Batches processing: seconds until a batch's requests are done.
    standin_batch_delay_s: float = 1.0
    # The stand-in's rate limits (RPM, ITPM, OTPM), enforced as Anthropic enforces them; None: unlimited.
    standin_limits: ModelLimits | None = None
    use_standin: bool = True
    # The stand-in in a process of its own (local.standin.remote: the capacity bench's model does not share this
    # process's interpreter lock with moto); False: in this process, where tests read its recorded requests.
    standin_process: bool = False
    # DynamoDB in a moto process of its own (local.aws_server.dynamodb_process), the other services in this one's:
    # under the capacity bench's 300-job burst one moto process was saturated, a core's worth of AWS.
    dynamodb_process: bool = False
    # How long an open provider breaker refuses calls (BREAKER_COOL_DOWN_S; 30 s by default in AWS too).
    breaker_cool_down_s: float | None = None
    workers_per_lane: int = 1  # worker processes (ECS tasks) per worker lane
    # The router's execution environments started with the pipeline and kept while idle (Lambda's provisioned
    # concurrency): a measurement's requests then find them warm, never waiting for a cold start's imports.
    router_warm: int = 1
    webhook_secret: str = field(default_factory=new_webhook_secret)
    log_dir: Path | None = None
    # The GPU lane's embedding model (when the lane is on): a model directory (model.onnx + tokenizer.json),
    # uploaded to the local S3 as a deploy's embedding_model_s3_uri would hold it; None: a tiny one built here.
    embedding_model_dir: Path | None = None
    # Where each process records every AWS call it makes (local.aws_calls; the permission check reads them); None: not.
    aws_calls_dir: Path | None = None
    # Every process's spans, as JSON lines (local.traces reads them), and their EMF metric lines; None: not kept.
    traces_file: Path | None = None
    metrics_file: Path | None = None


@dataclass
class Endpoints:
    api_url: str
    aws_endpoint: str
    standin_url: str | None
    webhook_url: str
    worker_log: str
    resources: resources.LocalResources

    def as_dict(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url, "aws_endpoint": self.aws_endpoint, "standin_url": self.standin_url,
            "webhook_url": self.webhook_url, "worker_log": self.worker_log, "table": self.resources.table,
            "bucket": self.resources.bucket, "queues": self.resources.queue_urls, "dead_letter_queues": self.resources.dlq_urls,
            "webhook_queue": self.resources.webhook_queue_url, "intake_queue": self.resources.intake_queue_url,
            "lane_services": self.resources.lane_services,
        }


class LocalPipeline:
    """Start with ``with LocalPipeline(Options()) as endpoints:``; everything stops on exit."""

    def __init__(self, options: Options | None = None):
        self.options = options or Options()
        self.config = deployment_config(**{**budget_of(self.options.standin_limits), **self.options.config})
        self.lanes = self.config.lanes()
        self.standin: ClaudeStandIn | StandInProcess | None = None
        self.webhooks = WebhookReceiver(self.options.webhook_secret, port=self.options.webhook_port)
        self._moto: AwsServer | None = None
        self._dynamodb: ServerProcess | None = None
        self._gateway: Gateway | None = None
        self.router: ExecutionEnvironments | None = None
        self._worker_logs: list[Path] = []
        self._processes: list[Supervised] = []  # the workers, the collector, the webhook dispatcher and the sweeper
        self._stopping = threading.Event()
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> Endpoints:
        aws_endpoint = self._start_moto()
        session = boto3.Session(region_name=REGION)
        made = resources.create(session, lanes=self.lanes, max_receives=self.config.max_receives)
        made = dataclasses.replace(made, lane_services=resources.create_lane_services(session, lanes=self.lanes))
        if self.options.aws_calls_dir is not None:  # before any process starts: each records from its first call
            self._set_env({aws_calls.RECORD_DIR_ENV: str(self.options.aws_calls_dir)})
        standin_url = self._start_standin()
        self._set_env(self._router_env(made, standin_url))
        self.webhooks.start()
        log_dir = self.options.log_dir or Path(tempfile.mkdtemp(prefix="hybrid-local-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        # Its environment is set: the router's execution environments (processes) start with it.
        self.router = ExecutionEnvironments(
            ROUTER_HANDLER, concurrency=self.config.router_reserved_concurrency or LOCAL_ROUTER_CONCURRENCY,
            timeout_s=self.config.router_timeout_s, warm=self.options.router_warm, log_path=log_dir / "router.log")
        self._gateway = Gateway(self.router, port=self.options.api_port).start()
        model_env = self._embedding_model(log_dir) if self.lanes.gpu_lanes() else {}
        logs = self._worker_logs = [self._start_worker(made, lane.name, log_dir, model_env if lane.gpu else {}, index)
                                    for lane in self.lanes.worker_lanes() for index in range(self.options.workers_per_lane)]
        batch = self.lanes.batch_lane
        if batch is not None:  # drained by the collector, not a worker (a scheduled Lambda in AWS)
            self._spawn("local.collector", "collector", log_dir / "collector.log", {
                "BATCH_QUEUE_URL": made.queue_urls[batch.name], "MODEL_ID": self.config.worker_model_id,
                "BATCH_WINDOW_S": str(self.config.batch_window_s), "BATCH_MAX_ATTEMPTS": str(self.config.batch_max_attempts),
                "COLLECT_EVERY_S": str(self.options.collect_every_s),
            })
        self._spawn("local.dispatcher", "dispatcher", log_dir / "dispatcher.log", {
            "WEBHOOK_RETRY_SCHEDULE_S": self.options.webhook_retry_schedule_s,
            "WEBHOOK_SWEEP_EVERY_S": str(self.options.webhook_sweep_every_s),
        })
        self._spawn("local.intake", "intake", log_dir / "intake.log", {
            "INTAKE_QUEUE_URL": made.intake_queue_url, "INTAKE_EVERY_S": str(self.options.intake_every_s),
            **self.intake_environment(),
        })
        self._spawn("local.sweeper", "sweeper", log_dir / "sweeper.log", {
            "LANE_DLQ_URLS": compact_json(made.dlq_urls), "MAX_RECEIVES": str(self.config.max_receives),
            "SWEEP_EVERY_S": str(self.options.sweep_every_s),
        })
        threading.Thread(target=self._supervise, name="supervisor", daemon=True).start()
        return Endpoints(self._gateway.url, aws_endpoint, standin_url, self.webhooks.url, str(logs[0]), made)

    def wait_for_workers(self, timeout_s: float = 120) -> None:
        """Return once every worker has started receiving, the SDK loaded (its log says so): a deployment's workers
        run before the traffic comes, and a measurement must not time their start. TimeoutError past ``timeout_s``."""
        from worker.main import READY  # the worker's own words (imported here: only a measurement waits for them)

        deadline = time.monotonic() + timeout_s
        waiting = list(self._worker_logs)
        while waiting:
            waiting = [path for path in waiting if not (path.exists() and READY in path.read_text(errors="replace"))]
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"workers not receiving after {timeout_s} s: {[str(path) for path in waiting]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self._stopping.set()
        for supervised in self._processes:
            supervised.process.terminate()
        for supervised in self._processes:
            try:
                supervised.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within 15 s of SIGTERM: killed", supervised.component)
                supervised.process.kill()
        for part in (self._gateway, self.webhooks, self.standin, self._moto, self._dynamodb):
            if part is not None:
                part.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    # --- parts ----------------------------------------------------------------------------------

    def _start_moto(self) -> str:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
        self._moto = AwsServer(port=self.options.aws_port)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        self._set_env({
            "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": CREDENTIALS.access_key,
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS.secret_key, "AWS_SESSION_TOKEN": CREDENTIALS.token or "",
            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        })
        if self.options.dynamodb_process:
            self._dynamodb = dynamodb_process().start()
            self._set_env({"AWS_ENDPOINT_URL_DYNAMODB": self._dynamodb.url})
        return endpoint

    def _start_standin(self) -> str | None:
        if not self.options.use_standin:
            return None
        kind = StandInProcess if self.options.standin_process else ClaudeStandIn
        self.standin = kind(latency_s=self.options.standin_latency_s, batch_delay_s=self.options.standin_batch_delay_s,
                            limits=self.options.standin_limits).start()
        return self.standin.base_url

    def _router_env(self, made: resources.LocalResources, standin_url: str | None) -> dict[str, str]:
        env = {
            **lane_environment(self.lanes, self.config.price_overrides, self.config.bedrock_profile),
            # What a deploy's router gets from the same configuration (shards, inline budget, the model's budget
            # from cdk.json, or Options.config's, e.g. the bench's {"model_rate_limits": {"*": {...}},
            # "model_admission": false}); the workers inherit it.
            **local_service_settings(self.config),
            "JOBS_TABLE": made.table, "RESULTS_BUCKET": made.bucket,
            "LANE_QUEUE_URLS": compact_json(made.queue_urls), "WEBHOOK_QUEUE_URL": made.webhook_queue_url,
            "WEBHOOK_SECRET": self.options.webhook_secret,
            # The local receivers listen on 127.0.0.1 over http: loopback only, never other private targets.
            "WEBHOOK_ALLOW_LOOPBACK": "true", "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            # The worker lanes' ECS services (in moto, at 0 tasks): the router and the intake wake them as in AWS.
            "LANE_SERVICES": compact_json(made.lane_services),
        }
        if self.options.traces_file is not None:
            env["TRACES_FILE"] = str(self.options.traces_file)
        if self.options.metrics_file is not None:
            env["METRICS_FILE"] = str(self.options.metrics_file)
        if standin_url:
            # Both providers are the one stand-in: the Anthropic API's paths and Bedrock's runtime path.
            env["ANTHROPIC_BASE_URL"] = env["BEDROCK_BASE_URL"] = standin_url
        if self.options.breaker_cool_down_s is not None:
            env["BREAKER_COOL_DOWN_S"] = str(self.options.breaker_cool_down_s)
        return env

    def intake_environment(self) -> dict[str, str]:
        """The intake's owner and webhook: locally, unless the context names them, the local API key's tenant (so
        ``GET /v1/jobs`` with that key lists intake jobs) and the pipeline's own webhook receiver."""
        context = self.options.config
        return {
            "INTAKE_TENANT": context.get("intake_tenant") or api_key_id(LOCAL_API_KEY),
            "INTAKE_WEBHOOK_URL": context.get("intake_webhook_url") or self.webhooks.url,
        }

    def _start_worker(self, made: resources.LocalResources, lane: str, log_dir: Path, extra: dict[str, str], index: int = 0) -> Path:
        """Worker process ``index`` for ``lane``, with the environment its ECS task gets (plus the local ones)."""
        suffix = f"-{index + 1}" if index else ""
        log_path = log_dir / (f"worker{suffix}.log" if lane == self.lanes.fallback.name else f"worker-{lane}{suffix}.log")
        self._spawn("worker.main", f"worker-{lane}{suffix}", log_path, {
            "LANE": lane, "QUEUE_URL": made.queue_urls[lane], "MAX_RECEIVES": str(self.config.max_receives),
            "MODEL_ID": self.config.worker_model_id, "VISIBILITY_TIMEOUT_S": str(int(self.lanes.get(lane).time_limit_s)),
            "POLL_WAIT_S": "1", **extra,
        })
        return log_path

    def _embedding_model(self, log_dir: Path) -> dict[str, str]:
        """The GPU lane's model, put where a deploy with ``embedding_model_s3_uri`` has it (an S3 model
        directory), so the worker runs the real download and loading code; the environment that names it."""
        directory = self.options.embedding_model_dir
        if directory is None:
            from local import tiny_embedder  # needs the onnx package: only when the GPU lane is on

            directory = tiny_embedder.build(log_dir / "tiny-embedder")
        uri = resources.upload_model(boto3.Session(region_name=REGION), directory)
        return {"EMBEDDING_MODEL_URI": uri, "EMBEDDING_MODEL_CACHE": str(log_dir / "model-cache")}

    def _spawn(self, module: str, component: str, log_path: Path, env: dict[str, str]) -> None:
        """``python -m module`` with this process's environment (the router's, which it shares) plus ``env``,
        supervised: restarted when it dies, as ECS replaces a stopped task. ``component`` names it in the
        recorded AWS calls."""
        supervised = Supervised(module, log_path, {**os.environ, "PYTHONPATH": PYTHONPATH, **env}, component=component)
        supervised.start()
        self._processes.append(supervised)

    def pids(self) -> dict[str, Any]:
        """The current process id of each supervised process, by its component (``worker-cpu``, ``worker-cpu-2``,
        ``collector``, ...), and the router's execution environments' (a test may kill one)."""
        return {**{s.component: s.process.pid for s in self._processes}, "router": self.router.pids() if self.router else []}

    def _supervise(self) -> None:
        while not self._stopping.wait(0.5):
            for supervised in self._processes:
                code = supervised.process.poll()
                if code is not None and not self._stopping.is_set():
                    log.warning("%s exited with %s; restarting it (restart %d)", supervised.component, code, supervised.restarts + 1)
                    supervised.restart()

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value


class Supervised:
    """One child process of the local runtime, and how to start it again. ``component`` names it, uniquely among
    the pipeline's processes (``LocalPipeline.pids`` keys by it; the recorded AWS calls name it)."""

    def __init__(self, module: str, log_path: Path, env: dict[str, str], *, component: str):
        self.module, self.log_path, self.env, self.component = module, log_path, env, component
        self.restarts = 0
        self.process: subprocess.Popen = None  # type: ignore[assignment]  # set by start()

    def start(self) -> None:
        log = self.log_path.open("ab")
        recorded = ["local.recorded", self.component] if self.env.get(aws_calls.RECORD_DIR_ENV) else []
        self.process = subprocess.Popen([sys.executable, "-m", *recorded, self.module], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=ROOT)

    def restart(self) -> None:
        self.restarts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- supervisor: restart {self.restarts} after exit {self.process.returncode} ---\n".encode())
        self.start()


