"""The webhook dispatcher's Lambda entry points.

- ``handler``: the consumer of the webhook queue (SQS event source, partial batch responses): each
  record is one hand-over, one attempt at most. A receiver's failure is recorded and rescheduled, not
  raised, so one bad receiver never sends a batch back; a record fails only when the dispatcher itself
  could not do its work (DynamoDB or S3 unavailable), and SQS retries just that record.
- ``sweep``: run every minute by an EventBridge schedule; hands over every delivery due before the
  next sweep, with the delay left (attempts hours away, and any whose hand-over was lost).

Deliveries whose schedule ran out are counted in the ``WebhookDeliveriesExhausted`` metric (alarmed).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from jobadapters.settings import DispatcherSettings
from jobadapters.sqs import decode_hand_over
from jobadapters.telemetry import EXHAUSTED_METRIC, NAMESPACE, WEBHOOKS_SERVICE
from jobadapters.wiring import AwsClients, build_dispatcher
from jobcore.dispatch import Dispatcher
from jobcore.model import Job

logger = Logger(service="webhooks")
metrics = Metrics(namespace=NAMESPACE, service=WEBHOOKS_SERVICE)
processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def dispatcher() -> Dispatcher:
    settings = DispatcherSettings.from_env(os.environ)
    metrics.set_default_dimensions(stage=settings.stage)  # a stage's alarms read only its own
    made = build_dispatcher(settings, AwsClients.create(settings.jobs_table, shards=settings.index_shards))
    made.on_exhausted = _exhausted
    return made


def _exhausted(job: Job) -> None:
    metrics.add_metric(name=EXHAUSTED_METRIC, unit=MetricUnit.Count, value=1)
    logger.error("webhook delivery exhausted", extra={
        "job_id": job.job_id, "event_id": job.delivery.event_id if job.delivery else None,
        "reason": job.delivery.reason if job.delivery else None,
    })


def _record(record: SQSRecord) -> None:
    try:
        job_id, due_at = decode_hand_over(record.body)
    except ValueError as error:
        logger.error("dropping a message that is not a webhook hand-over", extra={"reason": str(error)})
        return
    dispatcher().deliver(job_id, due_at=due_at)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=_record, processor=processor, context=context)


@logger.inject_lambda_context(clear_state=True)
def sweep(event: dict[str, Any], context: Any) -> dict[str, int]:
    handed_over = dispatcher().sweep()
    logger.info("sweep handed over due deliveries", extra={"handed_over": handed_over})
    return {"handed_over": handed_over}
