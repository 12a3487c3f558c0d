"""The success answer to a validated request: a pure function of its body (and the prompt cache)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

from local.standin.cache import PromptCache, prompt_blocks
from local.standin.invoice import extract_invoice
from local.standin.prompt import CHARS_PER_TOKEN, count_tokens, last_user_text, prompt_tokens

_SUMMARY_WORDS = 40
# Tool name → function from the last user message's text to that tool's input.
EXTRACTORS: dict[str, Callable[[str], dict[str, Any]]] = {"record_invoice": extract_invoice}


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
        content, stop_reason, output = _tool_reply(tool, last_user_text(body), digest)
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
        "input_tokens": prompt_tokens(body) - read - creation,
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
    text = summarize(last_user_text(body))
    limit = body["max_tokens"] * CHARS_PER_TOKEN
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
