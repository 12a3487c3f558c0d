"""Small checks for request and task input that name the offending field (``input.messages[0].role``).

What the client sent is never echoed whole: :func:`quoted` bounds a quoted value, :func:`field_path`
a key in a field's name (``metadata.order_id``, ``metadata["a key"]``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from jobcore.errors import InvalidInputError
from jobcore.limits import MAX_QUOTED_CHARS

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list", dict: "an object"}
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE_OR_CHARACTER = re.compile(r"\\u[0-9a-fA-F]{4}|\\.|.", re.DOTALL)


def expect_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(path, "must be an object")
    return value


def quoted(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text`` as an error message may quote it: in double quotes, escaped (control characters, lone
    surrogates), and bounded, so a huge value is not echoed back: ``"abc…" (10000 characters)``. At most
    ``limit`` characters are quoted, escapes counted as written."""
    escaped = _json_string(text[:limit])[1:-1]
    if len(text) <= limit and len(escaped) <= limit:
        return f'"{escaped}"'
    kept, size = [], 0
    for token in _ESCAPE_OR_CHARACTER.findall(escaped):  # never cut an escape in two
        if size + len(token) > limit:
            break
        kept.append(token)
        size += len(token)
    return f'"{"".join(kept)}…" ({len(text)} characters)'


def _json_string(text: str) -> str:
    # Readable non-ASCII, but a lone surrogate (which no UTF-8 encoder takes) only as an escape.
    return json.dumps(text, ensure_ascii=bool(_SURROGATE.search(text)))


def field_path(path: str, key: str) -> str:
    """The name of ``key`` under ``path``: ``path.key`` for a short plain key, else ``path["quoted key"]``."""
    if len(key) <= MAX_QUOTED_CHARS and _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path or 'body'}[{quoted(key)}]"


def get(obj: dict[str, Any], key: str, kind: type, path: str, *, required: bool = True, default: Any = None) -> Any:
    """``obj[key]`` checked to be of ``kind`` (bool is not an int here); missing → default or an error."""
    where = field_path(path, key)
    if key not in obj or obj[key] is None:
        if required:
            raise InvalidInputError(where, "is required")
        return default
    value = obj[key]
    kinds = (int, float) if kind is float else (kind,)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kinds):
        raise InvalidInputError(where, f"must be {_TYPE_NAMES.get(kind, kind.__name__)}")
    return value


def in_range(value: float, path: str, low: float, high: float) -> float:
    if not low <= value <= high:
        raise InvalidInputError(path, f"must be between {low:g} and {high:g}")
    return value


def non_empty(value: str, path: str, *, max_chars: int) -> str:
    if not value.strip():
        raise InvalidInputError(path, "must not be empty")
    if len(value) > max_chars:
        raise InvalidInputError(path, f"must be at most {max_chars} characters")
    return value


def reject_unknown(obj: dict[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InvalidInputError(field_path(path, unknown[0]), f"is not a known field (known: {', '.join(sorted(allowed))})")
