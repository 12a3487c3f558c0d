"""An offline stand-in for the Anthropic Messages API, for tests and local runs.

Why it exists: the pipeline's Claude calls must be exercisable with no internet and no API key,
including the failures that its retry and timeout logic is there for (rate limits, overload, server
errors, hangs, slowness). This module serves just enough of ``POST /v1/messages`` over real HTTP
that the official ``anthropic`` SDK, given ``base_url``, behaves as it would against the service:
the same JSON shapes, status codes and headers, so the SDK raises its own exception classes.

Answers are a pure function of the request body (ids come from its sha256), so tests can assert
exact values:

* no forced tool: ``"Summary: "`` plus the first sentence (at most 40 words) of the last user
  message, cut to fit ``max_tokens``;
* ``tool_choice`` ``{"type": "tool", "name": X}`` or ``{"type": "any"}``: one ``tool_use`` block whose
  input comes from :data:`EXTRACTORS` (``record_invoice`` parses invoice text heuristically), or
  else from placeholders for the tool schema's required properties.

Token usage is ``ceil(characters / 4)``, at least 1, for the request text and for the output.

Behaviour is driven from Python (``configure``/``reset``/``stats``) or, for another process, over
HTTP: ``POST /_standin/control``, ``POST /_standin/reset``, ``GET /_standin/stats``. A control body
``{"fail": {"status": 429, "times": 3}}`` fails the next three calls; ``{"fail": {"status": 429,
"for_s": 60, "retry_after": 1}}`` fails every call for the next 60 s (a rate-limit storm) with that
``retry-after`` header, then answers again; ``{"fail": null}`` ends a failure.

    with ClaudeStandIn() as standin:
        client = anthropic.Anthropic(api_key="x", base_url=standin.base_url)

CLI: ``python -m local.claude_standin --port 8081 --latency 0.2`` serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import calendar
import copy
import datetime as dt
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from typing import Any
from urllib.parse import urlsplit

# Error type the real API reports for each status the stand-in can be told to fail with.
FAIL_ERROR_TYPES = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
_FAIL_MESSAGES = {429: "Number of requests has exceeded your rate limit.", 500: "Internal server error.", 529: "Overloaded"}
_SUMMARY_WORDS = 40
_CHARS_PER_TOKEN = 4


class ApiError(Exception):
    """An error answer in the real API's shape; raising it anywhere in a request ends that request."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.headers = headers or {}

    def payload(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.error_type, "message": self.message}}


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


# ---------------------------------------------------------------------------------------------
# Request validation and text extraction
# ---------------------------------------------------------------------------------------------

def validate_request(body: Any) -> None:
    """Reject what the real API would reject, naming the field, so client bugs surface offline too."""
    if not isinstance(body, dict):
        raise _invalid("request body: must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _invalid("model: Field required (a non-empty string)")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens: Field required (a positive integer)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages: Field required (a non-empty list)")
    for i, message in enumerate(messages):
        _validate_message(message, f"messages.{i}")
    if body.get("stream"):
        raise _invalid("stream: streaming is not supported by the stand-in")
    _validate_tools(body)


def _validate_message(message: Any, path: str) -> None:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise _invalid(f"{path}.role: Input should be 'user' or 'assistant'")
    content = message.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in content):
        raise _invalid(f"{path}.content: Input should be a string or a list of content blocks")


def _validate_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
        raise _invalid("tools: Input should be a list of tools, each with a name")
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] == "tool" and choice.get("name") not in {t["name"] for t in tools}:
        raise _invalid(f"tool_choice.name: no tool named {choice.get('name')!r} in tools")
    if choice["type"] == "any" and not tools:
        raise _invalid("tool_choice: 'any' needs at least one tool")


def _block_text(block: dict[str, Any]) -> str:
    """The text a content block carries, the way a model would read it."""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return json.dumps(block.get("input", {}))
    if kind == "tool_result":
        return content_text(block.get("content", ""))
    if kind == "document" and isinstance(block.get("source"), dict):
        return str(block["source"].get("data", "")) if block["source"].get("type") == "text" else ""
    return ""


def content_text(content: Any) -> str:
    """A message's (or system prompt's) content as plain text: a string, or its blocks joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_block_text(b) for b in content if isinstance(b, dict))
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body["messages"] if m["role"] == "user"]
    return content_text(users[-1]["content"]) if users else ""


def count_tokens(text: str) -> int:
    """Roughly what the real tokenizer says (~4 characters a token); never 0, as the API never is."""
    return max(1, math.ceil(len(text) / _CHARS_PER_TOKEN))


def _input_tokens(body: dict[str, Any]) -> int:
    parts = [content_text(body.get("system", ""))]
    parts += [content_text(m["content"]) for m in body["messages"]]
    if body.get("tools"):
        parts.append(json.dumps(body["tools"], sort_keys=True))
    return count_tokens("".join(parts))


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------

def build_message(body: dict[str, Any], raw: bytes) -> dict[str, Any]:
    """The success answer for a validated request; ``raw`` is the body as sent, hashed for the ids."""
    digest = hashlib.sha256(raw).hexdigest()
    tool = _forced_tool(body)
    if tool is None:
        content, stop_reason, output = _text_reply(body)
    else:
        content, stop_reason, output = _tool_reply(tool, _last_user_text(body), digest)
    return {
        "id": f"msg_{digest[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": _input_tokens(body), "output_tokens": count_tokens(output)},
    }


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool the request forces Claude to call, if any; 'auto' and 'none' get a text answer."""
    choice, tools = body.get("tool_choice") or {}, body.get("tools") or []
    if choice.get("type") == "any":
        return tools[0]
    if choice.get("type") == "tool":
        return next(t for t in tools if t["name"] == choice["name"])
    return None


def summarize(text: str) -> str:
    """``Summary: `` and the first sentence of ``text``, at most 40 words: cheap, but shows the input."""
    flat = " ".join(text.split())
    match = re.match(r".*?[.!?](?=\s|$)", flat)
    sentence = match.group(0) if match else flat
    return f"Summary: {' '.join(sentence.split()[:_SUMMARY_WORDS])}".rstrip()


def _text_reply(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str]:
    text = summarize(_last_user_text(body))
    limit = body["max_tokens"] * _CHARS_PER_TOKEN
    stop_reason = "max_tokens" if len(text) > limit else "end_turn"
    text = text[:limit]
    return [{"type": "text", "text": text}], stop_reason, text


def _tool_reply(tool: dict[str, Any], text: str, digest: str) -> tuple[list[dict[str, Any]], str, str]:
    extractor = EXTRACTORS.get(tool["name"])
    tool_input = extractor(text) if extractor else placeholder_input(tool.get("input_schema") or {})
    tool_id = "toolu_" + hashlib.sha256(f"toolu:{digest}".encode()).hexdigest()[:24]
    block = {"type": "tool_use", "id": tool_id, "name": tool["name"], "input": tool_input}
    return [block], "tool_use", json.dumps(tool_input)


def placeholder_input(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool input with each required property set to an empty value of its type.

    Used for tools with no extractor, so any forced tool call still gets schema-shaped input.
    """
    properties = schema.get("properties") or {}
    return {name: _placeholder(properties.get(name) or {}) for name in schema.get("required") or []}


def _placeholder(prop: dict[str, Any]) -> Any:
    if "enum" in prop and prop["enum"]:
        return prop["enum"][0]
    types = prop.get("type")
    types = types if isinstance(types, list) else [types]
    variants = [v.get("type") for v in prop.get("anyOf", []) if isinstance(v, dict)]
    if "null" in types or "null" in variants or prop.get("nullable"):
        return None
    kind = types[0] if types[0] else (variants[0] if variants else None)
    return {"string": "", "number": 0, "integer": 0, "boolean": False, "array": [], "object": {}}.get(str(kind))


# ---------------------------------------------------------------------------------------------
# record_invoice: a forgiving heuristic invoice parser
# ---------------------------------------------------------------------------------------------

_NUMBER = r"-?\d(?:[\d.,]*\d)?"
# A number standing on its own: not glued to letters, not a percentage, not cut out of a longer number.
_AMOUNT = re.compile(rf"(?<![\w.,]){_NUMBER}(?!\s*%|\w|[.,]\d)")
_CELL_NUMBER = re.compile(rf"(?:[$€£¥]|[A-Z]{{3}})?\s*({_NUMBER})\s*(?:[$€£¥]|[A-Z]{{3}})?")
_TIMES_ITEM = re.compile(
    rf"(?P<desc>.*?[^\W\d_].*?)\s+(?P<qty>{_NUMBER})\s*[xX×@*]\s*(?P<price>{_CELL_NUMBER.pattern})"
    rf"(?:\s+(?P<amount>{_CELL_NUMBER.pattern}))?"
)
_BULLET = re.compile(r"^\s*[-*•]\s+")
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_CODES = re.compile(r"(?<![A-Za-z])(USD|EUR|GBP|CHF|JPY|CAD|AUD|SEK|NOK|DKK|PLN|INR)(?![A-Za-z])")
_TITLE_WORDS = {"invoice", "tax", "commercial", "rechnung", "facture", "bill"}
_VENDOR_LABELS = ("vendor", "from", "seller", "supplier", "issued by", "bill from")
_NUMBER_LABELS = (r"invoice\s*(?:number|num|no|#|id)", r"inv\s*(?:no|#)", r"^\s*(?:number|no|#)")
_DATE_LABELS = (r"invoice\s*date", r"issue\s*date", r"date\s*of\s*issue", r"(?<!due\s)date")
_DUE_LABELS = (r"due\s*date", r"payment\s*due", r"due\s*by", r"due")
_SUBTOTAL_LABELS = (r"sub-?\s?total", r"net\s*total", r"total\s*net", r"net\s*amount", r"total\s*excl\w*")
_TAX_LABELS = (r"(?:sales\s*)?tax(?!\s*(?:id|no|number)\b)", r"vat(?!\s*(?:id|no|number|reg\w*)\b)", r"gst", r"mwst")
_TOTAL_LABELS = (r"total\s*due", r"amount\s*due", r"balance\s*due", r"grand\s*total", r"(?<!net\s)(?<!sub)total(?!\s*(?:net|excl))")


def extract_invoice(text: str) -> dict[str, Any]:
    """The ``record_invoice`` fields read from invoice text, forgivingly, with sensible defaults.

    Vendor: a Vendor/From line, else the first line that is not a bare "INVOICE" title. Dates
    become ISO; ambiguous ``01/03/2024`` is read day first unless the currency is USD. Line items
    are ``desc | qty | price [| amount]``, ``desc  qty x price  [amount]`` or columns separated by
    two or more spaces. Missing subtotal is the sum of amounts, missing tax 0, missing total
    subtotal + tax.
    """
    document = _document(text)
    lines, currency = document.splitlines(), _currency(document)
    items, item_lines = _line_items(lines)
    # Who and when come above the items, the sums below them; an item's text must pass for neither.
    first = min(item_lines, default=len(lines))
    header = lines[:first]
    footer = [line for i, line in enumerate(lines) if i >= first and i not in item_lines] if item_lines else lines

    def date(value: str) -> str | None:
        return _date(value, day_first=currency != "USD")

    subtotal = _first(_money_after(footer, _SUBTOTAL_LABELS), round(sum(i["amount"] for i in items), 2))
    tax = _first(_money_after(footer, _TAX_LABELS), 0.0)
    return {
        "vendor": _vendor(lines),
        "invoice_number": _first(_values(header, _NUMBER_LABELS, _invoice_number), ""),
        # A labelled invoice date, else the first date above the items.
        "invoice_date": _first(chain(_values(header, _DATE_LABELS, date), map(date, header)), ""),
        "due_date": _first(_values(header, _DUE_LABELS, date), None),
        "currency": currency,
        "line_items": items,
        "subtotal": subtotal,
        "tax": tax,
        "total": _first(_money_after(footer, _TOTAL_LABELS), round(subtotal + tax, 2)),
    }


def _document(text: str) -> str:
    """The invoice itself when a prompt wraps it in <invoice> or <document> tags."""
    match = re.search(r"<(invoice|document)\b[^>]*>(.*?)</\1>", text, re.S | re.I)
    return match.group(2) if match else text


def _first(values: Iterable[Any], default: Any) -> Any:
    return next((v for v in values if v is not None), default)


def _values(lines: list[str], labels: Iterable[str], parse: Callable[[str], Any]) -> Iterator[Any]:
    """What ``parse`` makes of the text after each label, labels in priority order, then lines in order."""
    for label in labels:
        regex = re.compile(rf"(?<!\w)(?:{label})(?:(?<=#)|(?!\w))[\s:#.=-]*(?P<value>.*)", re.I)
        for line in lines:
            for match in regex.finditer(line):
                yield parse(match.group("value"))


def _money_after(lines: list[str], labels: Iterable[str]) -> Iterator[float | None]:
    return _values(lines, labels, lambda v: _to_number(m.group(0)) if (m := _AMOUNT.search(v)) else None)


def _to_number(token: str) -> float:
    """``1,234.56``, ``1.234,56``, ``95,00`` and ``1,140`` alike: the last separator decides."""
    if "," in token and "." in token:
        decimal = "," if token.rfind(",") > token.rfind(".") else "."
    elif "," in token:
        decimal = "." if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+", token) else ","
    else:
        decimal = "," if token.count(".") > 1 else "."
    thousands = "." if decimal == "," else ","
    return float(token.replace(thousands, "").replace(decimal, "."))


def _vendor(lines: list[str]) -> str:
    labelled = _first(_values(lines, [rf"^\s*{label}" for label in _VENDOR_LABELS], _cell), None)
    if labelled:
        return labelled
    titles = (line.strip() for line in lines if line.strip() and not _is_title(line))
    return next(titles, "")


def _is_title(line: str) -> bool:
    words = re.findall(r"[^\W\d_]+", line.lower())
    return not words or set(words) <= _TITLE_WORDS


def _cell(value: str) -> str | None:
    """A value up to the next column gap (two spaces or a tab), or None when empty."""
    return re.split(r"\s{2,}|\t", value.strip())[0] or None


def _invoice_number(value: str) -> str | None:
    match = re.match(r"[A-Za-z0-9][\w/-]*", value.strip())
    return match.group(0) if match and re.search(r"\d", match.group(0)) else None


def _currency(text: str) -> str:
    labelled = re.search(r"(?<!\w)currency\s*[:=]?\s*([A-Za-z]{3})(?![A-Za-z])", text, re.I)
    if labelled:
        return labelled.group(1).upper()
    symbols = sorted((text.index(s), code) for s, code in _SYMBOLS.items() if s in text)
    if symbols:
        return symbols[0][1]
    code = _CODES.search(text)
    return code.group(1) if code else "USD"


def _line_items(lines: list[str]) -> tuple[list[dict[str, Any]], set[int]]:
    """The parsed line items, and the indexes of the lines that held them."""
    parsed = [(i, _line_item(_BULLET.sub("", line).strip())) for i, line in enumerate(lines)]
    found = [(i, item) for i, item in parsed if item]
    return [item for _, item in found], {i for i, _ in found}


def _line_item(line: str) -> dict[str, Any] | None:
    times = _TIMES_ITEM.fullmatch(line)
    if times:
        amount = times.group("amount")
        cells = [times.group("desc"), times.group("qty"), times.group("price")] + ([amount] if amount else [])
    else:
        cells = [c.strip() for c in line.strip("|").split("|")] if "|" in line else re.split(r"\s{2,}|\t", line)
    return _item_from_cells(cells)


def _item_from_cells(cells: list[str]) -> dict[str, Any] | None:
    """A description with a letter in it, then quantity, unit price and optionally amount."""
    if len(cells) not in (3, 4) or not re.search(r"[^\W\d_]", cells[0]):
        return None
    matches = [_CELL_NUMBER.fullmatch(c.strip()) for c in cells[1:]]
    if not all(matches):
        return None
    numbers = [_to_number(m.group(1)) for m in matches if m is not None]
    quantity, unit_price = numbers[0], numbers[1]
    amount = numbers[2] if len(numbers) == 3 else round(quantity * unit_price, 2)
    return {
        "description": cells[0].strip(),
        "quantity": int(quantity) if quantity.is_integer() else quantity,
        "unit_price": unit_price,
        "amount": amount,
    }


_ISO_DATE = re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,2})([./-])(\d{1,2})\2(\d{4})(?!\d)")
_MONTH_FIRST = re.compile(r"\b([A-Za-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b")
_DAY_FIRST = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+([A-Za-z]{3,9})\.?,?\s+(\d{4})\b")


def _date(value: str, day_first: bool) -> str | None:
    """The earliest date written in ``value``, as YYYY-MM-DD, or None."""
    found: list[tuple[int, dt.date]] = []
    for match in _ISO_DATE.finditer(value):
        found += _valid(match.start(), int(match[1]), int(match[2]), int(match[3]))
    for match in _NUMERIC_DATE.finditer(value):
        a, b, year = int(match[1]), int(match[3]), int(match[4])
        by_day = match[2] == "." or a > 12 or (b <= 12 and day_first)
        found += _valid(match.start(), year, *((b, a) if by_day else (a, b)))
    for match in _MONTH_FIRST.finditer(value):
        found += _valid(match.start(), int(match[3]), _month(match[1]), int(match[2]))
    for match in _DAY_FIRST.finditer(value):
        found += _valid(match.start(), int(match[3]), _month(match[2]), int(match[1]))
    return min(found)[1].isoformat() if found else None


def _valid(position: int, year: int, month: int | None, day: int) -> list[tuple[int, dt.date]]:
    try:
        return [(position, dt.date(year, month or 0, day))]
    except ValueError:
        return []


def _month(word: str) -> int | None:
    word = word.lower()
    return next((i for i, name in enumerate(calendar.month_name) if i and name.lower().startswith(word)), None)


# Tool name → function from the last user message's text to that tool's input.
EXTRACTORS: dict[str, Callable[[str], dict[str, Any]]] = {"record_invoice": extract_invoice}


# ---------------------------------------------------------------------------------------------
# Behaviour state (shared by the Python and HTTP controls)
# ---------------------------------------------------------------------------------------------

class _State:
    """Injected behaviour and request counters, guarded by one lock since handlers run in threads."""

    def __init__(self, latency_s: float):
        self._lock = threading.Lock()
        self._default_latency_s = _non_negative(latency_s, "latency_s")
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.latency_s, self.hang_s = self._default_latency_s, 0.0
            self.fail_status: int | None = None
            self.fail_remaining: int | None = None
            self.fail_until: float | None = None  # time.monotonic() when a failure for a duration ends
            self.fail_retry_after: float | None = None  # the retry-after header's value (a 429's: 1 unless set)
            self.by_status: dict[str, int] = {}
            self.requests, self.last_request = 0, None

    def set_latency(self, seconds: Any) -> None:
        seconds = _non_negative(seconds, "latency_s")
        with self._lock:
            self.latency_s = seconds

    def set_hang(self, seconds: Any) -> None:
        seconds = 0.0 if seconds is None else _non_negative(seconds, "hang_s")
        with self._lock:
            self.hang_s = seconds

    def set_fail(self, status: Any, times: Any, for_s: Any = None, retry_after: Any = None) -> None:
        if status is not None and status not in FAIL_ERROR_TYPES:
            raise ValueError(f"fail.status: must be one of {sorted(FAIL_ERROR_TYPES)} or null")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 0):
            raise ValueError("fail.times: must be a non-negative integer or null")
        for_s = None if for_s is None else _non_negative(for_s, "fail.for_s")
        retry_after = None if retry_after is None else _non_negative(retry_after, "fail.retry_after")
        with self._lock:
            self.fail_status, self.fail_remaining = status, times
            self.fail_until = None if for_s is None or status is None else time.monotonic() + for_s
            self.fail_retry_after = retry_after

    def apply_control(self, control: Any) -> None:
        """The HTTP control body: only the keys present change; null clears ``fail`` and ``hang_s``."""
        if not isinstance(control, dict):
            raise ValueError("control: must be a JSON object")
        unknown = set(control) - {"latency_s", "fail", "hang_s"}
        if unknown:
            raise ValueError(f"control: unknown keys {sorted(unknown)}")
        if "latency_s" in control:
            self.set_latency(control["latency_s"])
        if "fail" in control:
            fail = control["fail"] or {}
            if not isinstance(fail, dict):
                raise ValueError("fail: must be an object or null")
            unknown = set(fail) - {"status", "times", "for_s", "retry_after"}
            if unknown:
                raise ValueError(f"fail: unknown keys {sorted(unknown)}")
            self.set_fail(fail.get("status"), fail.get("times"), fail.get("for_s"), fail.get("retry_after"))
        if "hang_s" in control:
            self.set_hang(control["hang_s"])

    def config(self) -> dict[str, Any]:
        with self._lock:
            fail: dict[str, Any] | None = None
            if self.fail_status and not self._failure_over():
                fail = {"status": self.fail_status, "times": self.fail_remaining}
                if self.fail_until is not None:
                    fail["for_s"] = round(max(0.0, self.fail_until - time.monotonic()), 3)
                if self.fail_retry_after is not None:
                    fail["retry_after"] = self.fail_retry_after
            return {"latency_s": self.latency_s, "fail": fail, "hang_s": self.hang_s or None}

    def _failure_over(self) -> bool:
        """Whether a failure for a duration has run its time (the lock is held)."""
        return self.fail_until is not None and time.monotonic() >= self.fail_until

    def arrive(self, body: Any) -> tuple[float, float]:
        """Count a messages request; return the (hang, latency) it must wait out."""
        with self._lock:
            self.requests += 1
            self.last_request = body
            return self.hang_s, self.latency_s

    def take_failure(self) -> ApiError | None:
        """The injected error for this request, if one is due; counts down ``fail.times``."""
        with self._lock:
            status = self.fail_status
            if status is None or self.fail_remaining == 0 or self._failure_over():
                return None
            if self.fail_remaining is not None:
                self.fail_remaining -= 1
            retry_after = self.fail_retry_after if self.fail_retry_after is not None else (1 if status == 429 else None)
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        return ApiError(status, FAIL_ERROR_TYPES[status], _FAIL_MESSAGES[status], headers)

    def answered(self, status: int) -> None:
        with self._lock:
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "by_status": dict(self.by_status), "last_request": copy.deepcopy(self.last_request)}


def _non_negative(value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: must be a non-negative number")
    return float(value)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _State):
        super().__init__(address, _Handler)
        self.state = state
        self.stopping = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and the CLI read stats, not access logs."""

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/_standin/stats":
            self._send(200, self.server.state.stats())
        else:
            self._send_error(ApiError(404, "not_found_error", f"{self.path}: not found"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        path = urlsplit(self.path).path
        if path == "/v1/messages":
            self._messages(raw)
        elif path == "/_standin/control":
            self._control(raw)
        elif path == "/_standin/reset":
            self.server.state.reset()
            self._send(200, self.server.state.config())
        else:
            self._send_error(ApiError(404, "not_found_error", f"{self.path}: not found"))

    def _control(self, raw: bytes) -> None:
        try:
            self.server.state.apply_control(_json_or_none(raw))
        except ValueError as err:
            self._send_error(_invalid(str(err)))
            return
        self._send(200, self.server.state.config())

    def _messages(self, raw: bytes) -> None:
        state = self.server.state
        body = _json_or_none(raw)
        hang_s, latency_s = state.arrive(body)
        if not (self._wait(hang_s) and self._wait(latency_s)):
            self.close_connection = True  # stopping: leave without an answer
            return
        try:
            status, payload, headers = 200, self._answer(body, raw), {}
        except ApiError as err:
            status, payload, headers = err.status, err.payload(), err.headers
        state.answered(status)
        self._send(status, payload, {"request-id": "req_" + hashlib.sha256(raw).hexdigest()[:24], **headers})

    def _answer(self, body: Any, raw: bytes) -> dict[str, Any]:
        if not (self.headers.get("x-api-key") or self.headers.get("authorization", "").lower().startswith("bearer ")):
            raise ApiError(401, "authentication_error", "x-api-key header is required")
        failure = self.server.state.take_failure()
        if failure:
            raise failure
        if body is None:
            raise _invalid("request body: not valid JSON")
        validate_request(body)
        return build_message(body, raw)

    def _wait(self, seconds: float) -> bool:
        """Sleep, but wake at once when the server stops; False means it is stopping."""
        return not (seconds and self.server.stopping.wait(seconds))

    def _send_error(self, err: ApiError) -> None:
        self._send(err.status, err.payload(), err.headers)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


class ClaudeStandIn:
    """The stand-in server: ``start()`` it (or use ``with``), point the SDK at ``base_url``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0):
        self._address = (host, port)
        self._state = _State(latency_s)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ClaudeStandIn:
        """Bind and serve in a background daemon thread; returns self for chaining."""
        if self._server is None:
            self._server = _Server(self._address, self._state)
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="claude-standin", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: waiting requests (hang, latency) are woken and dropped without an answer."""
        if self._server is None:
            return
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ClaudeStandIn:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("ClaudeStandIn is not started")
        return f"http://{self._address[0]}:{self._server.server_port}"

    def configure(
        self,
        latency_s: float | None = None,
        fail_status: int | None = None,
        fail_times: int | None = None,
        hang_s: float | None = None,
        fail_for_s: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Change behaviour; arguments left as None are unchanged.

        ``fail_status`` (429, 529 or 500) fails the next ``fail_times`` message requests, or all of
        them until ``reset()`` when ``fail_times`` is None; with ``fail_for_s``, only for that many
        seconds from now (a rate-limit storm), then it answers again. ``retry_after`` sets the failures'
        ``retry-after`` header (a 429's is 1 otherwise). ``hang_s=0`` ends a hang.
        """
        if (fail_times is not None or fail_for_s is not None or retry_after is not None) and fail_status is None:
            raise ValueError("fail_times, fail_for_s and retry_after need fail_status")
        if latency_s is not None:
            self._state.set_latency(latency_s)
        if fail_status is not None:
            self._state.set_fail(fail_status, fail_times, fail_for_s, retry_after)
        if hang_s is not None:
            self._state.set_hang(hang_s)

    def reset(self) -> None:
        """Back to the constructor's latency, no failures, no hang, and zeroed stats."""
        self._state.reset()

    def stats(self) -> dict[str, Any]:
        """``requests``, ``by_status`` (status as a string → count) and ``last_request`` (parsed body)."""
        return self._state.stats()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Offline stand-in for the Anthropic Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before every answer")
    args = parser.parse_args(argv)
    with ClaudeStandIn(host=args.host, port=args.port, latency_s=args.latency) as standin:
        print(standin.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
