"""Verifying the pipeline's webhooks: Standard Webhooks signatures (https://www.standardwebhooks.com).

The signature is an HMAC-SHA256, keyed with the secret (``whsec_`` + base64), of
``{webhook-id}.{webhook-timestamp}.{body}``, sent base64-encoded as ``v1,<signature>`` in the
``webhook-signature`` header (several, space-separated, while a secret is rotated). A timestamp more than
``tolerance_s`` away from now is refused, so a captured request cannot be replayed later. Written with the
standard library (about 30 lines) so the SDK needs no package; the tests check it against the reference
implementation and against events the pipeline signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from jobpipe.errors import JobpipeError

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(JobpipeError):
    """The request is not a genuine, fresh webhook of the pipeline: a header missing, a bad signature,
    a timestamp too old or too new, or a secret that is not one."""


def verify(body: bytes | str, headers: Mapping[str, str], secret: str | bytes, *,
           tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> dict[str, Any]:
    """The event (``{id, type, timestamp, data: <the job>}``) once its signature checks out; else
    :class:`WebhookVerificationError`. ``body``: the request's raw body, byte for byte as received;
    ``headers``: its headers (any case); ``secret``: the pipeline's webhook secret (``whsec_...``)."""
    key = _key(secret)
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, timestamp, signatures = (lowered.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and timestamp and signatures):
        raise WebhookVerificationError("missing a header: webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp is not a number of seconds: {timestamp[:40]!r}") from None
    skew = (time.time() if now is None else now) - sent_at
    if abs(skew) > tolerance_s:
        raise WebhookVerificationError(f"webhook-timestamp is {abs(skew):.0f} s {'old' if skew > 0 else 'in the future'}; "
                                       f"at most {tolerance_s:g} s is accepted")
    text = body if isinstance(body, str) else body.decode("utf-8", "surrogateescape")
    expected = hmac.new(key, f"{msg_id}.{sent_at}.{text}".encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, candidate):
            try:
                event = json.loads(text)
            except ValueError:
                raise WebhookVerificationError("the signature is valid but the body is not JSON") from None
            if not isinstance(event, dict):
                raise WebhookVerificationError("the signature is valid but the body is not a JSON object")
            return event
    raise WebhookVerificationError("no signature matches: the body was changed, or the secret is not this endpoint's")


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        key = secret
    else:
        encoded = secret.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookVerificationError("the secret is not a webhook secret (whsec_ followed by base64)") from None
    if not key:
        raise WebhookVerificationError("the webhook secret is empty")
    return key


class Webhooks:
    """``client.webhooks``: :func:`verify` (needs no API call, so no client either)."""

    @staticmethod
    def verify(body: bytes | str, headers: Mapping[str, str], secret: str | bytes, *,
               tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> dict[str, Any]:
        return verify(body, headers, secret, tolerance_s=tolerance_s, now=now)
