"""The sweeper's Lambda entry point, run every minute by an EventBridge schedule.

Settles jobs whose runner is gone (stale leases, expired queue deadlines) and turns every lane's
dead-letter messages into settled jobs (see :mod:`jobcore.sweeper`), stopping well before its timeout.
Metrics: ``JobsRecoveredBySweeper`` (runs whose worker or router died, messages a queue had refused, jobs
still queued when their queue's retention nears its end: alarmed), ``JobsExpiredInQueue`` (a client's
``max_queue_s`` passed: expected, not alarmed) and ``DeadLetters`` / ``PoisonMessages``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from jobadapters.settings import SweeperSettings
from jobadapters.sqs import SqsDeadLetters
from jobadapters.telemetry import (
    DEAD_LETTERS_METRIC,
    EXPIRED_METRIC,
    NAMESPACE,
    POISON_METRIC,
    RECOVERED_METRIC,
    SWEEPER_SERVICE,
)
from jobadapters.wiring import AwsClients, build_sweeper
from jobcore.sweeper import Sweeper

logger = Logger(service="sweeper")
metrics = Metrics(namespace=NAMESPACE, service=SWEEPER_SERVICE)
_MARGIN_MS = 10_000  # stop draining this long before the Lambda's timeout


@functools.cache
def sweeper() -> tuple[Sweeper, dict[str, SqsDeadLetters]]:
    settings = SweeperSettings.from_env(os.environ)
    metrics.set_default_dimensions(stage=settings.stage)  # a stage's alarms read only its own
    return build_sweeper(settings, AwsClients.create(settings.jobs_table, shards=settings.index_shards))


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    sweep, letters = sweeper()
    report = sweep.sweep()
    for lane, queue in letters.items():
        sweep.drain(queue, lane=lane, report=report,
                    keep_going=lambda: context.get_remaining_time_in_millis() > _MARGIN_MS)
    counts = {"requeued": len(report.requeued), "failed": len(report.failed), "canceled": len(report.canceled),
              "expired": len(report.expired), "sent": len(report.sent), "stranded": len(report.stranded),
              "dead_letters": report.dead_letters, "poison": report.poison}
    recovered = sum(counts[name] for name in ("requeued", "failed", "canceled", "sent", "stranded"))
    for name, value in ((RECOVERED_METRIC, recovered), (EXPIRED_METRIC, len(report.expired)),
                        (DEAD_LETTERS_METRIC, report.dead_letters), (POISON_METRIC, report.poison)):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if report:
        logger.warning("sweeper settled jobs", extra={**counts, "requeued_ids": report.requeued[:20], "failed_ids": report.failed[:20],
                                                     "stranded_ids": report.stranded[:20]})
    return counts
