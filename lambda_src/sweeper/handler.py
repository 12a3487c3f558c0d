"""The sweeper's Lambda entry point, run every minute by an EventBridge schedule.

Settles jobs whose runner is gone (stale leases, expired queue deadlines) and turns every lane's
dead-letter messages into settled jobs (see :mod:`jobcore.sweeper`). Counts what it did in the
``JobsRecoveredBySweeper`` metric, so a dashboard shows workers dying or routers timing out.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from jobadapters.settings import SweeperSettings
from jobadapters.sqs import SqsDeadLetters
from jobadapters.wiring import AwsClients, build_sweeper
from jobcore.sweeper import Sweeper

logger = Logger(service="sweeper")
metrics = Metrics(namespace="HybridJobs", service="sweeper")
RECOVERED_METRIC = "JobsRecoveredBySweeper"


@functools.cache
def sweeper() -> tuple[Sweeper, dict[str, SqsDeadLetters]]:
    settings = SweeperSettings.from_env(os.environ)
    return build_sweeper(settings, AwsClients.create(settings.jobs_table))


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    sweep, letters = sweeper()
    report = sweep.sweep()
    for lane, queue in letters.items():
        sweep.drain(queue, lane=lane, report=report)
    counts = {"requeued": len(report.requeued), "failed": len(report.failed), "canceled": len(report.canceled),
              "expired": len(report.expired), "dead_letters": report.dead_letters}
    metrics.add_metric(name=RECOVERED_METRIC, unit=MetricUnit.Count, value=sum(counts.values()) - report.dead_letters)
    if report:
        logger.warning("sweeper settled jobs", extra={**counts, "requeued_ids": report.requeued[:20], "failed_ids": report.failed[:20]})
    return counts
