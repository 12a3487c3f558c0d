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

# The jobs themselves (jobadapters.observer), from the router, the workers, the collector and the sweeper alike:
# dimensions stage, task and lane (and outcome where a job finished). Every custom metric also has ``stage``, so a
# stage's alarms read only its own.
JOBS_SUBMITTED_METRIC = "JobsSubmitted"
JOBS_STARTED_METRIC = "JobsStarted"
QUEUE_WAIT_METRIC = "QueueWaitMs"  # from submission to a first start (p50/p99 from the metric's statistics)
JOBS_FINISHED_METRIC = "JobsFinished"  # + outcome
RUN_TIME_METRIC = "RunTimeMs"  # + outcome: from its (last) start to its end
COST_METRIC = "CostUsd"  # + outcome: the job's actual cost
MODEL_CALLS_METRIC = "ModelCalls"  # + outcome, and the tokens of its calls:
TOKEN_METRICS = {"input_tokens": "InputTokens", "output_tokens": "OutputTokens",
                 "cache_read_input_tokens": "CacheReadTokens", "cache_creation_input_tokens": "CacheWriteTokens"}
# Per model call (dimensions stage and lane): a 429 answer, and a job re-queued to wait for the model's capacity.
MODEL_RATE_LIMITED_METRIC = "ModelRateLimited"
MODEL_CAPACITY_WAITS_METRIC = "ModelCapacityWaits"
STAGE_DIMENSION = "stage"
