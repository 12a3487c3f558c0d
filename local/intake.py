"""The S3 intake as a process of the local runtime: ``python -m local.intake``.

What the SQS event source does for the intake Lambda in AWS: receive up to 10 messages of the intake queue (where
moto, like S3, delivers the bucket's notifications of objects created under ``intake/``), hand each to the same
code as :mod:`intake.handler`, delete the ones taken; a message whose handling failed stays, is received again
after its visibility timeout, and goes to the intake's dead-letter queue after ``MAX_RECEIVES`` receives.
"""

from __future__ import annotations

import logging
import os

from intake.handler import take_message

from jobadapters.process import start_process
from jobadapters.settings import IntakeSettings
from jobadapters.wiring import AwsClients, build_intake
from jobcore.intake import BATCH_SIZE
from local.schedule import every

log = logging.getLogger("intake")


def main() -> None:
    stop = start_process()
    settings = IntakeSettings.from_env(os.environ)
    clients = AwsClients.create(settings.router.jobs_table, shards=settings.router.index_shards)
    parts = build_intake(settings, clients)
    queue_url = os.environ["INTAKE_QUEUE_URL"]
    log.info("intake from %s for tenant %s", queue_url, settings.tenant_id)

    def one_pass() -> object:
        messages = clients.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=BATCH_SIZE, WaitTimeSeconds=0)
        taken = []
        for message in messages.get("Messages", []):
            try:
                jobs = take_message(message["Body"], parts, message_id=message["MessageId"])
            except Exception:  # noqa: BLE001 - as a failed record of a partial batch response: received again
                log.exception("an intake message failed; it is received again after its visibility timeout")
                continue
            clients.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            taken += [f"{job.source} → {job.job_id} ({job.status.value})" for job in jobs]
        return taken

    every(stop, settings.every_s, one_pass, log=log, what="intake")


if __name__ == "__main__":
    main()
