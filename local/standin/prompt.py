"""A Messages request as the API reads it: validation (a 400 naming the field) and its text and tokens."""

from __future__ import annotations

import json
import math
from typing import Any

from local.standin.api import invalid

CHARS_PER_TOKEN = 4


def validate_request(body: Any) -> None:
    """Reject what the real API would reject, naming the field, so client bugs surface offline too."""
    if not isinstance(body, dict):
        raise invalid("request body: must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid("model: Field required (a non-empty string)")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid("max_tokens: Field required (a positive integer)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: Field required (a non-empty list)")
    for i, message in enumerate(messages):
        _validate_message(message, f"messages.{i}")
    if body.get("stream"):
        raise invalid("stream: streaming is not supported by the stand-in")
    _validate_tools(body)


def _validate_message(message: Any, path: str) -> None:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise invalid(f"{path}.role: Input should be 'user' or 'assistant'")
    content = message.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in content):
        raise invalid(f"{path}.content: Input should be a string or a list of content blocks")


def _validate_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
        raise invalid("tools: Input should be a list of tools, each with a name")
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] == "tool" and choice.get("name") not in {t["name"] for t in tools}:
        raise invalid(f"tool_choice.name: no tool named {choice.get('name')!r} in tools")
    if choice["type"] == "any" and not tools:
        raise invalid("tool_choice: 'any' needs at least one tool")


def block_text(block: dict[str, Any]) -> str:
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
        return "\n".join(block_text(b) for b in content if isinstance(b, dict))
    return ""


def last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body["messages"] if m["role"] == "user"]
    return content_text(users[-1]["content"]) if users else ""


def count_tokens(text: str) -> int:
    """Roughly what the real tokenizer says (~4 characters a token); never 0, as the API never is."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def prompt_tokens(body: dict[str, Any]) -> int:
    parts = [content_text(body.get("system", ""))]
    parts += [content_text(m["content"]) for m in body["messages"]]
    if body.get("tools"):
        parts.append(json.dumps(body["tools"], sort_keys=True))
    return count_tokens("".join(parts))
