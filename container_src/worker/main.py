"""The worker process: ``python -m worker.main``. Settings → clients → poll loop, until SIGTERM."""

from __future__ import annotations

import logging
import os

from jobadapters.claude import preload
from jobadapters.observer import telemetry_for
from jobadapters.process import start_process
from jobadapters.settings import WorkerSettings
from jobadapters.wiring import WORKER_CALL_TIMEOUT_S, WORKER_SDK_RETRIES, AwsClients, build_model, build_pacer, build_runner
from jobcore.capacity_pacer import PacedModel
from jobcore.tasks import RunContext
from worker.poller import MAX_RECEIVERS, Poller
from worker.protection import TaskProtection

log = logging.getLogger("worker")
# AWS connections beyond one per slot: the receivers, the heartbeat, the batcher.
POOL_HEADROOM = MAX_RECEIVERS + 2
# Logged once the worker has loaded what its first calls need, as it starts receiving (local.pipeline waits for it).
READY = "worker ready: receiving for"


def build_poller(settings: WorkerSettings, clients: AwsClients) -> Poller:
    telemetry = telemetry_for(f"worker-{settings.lane}", settings.observability, stage=settings.stage)
    runner = build_runner(clients, settings.results_bucket, settings.webhook_queue_url, settings.lanes.lanes,
                          cost_model=settings.lanes.cost_model(), role=f"worker-{settings.lane}",
                          result_retention_days=settings.result_retention_days, model_wait_limit_s=settings.model_wait_limit_s,
                          lease_s=settings.lease_s, backoff_base_s=settings.backoff_base_s, telemetry=telemetry)
    model = build_model(settings.claude, max_retries=WORKER_SDK_RETRIES, timeout_s=WORKER_CALL_TIMEOUT_S,
                        pacer=build_pacer(settings.claude, clients), table=clients.table, telemetry=telemetry,
                        lane=settings.lane, prices=settings.lanes.prices)
    return Poller(
        sqs=clients.sqs, queue_url=settings.queue_url, runner=runner,
        ctx=RunContext(llm=model, model_id=settings.claude.model_id),
        concurrency=settings.concurrency, max_receives=settings.max_receives,
        visibility_timeout_s=settings.visibility_timeout_s, protection=TaskProtection(settings.ecs_agent_uri),
        wait_time_s=settings.poll_wait_s, tenant_shares=settings.claude.capacity.tenants,
        # A GPU's memory holds exactly the lane's slots: no job beyond them (-1: the Poller's default).
        fair_extra_slots=0 if settings.lanes.lanes.get(settings.lane).gpu else -1,
        malformed_retry_s=settings.malformed_retry_s,
    )


def main() -> None:
    stop = start_process(json_service="worker")
    settings = WorkerSettings.from_env(os.environ)
    log.info("worker for the %s lane polling %s, %d jobs at a time", settings.lane, settings.queue_url, settings.concurrency)
    clients = AwsClients.create(settings.jobs_table, shards=settings.index_shards,
                                max_pool_connections=settings.concurrency + POOL_HEADROOM)
    poller = build_poller(settings, clients)
    preload()  # before the first receive: the first burst's calls do not wait for the SDK's import
    log.info("%s the %s lane", READY, settings.lane)
    poller.run(stop)
    if isinstance(poller.ctx.llm, PacedModel):
        poller.ctx.llm.pacer.release()  # an unused slice of the model's budget goes back now, not by refill
    poller.runner.observer.flush()
    # Messages still in flight were released during the drain; a thread stuck in a model call must
    # not keep the process (and the ECS task) alive until the SDK times out.
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
