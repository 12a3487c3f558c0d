"""Platform facts: the hard limits of the services this pipeline runs on, in one place.

These are AWS's numbers (checked against the service quotas pages, November 2026), not choices; the
configuration, the constructs, the runtime and the local runtime import them from here. The few
rules of this pipeline that follow directly from them sit at the bottom.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB

# API Gateway (REST, regional)
API_GATEWAY_TIMEOUT_S = 29
API_GATEWAY_MAX_PAYLOAD_BYTES = 10 * MIB

# Lambda
LAMBDA_MAX_DURATION_S = 900
LAMBDA_MIN_MEMORY_MB = 128
LAMBDA_MAX_MEMORY_MB = 10_240
LAMBDA_MB_PER_VCPU = 1_769  # Lambda allocates CPU in proportion to memory
LAMBDA_MAX_VCPU = 6
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * MIB  # request and response of a synchronous invocation, each
LAMBDA_MAX_ENVIRONMENT_BYTES = 4 * KIB  # all of a function's environment variables, keys and values
# An SQS event source's MaximumConcurrency (ScalingConfig): the concurrent invocations it may use.
SQS_EVENT_SOURCE_MIN_CONCURRENCY = 2
SQS_EVENT_SOURCE_MAX_CONCURRENCY = 1_000

# SQS
SQS_MAX_VISIBILITY_S = 12 * 3600
SQS_MAX_WAIT_S = 20  # long poll
SQS_MAX_DELAY_S = 15 * 60
SQS_MAX_RETENTION_S = 14 * 24 * 3600
SQS_MAX_BATCH = 10  # messages per receive or batch call
SQS_CHUNK_BYTES = 64 * KIB  # each 64 KB of a request is billed as one request

# DynamoDB
DYNAMODB_MAX_ITEM_BYTES = 400 * KIB
DYNAMODB_MAX_NESTING = 32  # levels of maps and lists inside one another in an attribute
DYNAMODB_NUMBER_DIGITS = 38  # significant digits of a number (leading and trailing zeros trimmed)
DYNAMODB_MAX_NUMBER = "9.9999999999999999999999999999999999999E+125"  # largest magnitude (exact, as text)
DYNAMODB_MIN_NUMBER = "1E-130"  # smallest magnitude other than 0

# Fargate: CPU units → the memory sizes (MiB) a task of that size may have.
FARGATE_SIZES: dict[int, range] = {
    256: range(512, 2048 + 1, 512),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}
FARGATE_MAX_VCPU = 16
FARGATE_MAX_MEMORY_MB = 122_880
CPU_UNITS_PER_VCPU = 1024

# ECS
ECS_MAX_STOP_TIMEOUT_S = 120  # SIGTERM → SIGKILL; Fargate Spot gives the same two minutes' notice
# ECS on EC2: the share of an instance's installed memory a task may not ask for. The agent registers less than
# the installed memory (the kernel's and the platform's share: AWS's example, an m4.large of 8,192 MiB, registers
# 7,985, 2.5 % less), and AWS Batch's guide, for the same agent, recommends keeping 5 % for the agent and the
# system (ECS_RESERVED_MEMORY). A task asking for more than the rest is never placed. The CPU is registered
# whole: CPU_UNITS_PER_VCPU units a vCPU.
ECS_INSTANCE_MEMORY_HEADROOM = 0.05

# Application Auto Scaling allows 20 step adjustments per policy.
MAX_SCALING_STEPS = 20

# --- rules of this pipeline that follow from the limits above ------------------------------------

# After the inline budget the router still has to write (finish the job, or record the fallback and enqueue
# it) and answer before API Gateway's timeout. The request's deadline starts no AWS call that could end past it
# (jobadapters.request_time: an attempt is bounded at 5 s, and 1 s is kept to answer), so this much time is
# kept after the budget: one bounded attempt, the answer, one second of slack (a test ties it to request_time).
INLINE_FALLBACK_MARGIN_S = 7
MAX_INLINE_BUDGET_S = API_GATEWAY_TIMEOUT_S - INLINE_FALLBACK_MARGIN_S - 1

# What one request may carry. A request reaches the router as a Lambda event (the body inside it, as a
# JSON string): an event over LAMBDA_SYNC_PAYLOAD_BYTES cannot be delivered, so that, not API Gateway's
# 10 MB, is the largest request; the router (and the local gateway) answer 413 above it.
MAX_REQUEST_EVENT_BYTES = LAMBDA_SYNC_PAYLOAD_BYTES
# A request body's JSON nests at most this deep (its root is level 1): an input kept in the job item
# must fit DynamoDB's nesting, and nothing deeper is worth parsing.
MAX_JSON_DEPTH = DYNAMODB_MAX_NESTING
# Metadata, as peers bound theirs (Stripe's figures): at most 50 keys, a key of at most 40 characters
# (not empty, no control characters), a value a string of at most 500. At 4 bytes a character that
# is at most 108 KB of the job item.
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_CHARS = 40
MAX_METADATA_VALUE_CHARS = 500
MAX_WEBHOOK_URL_CHARS = 2_048  # printable ASCII: what browsers and CDNs reliably carry
MAX_MODEL_ID_CHARS = 128  # a model id is copied into the job's cost basis
# A job's result up to this many bytes (its compact JSON) is kept in the job item itself (``result_json``):
# finishing the job is one write and reading it one GetItem, with no S3 object; a larger result goes to S3
# (``result_ref``). Two bounds: the item must stay under DYNAMODB_MAX_ITEM_BYTES with everything else it may
# hold (the input kept in the item, at most 64 KB, jobcore.service.INLINE_INPUT_LIMIT; the metadata, at most
# 108 KB, above; 10 attempt errors; a delivery log of 60 attempts): about 210 KB at worst, and
# tests/adapters/test_aws_calls.py writes that item. And the cost: every later write of the job (the
# dispatcher's, per webhook attempt) writes the result again, to the table and its tenant index (projected
# ALL), a write unit per KB each, and every strongly consistent GET reads it (a read unit per 4 KB); an S3 PUT
# costs about as much as 8 KB of on-demand writes. Typical results (Claude's answers, extractions, summaries)
# are a few KB: they stay in the item; the tail goes to S3, where large results are cheaper.
RESULT_IN_ITEM_BYTES = 16 * KIB
# Text the client sent, quoted back in an error message: at most this many characters of it.
MAX_QUOTED_CHARS = 64

# --- a policy of this pipeline, not a platform fact ------------------------------------------------

# How long, in all, a queued job may wait for a model that is rate-limited (429), overloaded (529) or
# failing (5xx, unreachable) before it fails as ``model_unavailable``. A worker re-queues such a job as
# a new SQS message delayed by its back-off (at most SQS_MAX_DELAY_S a time), so the wait spends none
# of the receives (``max_receives``) that catch a job that is itself broken. Workers read
# MODEL_WAIT_LIMIT_S to change it.
MODEL_WAIT_LIMIT_S = 3600

# A worker's claim of a job lasts this long unless its heartbeat renews it (every third of it at most): a worker
# that dies mid-job leaves its job to another this long after its last renewal. Workers read LEASE_S to change
# it (the local runtime's fault tests: a killed worker's job comes back sooner).
LEASE_S = 60

# A failed attempt's back-off (jobcore.runner.Backoff) starts at this, doubled per failure, with equal jitter: the
# first retry after 7.5 to 15 s. The router (an inline job falling back to the queue) and the workers read
# BACKOFF_BASE_S to change it (the local runtime's fault tests: a failing model's waits are seconds, not minutes).
BACKOFF_BASE_S = 15
BACKOFF_CAP_S = 900  # and is never longer than this

# A message on a lane queue that is not a job is left for the queue's dead-letter queue: the worker hides it this
# long per receive, until SQS moves it there after ``max_receives``. Workers read MALFORMED_RETRY_S to change it.
MALFORMED_RETRY_S = 60

# A lane queue keeps a message this long (SQS's default, 4 days): the constructs and the local runtime
# create every job queue with it. A job still queued MAX_QUEUED_S after its submission expires, whatever its
# ``max_queue_s``: the sweeper watches every queued job until then, so it is settled (``expired``, saying why)
# before SQS could drop its message unseen. Every message of a job is sent after its submission, so the bound
# holds for a job sent again since; the margin covers a sweeper that was behind or down for hours.
QUEUE_RETENTION_S = 4 * 86_400
MAX_QUEUED_S = QUEUE_RETENTION_S - 12 * 3600

# A ``mode: sync`` job whose model was unavailable inline is refused (503) with this Retry-After when the
# model gave none: about one inline attempt's back-off.
SYNC_RETRY_AFTER_S = 10

# --- uploads (POST /v1/uploads) ---------------------------------------------------------------------

# The largest input a client may upload (S3 takes up to 5 GB in one presigned PUT): a job's input by
# reference, read by a worker from S3, never by the router. The presigned PUT signs the declared size.
MAX_UPLOAD_BYTES = 1024 * MIB
# How long a presigned upload URL is valid.
UPLOAD_URL_TTL_S = 3600

# --- waking an idle lane (jobcore.wake) ---------------------------------------------------------------

# A router process asks ECS about a lane's service at most once this often (a wake attempt: one
# DescribeServices, and an UpdateService only when the service has no task at all). Submits in between go
# straight on: their lane was just looked at, and the backlog alarm does the rest.
WAKE_EVERY_S = 30.0
