"""Idempotent submits: an ``Idempotency-Key`` makes a retried ``POST /v1/jobs`` return the original job.

Stripe's semantics, per tenant, for 24 hours: the same key and body return the original job (same id,
same status code, its current state); the same key with another body is a 422 ``idempotency_mismatch``;
concurrent duplicates create one job and make one model call (the first reserves the key with a
conditional write; the others wait for its answer, within the inline budget, or get a 409).

Why not Powertools' idempotency utility: it stores the first *response* and replays it, and ours can
carry a 256 KB result (close to DynamoDB's 400 KB item) and would go stale (a queued job's 202 would be
replayed as "queued" forever). Here the key stores only the job id and the status code, the job's
current state is read fresh, and the reservation is the same conditional-write store as the jobs.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from jobcore.errors import InvalidInputError

KEY_TTL_S = 24 * 3600
MAX_KEY_CHARS = 255
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII, as Stripe's keys are


@dataclass(frozen=True, kw_only=True)
class IdempotencyRecord:
    record_id: str  # the store key: tenant and key, hashed
    job_id: str
    body_hash: str
    created_at: int  # epoch ms
    expires_at: int  # epoch s (TTL)
    status_code: int | None = None  # the original answer's status, once it is known


def check_key(raw: str | None) -> str | None:
    """The header's value, checked; InvalidInputError naming the header if malformed."""
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_KEY_CHARS or not _PRINTABLE.fullmatch(raw):
        raise InvalidInputError("Idempotency-Key", f"must be 1 to {MAX_KEY_CHARS} visible ASCII characters")
    return raw


def record_id(tenant_id: str, key: str) -> str:
    digest = hashlib.sha256(f"{tenant_id}\n{key}".encode()).hexdigest()
    return f"idem_{digest}"


def body_hash(body: Any) -> str:
    """The request body's fingerprint: the same JSON, whatever its key order or spacing."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def new_record(*, tenant_id: str, key: str, job_id: str, body: Any, now_ms: int) -> IdempotencyRecord:
    return IdempotencyRecord(
        record_id=record_id(tenant_id, key), job_id=job_id, body_hash=body_hash(body), created_at=now_ms,
        expires_at=now_ms // 1000 + KEY_TTL_S,
    )
