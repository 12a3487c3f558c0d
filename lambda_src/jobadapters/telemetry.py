"""The names of the metrics the Lambdas publish (Powertools Metrics, EMF), in one place: the handlers
emit them, the CDK app's alarms and dashboard read them. Each metric has one dimension, ``service``."""

NAMESPACE = "HybridJobs"

WEBHOOKS_SERVICE = "webhooks"
EXHAUSTED_METRIC = "WebhookDeliveriesExhausted"  # a webhook delivery ran out of attempts

SWEEPER_SERVICE = "sweeper"
RECOVERED_METRIC = "JobsRecoveredBySweeper"  # runs whose worker or router died
EXPIRED_METRIC = "JobsExpiredInQueue"  # a client's max_queue_s passed: expected, not a fault
DEAD_LETTERS_METRIC = "DeadLetters"  # messages drained from the lanes' dead-letter queues
POISON_METRIC = "PoisonMessages"  # dead letters that were not job messages at all

COLLECTOR_SERVICE = "collector"
BATCH_OLDEST_OPEN_METRIC = "OldestOpenBatchAgeSeconds"  # the oldest Message Batch not yet settled (alarmed past N hours)
BATCHES_CREATED_METRIC = "BatchesCreated"
BATCH_REQUESTS_METRIC = "BatchRequestsSent"
BATCH_JOBS_FAILED_METRIC = "BatchJobsFailed"
