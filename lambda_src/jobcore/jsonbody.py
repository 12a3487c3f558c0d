"""Every JSON input, however it arrives, parsed and checked here: JSON the pipeline can keep, checked once,
whole, right after parsing.

An input arrives three ways: as the request body (``POST /v1/jobs``), as an upload a job names
(``input_upload``: :mod:`jobcore.uploads`, read by the router or by a worker), and as an S3 intake object
(:mod:`jobcore.intake`). Each is parsed by :func:`parse` and nothing else: what one way refuses, the others
refuse too, so nothing is stored that a later read or view cannot take back.

JSON allows more than the pipeline can store or send on. A job's input and metadata go into a
DynamoDB item (or S3) and are later sent to Claude as UTF-8, so every value of a body, including the
parts a task passes through unread (most of a ``claude.messages`` body), must be:

- a number DynamoDB stores: at most 38 significant digits, a magnitude from 1E-130 to
  9.9999999999999999999999999999999999999E+125 (or 0); never NaN or Infinity, which are not JSON at
  all, nor a literal such as ``1e400`` that Python would silently turn into infinity;
- text: no lone surrogate (``"\\ud800"`` is valid JSON, but no UTF-8 encoder takes it), in values
  and in keys alike; no empty key (DynamoDB refuses an empty attribute name at any depth);
- nested at most :data:`~jobcore.limits.MAX_JSON_DEPTH` levels (DynamoDB's nesting limit; Python's
  parser itself gives up near a thousand).

:func:`parse` decodes (UTF-8), parses and checks; :func:`check` checks a value already parsed. A document
that is not JSON (NaN, too deep to parse) or not text is a :class:`BadRequestError` (400); a number out of
DynamoDB's range or an empty key is an :class:`InvalidInputError` (422). Both name the field:
``input.messages[0].content[1].x`` (``root`` names the document itself: ``input`` for an upload or an intake
object, which is the task's input).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from jobcore.errors import BadRequestError, InvalidInputError
from jobcore.limits import DYNAMODB_MAX_NUMBER, DYNAMODB_MIN_NUMBER, DYNAMODB_NUMBER_DIGITS, MAX_JSON_DEPTH
from jobcore.validation import field_path, quoted

_MAX = Decimal(DYNAMODB_MAX_NUMBER)
_MIN = Decimal(DYNAMODB_MIN_NUMBER)
_SURROGATE = re.compile("[\ud800-\udfff]")
# An integer literal this long may have more digits than DynamoDB keeps (a sign takes one more).
_SHORT_INT = DYNAMODB_NUMBER_DIGITS
# A float literal this short without an exponent is between 1E-18 and 1E+20 with < 38 digits: fine.
_SHORT_FLOAT = 20

Segment = str | int


class _Rejected:
    """What the parser leaves in place of a number it must not accept; :func:`check` reports it with its path."""

    __slots__ = ("reason", "bad_request")

    def __init__(self, reason: str, *, bad_request: bool = False):
        self.reason = reason
        self.bad_request = bad_request


BODY = "the request body"


def parse(data: str | bytes, *, document: str = BODY, root: str = "") -> Any:
    """``data`` (UTF-8 bytes, or text) parsed and checked (see the module's docstring). ``document`` names it in
    messages (``the uploaded input``), ``root`` in field paths (``input``); BadRequestError if it is not UTF-8,
    empty or not JSON, InvalidInputError (or BadRequestError) naming the first value that cannot be kept."""
    text = decode(data, document=document) if isinstance(data, bytes) else data
    del data  # a large upload: its bytes may go before the parsed document comes
    if not text.strip():
        raise BadRequestError(f"{document} is empty; send a JSON document")
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as error:
        raise BadRequestError(
            f"{document} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise BadRequestError(f"{document} nests deeper than {MAX_JSON_DEPTH} levels") from None
    check(value, root, document=document)
    return value


def decode(data: bytes, *, document: str = BODY) -> str:
    """``data`` as text; BadRequestError naming the first byte that is not UTF-8 (JSON is UTF-8; so is text a
    task takes: anything else could never be sent on to the model)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequestError(f"{document} is not UTF-8 text (byte {error.start} is not valid UTF-8)") from None


def check(value: Any, path: str = "", *, document: str = BODY) -> None:
    """Raise BadRequestError or InvalidInputError naming the first value of ``value`` that the pipeline
    cannot keep (``path`` names ``value`` itself; "" is the body; ``document`` names it in messages)."""
    # Iterative, depth-first: a deep document must not exhaust the stack here either.
    stack: list[tuple[Any, tuple[Segment, ...]]] = [(value, ())]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            _check_depth(where, path, document)
            for key, item in node.items():
                if not key:
                    raise InvalidInputError(_name(path, (*where, key)), "is an empty key; a key must not be empty")
                if _SURROGATE.search(key):
                    raise BadRequestError(f"{_name(path, (*where, key))}: {_NOT_TEXT}", field=_name(path, (*where, key)))
                _scalar(item, path, where, key, stack, document)
        elif isinstance(node, list):
            _check_depth(where, path, document)
            for index, item in enumerate(node):
                _scalar(item, path, where, index, stack, document)
        else:
            _scalar(node, path, (), None, stack, document)


_NOT_TEXT = "is not text: it holds a lone surrogate (half of a UTF-16 pair), which UTF-8 cannot encode"


def _scalar(item: Any, path: str, where: tuple[Segment, ...], segment: Segment | None,
            stack: list[tuple[Any, tuple[Segment, ...]]], document: str) -> None:
    """Check one value; a container goes on ``stack`` for later."""
    here = where if segment is None else (*where, segment)
    if isinstance(item, str):
        if _SURROGATE.search(item):
            name = _name(path, here)
            raise BadRequestError(f"{name}: {_NOT_TEXT}", field=name)
    elif isinstance(item, (dict, list)):
        stack.append((item, here))
    elif isinstance(item, _Rejected):
        name = _name(path, here)
        if item.bad_request:
            raise BadRequestError(f"{document} is not valid JSON: {item.reason} (at {name})", field=name)
        raise InvalidInputError(name, item.reason)
    elif isinstance(item, float):
        reason = _float_problem(item)
        if reason:
            raise InvalidInputError(_name(path, here), reason)
    elif isinstance(item, int) and not isinstance(item, bool) and len(str(abs(item))) > DYNAMODB_NUMBER_DIGITS:
        raise InvalidInputError(_name(path, here), _TOO_MANY_DIGITS)


def _check_depth(where: tuple[Segment, ...], path: str, document: str) -> None:
    if len(where) >= MAX_JSON_DEPTH:  # this container is at level len(where) + 1
        name = _name(path, where)
        raise BadRequestError(f"{document} nests deeper than {MAX_JSON_DEPTH} levels (at {name})", field=name)


def _name(path: str, segments: tuple[Segment, ...]) -> str:
    name = path
    for segment in segments:
        name = f"{name or 'body'}[{segment}]" if isinstance(segment, int) else field_path(name, segment)
    return name or "body"


# --- numbers --------------------------------------------------------------------------------------

_TOO_MANY_DIGITS = f"is a number with more than {DYNAMODB_NUMBER_DIGITS} significant digits, more than can be stored"
_TOO_LARGE = f"is a number too large to store (at most {DYNAMODB_MAX_NUMBER} in magnitude)"
_TOO_SMALL = f"is a number too small to store (other than 0, at least {DYNAMODB_MIN_NUMBER} in magnitude)"


def _parse_int(literal: str) -> int | _Rejected:
    if len(literal) <= _SHORT_INT:
        return int(literal)
    if len(literal.lstrip("-")) > DYNAMODB_NUMBER_DIGITS:  # JSON has no leading zeros: every digit counts
        return _Rejected(_TOO_MANY_DIGITS)
    return int(literal)


def _parse_float(literal: str) -> float | _Rejected:
    if len(literal) <= _SHORT_FLOAT and "e" not in literal and "E" not in literal:
        return float(literal)
    try:
        exact = Decimal(literal)
    except InvalidOperation:  # the scanner only hands over JSON numbers; this is for safety
        return _Rejected(f"{quoted(literal)} is not a number", bad_request=True)
    if exact:
        significant = "".join(map(str, exact.as_tuple().digits)).rstrip("0")  # no leading zeros in a Decimal
        if len(significant) > DYNAMODB_NUMBER_DIGITS:
            return _Rejected(_TOO_MANY_DIGITS)
        if abs(exact) > _MAX:
            return _Rejected(_TOO_LARGE)
        if abs(exact) < _MIN:
            return _Rejected(_TOO_SMALL)
    value = float(literal)
    reason = _float_problem(value)
    return _Rejected(reason) if reason else value


def _float_problem(value: float) -> str | None:
    """Why DynamoDB could not store ``value`` as the pipeline writes it (its shortest repr), or None."""
    if math.isnan(value):
        return "is not a number (NaN)"
    if math.isinf(value):
        return _TOO_LARGE
    if value == 0:
        return None
    stored = abs(Decimal(repr(value)))
    if stored > _MAX:
        return _TOO_LARGE
    if stored < _MIN:
        return _TOO_SMALL
    return None


def _parse_constant(name: str) -> _Rejected:
    # Python's json accepts NaN, Infinity and -Infinity; JSON (and DynamoDB) do not.
    return _Rejected(f"{name} is not a JSON number", bad_request=True)
