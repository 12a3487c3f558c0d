"""The S3 intake's Lambda entry point: the consumer of the intake queue (SQS event source, partial batch
responses), where the bucket's notifications of objects created under ``intake/`` arrive.

Each record is one S3 event notification (``Records``: usually one object); each object becomes a job, or the
job it already became (:mod:`jobcore.intake`: dedupe by bucket, key and ETag). An object that cannot become a
runnable job becomes a failed job with the reason, so a record fails (and SQS retries it, then moves it to the
intake's dead-letter queue, which is alarmed) only when the pipeline itself could not do its work: DynamoDB,
S3 or a lane's queue unavailable.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from jobadapters.settings import IntakeSettings
from jobadapters.wiring import AwsClients, Intake, build_intake
from jobcore.intake import IntakeObject, submit_object
from jobcore.model import Job

logger = Logger(service="intake")
processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def intake() -> Intake:
    settings = IntakeSettings.from_env(os.environ)
    return build_intake(settings, AwsClients.create(settings.router.jobs_table, shards=settings.router.index_shards))


def objects(notification: dict[str, Any]) -> Iterator[IntakeObject]:
    """The created objects an S3 event notification names (none for its ``s3:TestEvent``); keys URL-decoded."""
    for record in notification.get("Records") or ():
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record["s3"]
        found = s3["object"]
        yield IntakeObject(bucket=s3["bucket"]["name"], key=unquote_plus(found["key"]), size=int(found.get("size") or 0),
                           etag=str(found.get("eTag") or ""), sequencer=str(found.get("sequencer") or ""))


def take(notification: dict[str, Any], parts: Intake) -> list[Job]:
    """Every object of one notification, as the job it becomes."""
    jobs = []
    for obj in objects(notification):
        job = submit_object(parts.service, obj, functools.partial(parts.read, obj.bucket, obj.key), tenant_id=parts.tenant_id,
                            webhook_url=parts.webhook_url)
        logger.info("intake object", extra={"source": obj.source, "job_id": job.job_id, "status": job.status.value})
        jobs.append(job)
    return jobs


def take_message(body: str, parts: Intake, *, message_id: str) -> list[Job]:
    """One intake queue message's jobs; a body that is not a notification is logged and dropped (nothing to
    retry: it never becomes one). Whatever else fails raises, and the message is received again."""
    try:
        notification = json.loads(body)
    except ValueError:
        logger.error("dropping a message that is not an S3 event notification", extra={"message_id": message_id})
        return []
    return take(notification if isinstance(notification, dict) else {}, parts)


def _record(record: SQSRecord) -> None:
    take_message(record.body, intake(), message_id=record.message_id)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=_record, processor=processor, context=context)
