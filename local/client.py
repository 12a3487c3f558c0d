"""A minimal JSON client for the job API, shared by the demo, the benchmark and the end-to-end tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from local.gateway import LOCAL_API_KEY


def call(
    method: str, url: str, body: Any = None, *, key: str | None = LOCAL_API_KEY, raw: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed JSON body). ``raw`` sends bytes as they are; ``key=None`` sends no API key."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")
