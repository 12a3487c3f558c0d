"""The webhook dispatcher as a process of the local runtime: ``python -m local.dispatcher``.

It does what AWS does around the same code: the Lambda event source (long-poll the webhook queue,
hand each message to :meth:`jobcore.dispatch.Dispatcher.deliver`, delete it once handled) and the
EventBridge schedule (the sweep, every ``WEBHOOK_SWEEP_EVERY_S``). A message whose handling raised
stays in the queue and comes back, as a failed batch item would in AWS.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jobadapters.process import start_process
from jobadapters.settings import DispatcherSettings
from jobadapters.sqs import decode_hand_over
from jobadapters.wiring import AwsClients, build_dispatcher
from jobcore.dispatch import Dispatcher
from local.aws_calls import acting_as

log = logging.getLogger("dispatcher")
SWEEP_COMPONENT = "webhook-sweep"
CONCURRENCY = 16  # attempts in flight at once: each waits on a receiver for up to 15 s


def run(dispatcher: Dispatcher, sqs: Any, queue_url: str, *, sweep_every_s: float, stop: threading.Event) -> None:
    next_sweep = 0.0
    with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="delivery") as pool:
        while not stop.is_set():
            if time.monotonic() >= next_sweep:
                with acting_as(SWEEP_COMPONENT):  # the sweep is a Lambda of its own in AWS, with a narrower role
                    _guarded(dispatcher.sweep)
                next_sweep = time.monotonic() + sweep_every_s
            try:
                messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            except Exception:  # noqa: BLE001 - a failed poll is logged and retried, never fatal
                log.exception("receive failed")
                stop.wait(1)
                continue
            for message in messages:
                pool.submit(_handle, dispatcher, sqs, queue_url, message)


def _handle(dispatcher: Dispatcher, sqs: Any, queue_url: str, message: dict[str, Any]) -> None:
    try:
        job_id, due_at = decode_hand_over(message["Body"])
    except ValueError as error:
        log.error("dropping %s: %s", message["MessageId"], error)
    else:
        if not _guarded(dispatcher.deliver, job_id, due_at=due_at):
            return  # left in the queue: it comes back after its visibility timeout
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _guarded(call: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        call(*args, **kwargs)
    except Exception:  # noqa: BLE001 - logged; the message or the next sweep brings the delivery back
        log.exception("%s failed", getattr(call, "__name__", call))
        return False
    return True


def main() -> None:
    stop = start_process()
    settings = DispatcherSettings.from_env(os.environ)
    clients = AwsClients.create(settings.jobs_table, shards=settings.index_shards)
    log.info("webhook dispatcher polling %s, schedule %s", settings.queue_url, settings.schedule.gaps_s)
    run(build_dispatcher(settings, clients), clients.sqs, settings.queue_url, sweep_every_s=settings.sweep_every_s, stop=stop)


if __name__ == "__main__":
    main()
