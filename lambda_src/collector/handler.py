"""The batch collector's Lambda entry point, run every minute by an EventBridge schedule.

One :meth:`jobcore.batches.Collector.collect` pass: settle the Message Batches that ended, cancel those whose
every job is canceled, then send what waits in the batch lane's queue as new batches, stopping well before
the timeout (the next run goes on; every write is conditional). Reserved concurrency 1: one collector at a time.

Why a Lambda and not an ECS task: a pass is seconds of work (a few API calls, DynamoDB writes), while a batch
takes minutes to hours; a scheduled function costs nothing between passes, a task would idle all day.

Metrics: ``OldestOpenBatchAgeSeconds`` (alarmed past ``batch_open_alarm_hours``), ``BatchesCreated``,
``BatchRequestsSent``, ``BatchJobsFailed``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from jobadapters.settings import CollectorSettings
from jobadapters.telemetry import (
    BATCH_JOBS_FAILED_METRIC,
    BATCH_OLDEST_OPEN_METRIC,
    BATCH_REQUESTS_METRIC,
    BATCHES_CREATED_METRIC,
    COLLECTOR_SERVICE,
    NAMESPACE,
)
from jobadapters.wiring import AwsClients, build_collector
from jobcore.batches import Collector

logger = Logger(service="collector")
metrics = Metrics(namespace=NAMESPACE, service=COLLECTOR_SERVICE)
_MARGIN_MS = 30_000  # stop this long before the Lambda's timeout
_context: list[Any] = []  # the current invocation's context, for the collector's keep_going


def _time_left() -> bool:
    return not _context or _context[0].get_remaining_time_in_millis() > _MARGIN_MS


@functools.cache
def collector() -> Collector:
    settings = CollectorSettings.from_env(os.environ)
    metrics.set_default_dimensions(stage=settings.stage)  # a stage's alarms read only its own
    return build_collector(settings, AwsClients.create(settings.jobs_table, shards=settings.index_shards), keep_going=_time_left)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _context[:] = [context]
    report = collector().collect()
    counts = {"batches_created": report.batches_created, "requests_sent": report.requests_sent, "jobs_sent": report.jobs_sent,
              "batches_ended": report.batches_ended, "succeeded": len(report.succeeded), "failed": len(report.failed),
              "requeued": len(report.requeued), "canceled": len(report.canceled), "expired": len(report.expired),
              "open_batches": report.open_batches, "oldest_open_s": round(report.oldest_open_s), "errors": report.errors,
              "poison": report.poison}
    metrics.add_metric(name=BATCH_OLDEST_OPEN_METRIC, unit=MetricUnit.Seconds, value=report.oldest_open_s)
    metrics.add_metric(name=BATCHES_CREATED_METRIC, unit=MetricUnit.Count, value=report.batches_created)
    metrics.add_metric(name=BATCH_REQUESTS_METRIC, unit=MetricUnit.Count, value=report.requests_sent)
    metrics.add_metric(name=BATCH_JOBS_FAILED_METRIC, unit=MetricUnit.Count, value=len(report.failed))
    if report:
        logger.info("collector pass", extra={**counts, "failed_ids": report.failed[:20]})
    return counts
