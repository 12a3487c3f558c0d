"""Small checks for request and task input that name the offending field (``input.messages[0].role``)."""

from __future__ import annotations

from typing import Any

from jobcore.errors import InvalidInputError

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list", dict: "an object"}


def expect_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(path, "must be an object")
    return value


def get(obj: dict[str, Any], key: str, kind: type, path: str, *, required: bool = True, default: Any = None) -> Any:
    """``obj[key]`` checked to be of ``kind`` (bool is not an int here); missing → default or an error."""
    where = f"{path}.{key}" if path else key
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
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise InvalidInputError(where, f"is not a known field (known: {', '.join(sorted(allowed))})")
