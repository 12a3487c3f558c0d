"""An SQS queue with its dead-letter queue: a lane's, or the webhook dispatcher's."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from jobcore.limits import QUEUE_RETENTION_S

DRAIN_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


class JobQueue(Construct):
    """Creates ``queue`` and ``dead_letter_queue``, both SQS-managed encrypted and SSL-only.

    ``queue``: visibility ``visibility_timeout`` (size it to the lane's job timeout: the worker extends it while
    a job runs, and a dead worker's job reappears after it), long polling (20 s), retention
    ``jobcore.limits.QUEUE_RETENTION_S`` (4 days: the job sweeper expires a job still queued half a day before
    it); a message received ``max_receive_count`` times moves to the DLQ.
    ``dead_letter_queue``: retention 14 days (the SQS maximum). A lane's is drained by the job sweeper
    (``JobSweeper``, :meth:`grant_drain_dead_letters`) within a minute: each job is recorded failed with the
    reason, then its message deleted; the webhook queue's is left for inspection and redrive.
    The worker reads ``max_receive_count`` and ``visibility_timeout`` from its environment (MAX_RECEIVES,
    VISIBILITY_TIMEOUT_S) to mark a job failed on its last attempt; they come from here (the sweeper reads
    the same MAX_RECEIVES). The webhook
    dispatcher's queue is one too (``WebhookDispatcher``), sized to its consumer Lambda instead.
    """

    def __init__(self, scope: Construct, construct_id: str, *, visibility_timeout: Duration, max_receive_count: int) -> None:
        super().__init__(scope, construct_id)
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self, "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=visibility_timeout,
            receive_message_wait_time=Duration.seconds(20),
            retention_period=Duration.seconds(QUEUE_RETENTION_S),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=max_receive_count),
        )

    def grant_send(self, grantee: iam.IGrantable) -> iam.Grant:
        """Enqueue only: SendMessage, GetQueueAttributes, GetQueueUrl."""
        return self.queue.grant_send_messages(grantee)

    def grant_consume(self, grantee: iam.IGrantable) -> iam.Grant:
        """Receive, change visibility and delete, on the lane queue only (never the DLQ)."""
        return self.queue.grant_consume_messages(grantee)

    def grant_drain_dead_letters(self, grantee: iam.IGrantable) -> iam.Grant:
        """Receive and delete (and read the attributes of) the dead-letter queue only: what the job
        sweeper needs to settle each dead-lettered job and then drop its message. No send, no visibility
        change, no purge."""
        return self.dead_letter_queue.grant(grantee, *DRAIN_ACTIONS)
