"""How large a request is where it matters: as the Lambda event that carries it to the router.

API Gateway takes bodies up to 10 MB, but it hands each request to the router as a synchronous Lambda
invocation whose payload (the event: the body as a JSON string, the headers, the request context) is
at most 6 MB. The router answers 413 ``payload_too_large`` to an event above that, and the local
gateway measures the event it builds the same way and answers the same, before invoking anything.
"""

from __future__ import annotations

import json
from typing import Any

from jobcore.errors import PayloadTooLargeError
from jobcore.limits import MAX_REQUEST_EVENT_BYTES, MIB

STATUS = 413
MESSAGE = (f"the request is too large: it reaches the router as a Lambda event of at most "
           f"{MAX_REQUEST_EVENT_BYTES // MIB} MB (body, headers and all); send a smaller body")


def event_bytes(event: dict[str, Any]) -> int:
    """The event's size as Lambda counts it: its JSON, UTF-8 encoded."""
    return len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def too_large(event: dict[str, Any]) -> bool:
    return event_bytes(event) > MAX_REQUEST_EVENT_BYTES


def error_body() -> dict[str, Any]:
    """The 413 answer's body, in the API's error shape."""
    return {"error": {"type": PayloadTooLargeError.type, "message": MESSAGE}}
