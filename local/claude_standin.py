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

Prompt caching is counted as the API does (:class:`PromptCache`): blocks with ``cache_control``
``{"type": "ephemeral"[, "ttl": "5m"|"1h"]}`` (tools, then system, then message blocks; or the
top-level ``cache_control``) write their prefix once it is at least 1024 tokens (2048 for Haiku),
reported as ``cache_creation_input_tokens`` (split by ttl in ``cache_creation``); a later request
with the same prefix within the ttl gets ``cache_read_input_tokens``, and ``input_tokens`` is only
the rest. Usage always carries the cache fields (0 when nothing is cached) and ``service_tier``.

The Message Batches API is served too: ``POST /v1/messages/batches``, ``GET .../batches`` (list,
``limit``/``after_id``/``before_id``), ``GET``/``DELETE .../batches/{id}``, ``POST .../{id}/cancel``
and ``GET .../{id}/results`` (JSON lines; ``results_url`` points back here). Each request is
answered like a ``/v1/messages`` call (a bad one comes back ``errored``); request i of n is done at
``batch_delay_s * (i + 1) / n`` after creation, so the batch is ``in_progress`` until
``batch_delay_s`` (1 s by default), and a cancel is ``canceling`` for ``batch_cancel_delay_s`` before
the unanswered requests end ``canceled``. ``clock`` (``time.time``) drives both caching ttls and batch
timing, so tests can inject a fake one.

Behaviour is driven from Python (``configure``/``reset``/``stats``) or, for another process, over
HTTP: ``POST /_standin/control``, ``POST /_standin/reset``, ``GET /_standin/stats``. A control body
``{"fail": {"status": 429, "times": 3}}`` fails the next three calls; ``{"fail": {"status": 429,
"for_s": 60, "retry_after": 1}}`` fails every call for the next 60 s (a rate-limit storm) with that
``retry-after`` header, then answers again; ``{"fail": null}`` ends a failure. Batches made from
then on follow ``{"batch": {"delay_s": 2, "cancel_delay_s": 0.5, "fail": [rule, ...]}}``, where a
rule picks requests by one of ``"custom_id"`` (a regex), ``"index"`` (0-based) or ``"fraction"``
and makes them ``"result": "errored"`` (the default, with ``"error_type"``, default
``overloaded_error``, and optional ``"message"``) or ``"expired"``; ``{"batch": {"fail": null}}``
drops the rules. The stats add ``batches``: ``{"created": n, "requests": {batch_id: size}}``.

    with ClaudeStandIn() as standin:
        client = anthropic.Anthropic(api_key="x", base_url=standin.base_url)

CLI: ``python -m local.claude_standin --port 8081 --latency 0.2 --batch-delay 1`` serves until Ctrl-C.
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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
# Prompt caching
# ---------------------------------------------------------------------------------------------

# Seconds a cache entry lives after its last write or read, by the breakpoint's ``ttl``.
CACHE_TTLS = {"5m": 300.0, "1h": 3600.0}
MAX_CACHE_BREAKPOINTS = 4
# How many block boundaries before a breakpoint the API looks back for an earlier cache entry.
CACHE_LOOKBACK_BLOCKS = 20


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix the API caches: 2048 tokens for Haiku models, 1024 for the others."""
    return 2048 if "haiku" in model.lower() else 1024


@dataclass(frozen=True)
class PromptBlock:
    """One cacheable unit of a prompt: a tool, a system block or a message content block."""

    key: str  # canonical JSON of the block (and its role), ``cache_control`` left out
    chars: int  # its share of the characters that ``input_tokens`` counts, separators included
    ttl: str | None  # "5m" or "1h" when the block carries ``cache_control`` (a breakpoint)


def prompt_blocks(body: dict[str, Any]) -> list[PromptBlock]:
    """A validated request's blocks in the API's cache order (tools, system, messages).

    Their ``chars`` add up to the characters ``input_tokens`` is computed from, so a prefix's tokens
    and the whole prompt's agree. A top-level ``cache_control`` marks the last block. Bad
    ``cache_control`` values, more than four breakpoints, or a 1h breakpoint after a 5m one are a 400.
    """
    blocks: list[PromptBlock] = []
    tools = body.get("tools") or []
    for i, tool in enumerate(tools):
        # json.dumps(tools) is "[" + ", ".join(tool JSON) + "]": each tool owns its separator and brackets.
        chars = len(json.dumps(tool, sort_keys=True)) + (1 if i == 0 else 2) + (1 if i == len(tools) - 1 else 0)
        blocks.append(_prompt_block("tool", tool, chars, f"tools.{i}"))
    system = body.get("system")
    if isinstance(system, str) and system:
        blocks.append(_prompt_block("system", {"type": "text", "text": system}, len(system), "system"))
    elif isinstance(system, list):
        items = [b for b in system if isinstance(b, dict)]
        blocks += [_prompt_block("system", b, len(_block_text(b)) + (1 if i else 0), f"system.{i}") for i, b in enumerate(items)]
    for m, message in enumerate(body["messages"]):
        content, role = message["content"], message["role"]
        if isinstance(content, str):
            blocks.append(_prompt_block(role, {"type": "text", "text": content}, len(content), f"messages.{m}.content"))
        else:
            path = f"messages.{m}.content"
            blocks += [_prompt_block(role, b, len(_block_text(b)) + (1 if i else 0), f"{path}.{i}") for i, b in enumerate(content)]
    top = _cache_ttl(body, "cache_control")
    if top and blocks and blocks[-1].ttl is None:
        blocks[-1] = PromptBlock(blocks[-1].key, blocks[-1].chars, top)
    ttls = [b.ttl for b in blocks if b.ttl]
    if len(ttls) > MAX_CACHE_BREAKPOINTS:
        raise _invalid(f"cache_control: A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {len(ttls)}.")
    if "5m" in ttls and "1h" in ttls[ttls.index("5m"):]:
        raise _invalid("cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' one")
    return blocks


def _prompt_block(kind: str, block: dict[str, Any], chars: int, path: str) -> PromptBlock:
    canonical = {"kind": kind, "block": {k: v for k, v in block.items() if k != "cache_control"}}
    return PromptBlock(json.dumps(canonical, sort_keys=True), chars, _cache_ttl(block, path + ".cache_control"))


def _cache_ttl(holder: dict[str, Any], path: str) -> str | None:
    control = holder.get("cache_control")
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise _invalid(f"{path}.type: Input should be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl not in CACHE_TTLS:
        raise _invalid(f"{path}.ttl: Input should be '5m' or '1h'")
    return str(ttl)


class PromptCache:
    """Cached prompt prefixes, the way the API's prompt caching counts them.

    A prefix is everything up to and including a block with ``cache_control`` (tools, then system,
    then messages), for one model. A request reads the longest prefix still cached that ends at a
    breakpoint or at one of the 20 block boundaries before one (``cache_read_input_tokens``), and
    writes each breakpoint's prefix that is longer than that and at least
    :func:`min_cacheable_tokens` long (``cache_creation_input_tokens``, split by ttl). A read or
    write keeps the entry for its ttl from then on. Time is whatever clock the caller passes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, float]] = {}  # prefix hash → (expires at, ttl in seconds)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def use(self, model: str, blocks: list[PromptBlock], now: float) -> tuple[int, dict[str, int]]:
        """Tokens read from the cache, and tokens written to it by ttl, for a prompt's blocks at ``now``."""
        created = {"5m": 0, "1h": 0}
        breakpoints = [i for i, block in enumerate(blocks) if block.ttl]
        if not breakpoints:
            return 0, created
        running, keys, tokens, chars = hashlib.sha256(model.encode()), [], [], 0
        for block in blocks:
            running.update(block.key.encode() + b"\n")
            chars += block.chars
            keys.append(running.hexdigest())
            tokens.append(math.ceil(chars / _CHARS_PER_TOKEN))
        minimum = min_cacheable_tokens(model)
        with self._lock:
            self._entries = {key: entry for key, entry in self._entries.items() if entry[0] > now}
            read_at = -1
            for b in breakpoints:
                hit = next((j for j in range(b, max(b - CACHE_LOOKBACK_BLOCKS, -1), -1) if keys[j] in self._entries), -1)
                read_at = max(read_at, hit)
            read = tokens[read_at] if read_at >= 0 else 0
            if read_at >= 0:
                ttl_s = self._entries[keys[read_at]][1]
                self._entries[keys[read_at]] = (now + ttl_s, ttl_s)
            written = read
            for b in breakpoints:
                if tokens[b] < minimum:
                    continue
                ttl = str(blocks[b].ttl)
                old_expiry, old_ttl = self._entries.get(keys[b], (0.0, 0.0))
                self._entries[keys[b]] = (max(old_expiry, now + CACHE_TTLS[ttl]), max(old_ttl, CACHE_TTLS[ttl]))
                if b > read_at:
                    created[ttl] += tokens[b] - written
                    written = tokens[b]
        return read, created


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------

def build_message(
    body: dict[str, Any], raw: bytes, *, cache: PromptCache | None = None, now: float | None = None, service_tier: str = "standard",
) -> dict[str, Any]:
    """The success answer for a validated request; ``raw`` is the body as sent, hashed for the ids.

    With a ``cache``, the prompt's ``cache_control`` breakpoints read and write it at time ``now`` (see
    :class:`PromptCache`); without one nothing is cached, though the breakpoints are still validated.
    """
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
        "usage": _usage(body, count_tokens(output), cache, time.time() if now is None else now, service_tier),
    }


def _usage(body: dict[str, Any], output_tokens: int, cache: PromptCache | None, now: float, service_tier: str) -> dict[str, Any]:
    """The answer's usage, as the real API reports it: ``input_tokens`` is only what no cache covered."""
    blocks = prompt_blocks(body)
    read, created = cache.use(body["model"], blocks, now) if cache is not None else (0, {"5m": 0, "1h": 0})
    creation = created["5m"] + created["1h"]
    return {
        "input_tokens": _input_tokens(body) - read - creation,
        "cache_creation_input_tokens": creation,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": created["5m"], "ephemeral_1h_input_tokens": created["1h"]},
        "output_tokens": output_tokens,
        "service_tier": service_tier,
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
# Message Batches
# ---------------------------------------------------------------------------------------------

BATCH_MAX_REQUESTS = 100_000
BATCH_MAX_BYTES = 256 * 1024 * 1024
BATCH_LIFETIME_S = 24 * 3600.0  # a batch expires (and ends) this long after its creation
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# Error types a batch request can be told to come back ``errored`` with, and their messages.
BATCH_ERROR_MESSAGES = {
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error.",
    "invalid_request_error": "Invalid request.",
    "rate_limit_error": "Number of requests has exceeded your rate limit.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
}


@dataclass(frozen=True)
class BatchFailRule:
    """Which requests of a new batch fail, and how: ``errored`` (with ``error_type``) or ``expired``.

    Select by exactly one of ``custom_id`` (a regex, ``re.search``ed in the custom id), ``index``
    (0-based position in the batch) or ``fraction`` (0..1: floor(n * fraction) requests, spread evenly).
    """

    custom_id: str | None = None
    index: int | None = None
    fraction: float | None = None
    result: str = "errored"
    error_type: str = "overloaded_error"
    message: str | None = None

    @classmethod
    def parse(cls, spec: Any, path: str) -> BatchFailRule:
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: must be an object")
        unknown = set(spec) - {"custom_id", "index", "fraction", "result", "error_type", "message"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        if sum(spec.get(k) is not None for k in ("custom_id", "index", "fraction")) != 1:
            raise ValueError(f"{path}: give exactly one of custom_id, index, fraction")
        rule = cls(**spec)
        if rule.custom_id is not None:
            try:
                re.compile(rule.custom_id)
            except (re.error, TypeError) as err:
                raise ValueError(f"{path}.custom_id: not a regular expression ({err})") from None
        if rule.index is not None and (not isinstance(rule.index, int) or isinstance(rule.index, bool) or rule.index < 0):
            raise ValueError(f"{path}.index: must be a non-negative integer")
        if rule.fraction is not None and not (isinstance(rule.fraction, (int, float)) and 0 <= rule.fraction <= 1):
            raise ValueError(f"{path}.fraction: must be a number from 0 to 1")
        if rule.result not in ("errored", "expired"):
            raise ValueError(f"{path}.result: must be 'errored' or 'expired'")
        if rule.error_type not in BATCH_ERROR_MESSAGES:
            raise ValueError(f"{path}.error_type: must be one of {sorted(BATCH_ERROR_MESSAGES)}")
        if rule.message is not None and not isinstance(rule.message, str):
            raise ValueError(f"{path}.message: must be a string")
        return rule

    def selects(self, index: int, count: int, custom_id: str) -> bool:
        if self.custom_id is not None:
            return re.search(self.custom_id, custom_id) is not None
        if self.index is not None:
            return index == self.index
        fraction = float(self.fraction or 0)
        return math.floor((index + 1) * fraction) > math.floor(index * fraction)

    def outcome(self) -> dict[str, Any]:
        if self.result == "expired":
            return {"type": "expired"}
        message = self.message or BATCH_ERROR_MESSAGES[self.error_type]
        return {"type": "errored", "error": {"type": "error", "error": {"type": self.error_type, "message": message}}}

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class BatchSettings:
    """How a new batch is processed; each batch keeps the settings it was created under."""

    delay_s: float = 1.0  # request i of n is answered at created + delay_s * (i + 1) / n; the batch ends at created + delay_s
    cancel_delay_s: float = 0.2  # a cancel leaves the batch ``canceling`` this long before it ends
    fail: tuple[BatchFailRule, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"delay_s": self.delay_s, "cancel_delay_s": self.cancel_delay_s, "fail": [r.as_dict() for r in self.fail] or None}


def validate_batch(body: Any) -> list[tuple[str, dict[str, Any]]]:
    """A create-batch body's (custom_id, params) pairs; a 400 as the API's when it is malformed.

    The ``params`` themselves are validated when the request is processed, as the API does: a bad
    one comes back ``errored`` with an ``invalid_request_error``.
    """
    if not isinstance(body, dict):
        raise _invalid("request body: must be a JSON object")
    unknown = set(body) - {"requests"}
    if unknown:
        raise _invalid(f"{sorted(unknown)[0]}: Extra inputs are not permitted")
    requests = body.get("requests")
    if not isinstance(requests, list):
        raise _invalid("requests: Field required (a list of requests)")
    if not 1 <= len(requests) <= BATCH_MAX_REQUESTS:
        raise _invalid(f"requests: must hold from 1 to {BATCH_MAX_REQUESTS} requests, not {len(requests)}")
    pairs, seen = [], set()
    for i, request in enumerate(requests):
        if not isinstance(request, dict):
            raise _invalid(f"requests.{i}: must be an object with custom_id and params")
        custom_id, params = request.get("custom_id"), request.get("params")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            raise _invalid(f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise _invalid(f"requests.{i}.custom_id: Duplicate custom_id {custom_id!r}; each request's custom_id must be unique")
        if not isinstance(params, dict):
            raise _invalid(f"requests.{i}.params: Field required (Messages API parameters)")
        unknown = set(request) - {"custom_id", "params"}
        if unknown:
            raise _invalid(f"requests.{i}.{sorted(unknown)[0]}: Extra inputs are not permitted")
        seen.add(custom_id)
        pairs.append((custom_id, params))
    return pairs


def _rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Batch:
    """One message batch. It advances lazily: whenever it is looked at, requests whose time has come
    (see :class:`BatchSettings`) are answered at that time, so results do not depend on polling."""

    def __init__(self, batch_id: str, requests: list[tuple[str, dict[str, Any]]], created: float, settings: BatchSettings):
        self.id, self.requests, self.settings = batch_id, requests, settings
        self.created_at, self.expires_at = created, created + BATCH_LIFETIME_S
        self.results: list[dict[str, Any] | None] = [None] * len(requests)
        self.cancel_at: float | None = None
        self.ended_at: float | None = None

    def due(self, i: int) -> float:
        return self.created_at + self.settings.delay_s * (i + 1) / len(self.requests)

    def advance(self, now: float, cache: PromptCache) -> None:
        if self.ended_at is not None:
            return
        stop = min(now, self.expires_at, math.inf if self.cancel_at is None else self.cancel_at)
        for i, result in enumerate(self.results):
            if result is None and self.due(i) <= stop:
                self.results[i] = self._process(i, self.due(i), cache)
        ends: list[tuple[float, dict[str, Any]]] = [(self.expires_at, {"type": "expired"})]
        if self.cancel_at is not None:
            ends.append((self.cancel_at + self.settings.cancel_delay_s, {"type": "canceled"}))
        end, rest = min(ends, key=lambda e: e[0])
        if all(r is not None for r in self.results):
            self.ended_at = self.due(len(self.requests) - 1)
        elif now >= end:
            self.results = [rest if r is None else r for r in self.results]
            self.ended_at = end

    def _process(self, i: int, at: float, cache: PromptCache) -> dict[str, Any]:
        custom_id, params = self.requests[i]
        rule = next((r for r in self.settings.fail if r.selects(i, len(self.requests), custom_id)), None)
        if rule is not None:
            return rule.outcome()
        try:
            validate_request(params)
            message = build_message(params, json.dumps(params).encode(), cache=cache, now=at, service_tier="batch")
        except ApiError as err:
            return {"type": "errored", "error": err.payload()}
        return {"type": "succeeded", "message": message}

    @property
    def status(self) -> str:
        return "ended" if self.ended_at is not None else "in_progress" if self.cancel_at is None else "canceling"

    def as_json(self, base_url: str) -> dict[str, Any]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if self.ended_at is None:
            counts["processing"] = len(self.requests)  # the others stay 0 until the whole batch ends, as in the API
        else:
            for result in self.results:
                counts[str((result or {}).get("type"))] += 1
        ended = self.ended_at is not None
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.status,
            "request_counts": counts,
            "ended_at": _rfc3339(self.ended_at),
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.expires_at),
            "archived_at": None,
            "cancel_initiated_at": _rfc3339(self.cancel_at),
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if ended else None,
        }

    def jsonl(self) -> bytes:
        pairs = zip(self.requests, self.results, strict=True)
        return "".join(json.dumps({"custom_id": custom_id, "result": result}) + "\n" for (custom_id, _), result in pairs).encode()


class _Batches:
    """Every batch made in the stand-in's life (``reset`` keeps them), newest last."""

    def __init__(self, clock: Callable[[], float], cache: PromptCache):
        self._lock = threading.Lock()
        self._clock, self._cache = clock, cache
        self._batches: dict[str, _Batch] = {}
        self._made = 0

    def create(self, requests: list[tuple[str, dict[str, Any]]], raw: bytes, settings: BatchSettings) -> _Batch:
        with self._lock:
            self._made += 1
            batch_id = "msgbatch_" + hashlib.sha256(f"{self._made}:".encode() + raw).hexdigest()[:24]
            batch = self._batches[batch_id] = _Batch(batch_id, requests, self._clock(), settings)
            batch.advance(self._clock(), self._cache)
            return batch

    def get(self, batch_id: str) -> _Batch:
        """The batch, advanced to now; a 404 as the API's when there is none (or it was deleted)."""
        with self._lock:
            return self._get(batch_id)

    def _get(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, "not_found_error", f"message_batch_id: no message batch {batch_id!r}")
        batch.advance(self._clock(), self._cache)
        return batch

    def page(self, after_id: str | None, before_id: str | None, limit: int) -> tuple[list[_Batch], bool]:
        """A page of batches, newest first, after (older than) or before (newer than) a cursor."""
        with self._lock:
            newest_first = list(reversed(self._batches))
            for name, cursor in (("after_id", after_id), ("before_id", before_id)):
                if cursor is not None and cursor not in self._batches:
                    raise _invalid(f"{name}: no message batch {cursor!r}")
            if before_id is not None:
                end = newest_first.index(before_id)
                ids, more = newest_first[max(0, end - limit):end], end - limit > 0
            else:
                start = 0 if after_id is None else newest_first.index(after_id) + 1
                ids, more = newest_first[start:start + limit], start + limit < len(newest_first)
            return [self._get(batch_id) for batch_id in ids], more

    def cancel(self, batch_id: str) -> _Batch:
        with self._lock:
            batch = self._get(batch_id)
            if batch.status == "ended":
                raise _invalid(f"message_batch_id: batch {batch_id!r} has ended and can no longer be canceled")
            if batch.cancel_at is None:
                batch.cancel_at = self._clock()
                batch.advance(batch.cancel_at, self._cache)
            return batch

    def delete(self, batch_id: str) -> None:
        with self._lock:
            batch = self._get(batch_id)
            if batch.status != "ended":
                raise _invalid(f"message_batch_id: batch {batch_id!r} is still {batch.status}; cancel it, and delete it once it has ended")
            del self._batches[batch_id]

    def results(self, batch_id: str) -> bytes:
        with self._lock:
            batch = self._get(batch_id)
            if batch.status != "ended":
                raise _invalid(f"message_batch_id: batch {batch_id!r} is still {batch.status}; results are ready once it has ended")
            return batch.jsonl()


# ---------------------------------------------------------------------------------------------
# Behaviour state (shared by the Python and HTTP controls)
# ---------------------------------------------------------------------------------------------

class _State:
    """Injected behaviour and request counters, guarded by one lock since handlers run in threads."""

    def __init__(self, latency_s: float, batch: BatchSettings | None = None, clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self._default_latency_s = _non_negative(latency_s, "latency_s")
        self._default_batch = batch or BatchSettings()
        self.clock = clock  # wall-clock seconds: prompt-cache ttls, batch timing and timestamps
        self.cache = PromptCache()
        self.reset()

    def reset(self) -> None:
        self.cache.clear()
        with self._lock:
            self.latency_s, self.hang_s = self._default_latency_s, 0.0
            self.batch = self._default_batch
            self.batches_created = 0
            self.batch_requests: dict[str, int] = {}  # batch id → its number of requests
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

    def set_batch(self, delay_s: Any = None, cancel_delay_s: Any = None, fail: Any = None) -> None:
        """Settings for batches created from now on; None leaves one unchanged, ``fail=[]`` drops the rules."""
        delay_s = None if delay_s is None else _non_negative(delay_s, "batch.delay_s")
        cancel_delay_s = None if cancel_delay_s is None else _non_negative(cancel_delay_s, "batch.cancel_delay_s")
        if fail is not None and not isinstance(fail, list):
            raise ValueError("batch.fail: must be a list of rules or null")
        rules = None if fail is None else tuple(BatchFailRule.parse(rule, f"batch.fail.{i}") for i, rule in enumerate(fail))
        with self._lock:
            old = self.batch
            self.batch = BatchSettings(
                old.delay_s if delay_s is None else delay_s,
                old.cancel_delay_s if cancel_delay_s is None else cancel_delay_s,
                old.fail if rules is None else rules,
            )

    def batch_settings(self) -> BatchSettings:
        with self._lock:
            return self.batch

    def batch_created(self, batch_id: str, requests: int) -> None:
        with self._lock:
            self.batches_created += 1
            self.batch_requests[batch_id] = requests

    def apply_control(self, control: Any) -> None:
        """The HTTP control body: only the keys present change; null clears ``fail`` and ``hang_s``."""
        if not isinstance(control, dict):
            raise ValueError("control: must be a JSON object")
        unknown = set(control) - {"latency_s", "fail", "hang_s", "batch"}
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
        if "batch" in control:
            batch = control["batch"]
            if not isinstance(batch, dict):
                raise ValueError("batch: must be an object")
            unknown = set(batch) - {"delay_s", "cancel_delay_s", "fail"}
            if unknown:
                raise ValueError(f"batch: unknown keys {sorted(unknown)}")
            rules = [] if "fail" in batch and batch["fail"] is None else batch.get("fail")
            self.set_batch(batch.get("delay_s"), batch.get("cancel_delay_s"), rules)

    def config(self) -> dict[str, Any]:
        with self._lock:
            fail: dict[str, Any] | None = None
            if self.fail_status and not self._failure_over():
                fail = {"status": self.fail_status, "times": self.fail_remaining}
                if self.fail_until is not None:
                    fail["for_s"] = round(max(0.0, self.fail_until - time.monotonic()), 3)
                if self.fail_retry_after is not None:
                    fail["retry_after"] = self.fail_retry_after
            return {"latency_s": self.latency_s, "fail": fail, "hang_s": self.hang_s or None, "batch": self.batch.as_dict()}

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
            return {
                "requests": self.requests, "by_status": dict(self.by_status), "last_request": copy.deepcopy(self.last_request),
                "batches": {"created": self.batches_created, "requests": dict(self.batch_requests)},
            }


def _non_negative(value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: must be a non-negative number")
    return float(value)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _State, batches: _Batches):
        super().__init__(address, _Handler)
        self.state, self.batches = state, batches
        self.stopping = threading.Event()


# /v1/messages/batches, /v1/messages/batches/{id}, /v1/messages/batches/{id}/results or .../cancel
_BATCH_PATH = re.compile(r"/v1/messages/batches(?:/(?P<id>[^/]+)(?:/(?P<action>results|cancel))?)?/?")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and the CLI read stats, not access logs."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_standin/stats":
            self._send(200, self.server.state.stats())
        elif _BATCH_PATH.fullmatch(path):
            self._batch_call("GET", b"")
        else:
            self._send_error(ApiError(404, "not_found_error", f"{self.path}: not found"))

    def do_DELETE(self) -> None:
        if _BATCH_PATH.fullmatch(urlsplit(self.path).path):
            self._batch_call("DELETE", b"")
        else:
            self._send_error(ApiError(404, "not_found_error", f"{self.path}: not found"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("content-length") or 0)
        if path == "/v1/messages/batches" and length > BATCH_MAX_BYTES:
            # Refused on its declared size, unread, as the API does; the unread body ends the connection.
            self.close_connection = True
            message = f"Request exceeds the maximum allowed number of bytes ({BATCH_MAX_BYTES} for a message batch)."
            self._send_error(ApiError(413, "request_too_large", message, {"connection": "close"}))
            return
        raw = self.rfile.read(length)
        if path == "/v1/messages":
            self._messages(raw)
        elif _BATCH_PATH.fullmatch(path):
            self._batch_call("POST", raw)
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
        self._send(status, payload, {"request-id": _request_id(raw), **headers})

    def _answer(self, body: Any, raw: bytes) -> dict[str, Any]:
        self._authenticate()
        failure = self.server.state.take_failure()
        if failure:
            raise failure
        if body is None:
            raise _invalid("request body: not valid JSON")
        validate_request(body)
        state = self.server.state
        return build_message(body, raw, cache=state.cache, now=state.clock())

    def _authenticate(self) -> None:
        if not (self.headers.get("x-api-key") or self.headers.get("authorization", "").lower().startswith("bearer ")):
            raise ApiError(401, "authentication_error", "x-api-key header is required")

    # --- Message Batches ---------------------------------------------------------------------

    def _batch_call(self, method: str, raw: bytes) -> None:
        request_id = {"request-id": _request_id(f"{method} {self.path} {time.time_ns()}".encode())}
        try:
            self._authenticate()
            self._batch_route(method, raw, request_id)
        except ApiError as err:
            self._send(err.status, err.payload(), {**request_id, **err.headers})

    def _batch_route(self, method: str, raw: bytes, headers: dict[str, str]) -> None:
        url = urlsplit(self.path)
        match = _BATCH_PATH.fullmatch(url.path)
        assert match is not None
        batch_id, action = match.group("id"), match.group("action")
        batches, base_url = self.server.batches, self._base_url()
        if batch_id is None and method == "POST":
            self._send(200, self._create_batch(raw).as_json(base_url), headers)
        elif batch_id is None and method == "GET":
            self._send(200, self._list_batches(url.query), headers)
        elif action is None and method == "GET":
            self._send(200, batches.get(batch_id).as_json(base_url), headers)
        elif action is None and method == "DELETE":
            batches.delete(batch_id)
            self._send(200, {"id": batch_id, "type": "message_batch_deleted"}, headers)
        elif action == "cancel" and method == "POST":
            self._send(200, batches.cancel(batch_id).as_json(base_url), headers)
        elif action == "results" and method == "GET":
            self._send_bytes(200, batches.results(batch_id), "application/binary", headers)
        else:
            raise ApiError(405, "invalid_request_error", f"{method} {url.path}: method not allowed")

    def _create_batch(self, raw: bytes) -> _Batch:
        body = _json_or_none(raw)
        if body is None:
            raise _invalid("request body: not valid JSON")
        requests = validate_batch(body)
        state = self.server.state
        batch = self.server.batches.create(requests, raw, state.batch_settings())
        state.batch_created(batch.id, len(requests))
        return batch

    def _list_batches(self, query: str) -> dict[str, Any]:
        params = {name: values[-1] for name, values in parse_qs(query).items()}
        limit_text = params.get("limit", "20")
        if not re.fullmatch(r"\d+", limit_text) or not 1 <= int(limit_text) <= 1000:
            raise _invalid("limit: Input should be an integer from 1 to 1000")
        if params.get("after_id") and params.get("before_id"):
            raise _invalid("after_id, before_id: give at most one of them")
        page, has_more = self.server.batches.page(params.get("after_id"), params.get("before_id"), int(limit_text))
        data = [batch.as_json(self._base_url()) for batch in page]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def _base_url(self) -> str:
        """This server as the client reached it, so ``results_url`` leads the SDK back here."""
        host = self.headers.get("host") or f"{self.server.server_address[0]!s}:{self.server.server_port}"
        return f"http://{host}"

    # --- sending -------------------------------------------------------------------------------

    def _wait(self, seconds: float) -> bool:
        """Sleep, but wake at once when the server stops; False means it is stopping."""
        return not (seconds and self.server.stopping.wait(seconds))

    def _send_error(self, err: ApiError) -> None:
        self._send(err.status, err.payload(), err.headers)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)


def _request_id(seed: bytes) -> str:
    return "req_" + hashlib.sha256(seed).hexdigest()[:24]


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


class ClaudeStandIn:
    """The stand-in server: ``start()`` it (or use ``with``), point the SDK at ``base_url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        batch_delay_s: float = 1.0,
        batch_cancel_delay_s: float = 0.2,
        clock: Callable[[], float] = time.time,
    ):
        """``clock`` (wall-clock seconds, ``time.time`` by default) times prompt-cache ttls, batch
        processing and batch timestamps: a test can pass a fake one and move it instead of sleeping."""
        self._address = (host, port)
        settings = BatchSettings(_non_negative(batch_delay_s, "batch_delay_s"), _non_negative(batch_cancel_delay_s, "batch_cancel_delay_s"))
        self._state = _State(latency_s, settings, clock)
        self._batches = _Batches(clock, self._state.cache)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ClaudeStandIn:
        """Bind and serve in a background daemon thread; returns self for chaining."""
        if self._server is None:
            self._server = _Server(self._address, self._state, self._batches)
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
        batch_delay_s: float | None = None,
        batch_cancel_delay_s: float | None = None,
        batch_fail: list[dict[str, Any]] | None = None,
    ) -> None:
        """Change behaviour; arguments left as None are unchanged.

        ``fail_status`` (429, 529 or 500) fails the next ``fail_times`` message requests, or all of
        them until ``reset()`` when ``fail_times`` is None; with ``fail_for_s``, only for that many
        seconds from now (a rate-limit storm), then it answers again. ``retry_after`` sets the failures'
        ``retry-after`` header (a 429's is 1 otherwise). ``hang_s=0`` ends a hang.

        ``batch_delay_s`` and ``batch_cancel_delay_s`` time batches created from now on (see
        :class:`BatchSettings`); ``batch_fail`` is a list of :class:`BatchFailRule` dicts, e.g.
        ``[{"custom_id": "^bad", "error_type": "invalid_request_error"}, {"index": 2, "result": "expired"},
        {"fraction": 0.5}]``, the first rule that selects a request deciding it; ``[]`` drops them.
        """
        if (fail_times is not None or fail_for_s is not None or retry_after is not None) and fail_status is None:
            raise ValueError("fail_times, fail_for_s and retry_after need fail_status")
        if latency_s is not None:
            self._state.set_latency(latency_s)
        if fail_status is not None:
            self._state.set_fail(fail_status, fail_times, fail_for_s, retry_after)
        if hang_s is not None:
            self._state.set_hang(hang_s)
        if batch_delay_s is not None or batch_cancel_delay_s is not None or batch_fail is not None:
            self._state.set_batch(batch_delay_s, batch_cancel_delay_s, batch_fail)

    def reset(self) -> None:
        """Back to the constructor's latency and batch settings, no failures, no hang, an empty prompt
        cache and zeroed stats. Batches made so far stay (they live as long as the stand-in)."""
        self._state.reset()

    def stats(self) -> dict[str, Any]:
        """``requests``, ``by_status`` (status as a string → count) and ``last_request`` (parsed body) of
        ``/v1/messages`` calls, and ``batches``: ``created`` (a count) and ``requests`` (batch id → its size)."""
        return self._state.stats()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Offline stand-in for the Anthropic Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before every answer")
    parser.add_argument("--batch-delay", type=float, default=1.0, help="seconds a message batch takes to process")
    args = parser.parse_args(argv)
    with ClaudeStandIn(host=args.host, port=args.port, latency_s=args.latency, batch_delay_s=args.batch_delay) as standin:
        print(standin.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
