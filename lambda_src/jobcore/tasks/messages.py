"""``claude.messages``: a Messages API request passed through, checked before it costs a call.

Everything the request carries is checked here, at submission, as far as the SDK and the API would
check it, so a job never fails later in a worker on a field it was allowed to send: the shapes of
``messages``, ``system``, ``stop_sequences``, ``tools``, ``tool_choice`` and ``metadata``, and the
model id's length. Sampling parameters (``temperature``, ``top_p``, ``top_k``) are refused: the pinned
``anthropic`` SDK's ``messages.create`` has no such arguments (it raises TypeError), and the current
Claude models (Opus 4.7 and later, the 5 family) answer 400 to them; older ones refused ``temperature``
together with ``top_p``. Use the model's defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jobcore.errors import InvalidInputError
from jobcore.limits import MAX_MODEL_ID_CHARS
from jobcore.routing import TaskProfile
from jobcore.tasks.base import ModelRequest
from jobcore.tasks.caching import MAX_BREAKPOINTS, breakpoints
from jobcore.validation import expect_object, get, in_range, quoted, reject_unknown

# Claude's output rate, used to turn max_tokens into an expected duration for routing.
_OUTPUT_TOKENS_PER_S = 60.0
_FIELDS = {"model", "system", "messages", "max_tokens", "stop_sequences", "tools", "tool_choice", "metadata", "cache_control"}
_CACHE_TTLS = ("5m", "1h")
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")
MAX_MESSAGES = 100_000  # the Messages API's own limit
MAX_STOP_SEQUENCES = 32  # ours: the API documents none
MAX_STOP_SEQUENCE_CHARS = 1_000  # ours
MAX_USER_ID_CHARS = 256  # the API's limit on metadata.user_id
_MODEL_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_MODEL_ID_CHARS}}}")  # printable ASCII, no space
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TOOL_CHOICES = {"auto": {"disable_parallel_tool_use"}, "any": {"disable_parallel_tool_use"},
                 "tool": {"name", "disable_parallel_tool_use"}, "none": set()}
_NO_SAMPLING = ("is not supported: the anthropic SDK this pipeline pins takes no sampling parameters, and current "
                "Claude models refuse them; leave it out (the model's default applies)")


class MessagesTask:
    """The spec; :class:`MessagesExecutor` runs it."""

    name = "claude.messages"
    description = "One Claude Messages API request, passed through; the response is the result."
    profile = TaskProfile(
        expected_duration_s=8.0, memory_mb=256, typical_input_tokens=1_000, typical_output_tokens=500,
        timeout_s=600.0,
    )
    executor = "jobcore.tasks.messages:MessagesExecutor"
    # The input as a JSON Schema (the API description's; :meth:`validate` is the authority: it also checks
    # that text is not blank, tool_choice names a tool, and at most four cache breakpoints).
    input_schema: dict[str, Any] = {
        "type": "object", "additionalProperties": False, "required": ["max_tokens", "messages"],
        "description": "A Messages API request (without sampling parameters); the job's model is the default.",
        "properties": {
            "model": {"type": "string", "pattern": rf"^[\x21-\x7e]{{1,{MAX_MODEL_ID_CHARS}}}$"},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 128_000},
            "messages": {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES, "items": {
                "type": "object", "additionalProperties": False, "required": ["role", "content"],
                "properties": {
                    "role": {"enum": ["user", "assistant"]},
                    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/$defs/content_block"}}]},
                },
            }},
            "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["type", "text"],
                "properties": {"type": {"const": "text"}, "text": {"type": "string"},
                               "cache_control": {"$ref": "#/$defs/cache_control"}, "citations": {}},
            }}]},
            "stop_sequences": {"type": "array", "maxItems": MAX_STOP_SEQUENCES,
                               "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_SEQUENCE_CHARS}},
            "tools": {"type": "array", "items": {"anyOf": [
                {"type": "object", "required": ["name", "input_schema"], "description": "A client tool",
                 "properties": {"name": {"$ref": "#/$defs/tool_name"}, "type": {"const": "custom"},
                                "description": {"type": "string"},
                                "input_schema": {"type": "object", "required": ["type"], "properties": {"type": {"const": "object"}}},
                                "cache_control": {"$ref": "#/$defs/cache_control"}}},
                {"type": "object", "required": ["name", "type"], "description": "One of Anthropic's server tools",
                 "properties": {"name": {"$ref": "#/$defs/tool_name"},
                                "type": {"type": "string", "minLength": 1, "not": {"const": "custom"}},
                                "cache_control": {"$ref": "#/$defs/cache_control"}}},
            ]}},
            "tool_choice": {"type": "object", "required": ["type"], "properties": {
                "type": {"enum": list(_TOOL_CHOICES)}, "name": {"type": "string"},
                "disable_parallel_tool_use": {"type": "boolean"},
            }},
            "metadata": {"type": "object", "additionalProperties": False,
                         "properties": {"user_id": {"type": "string", "maxLength": MAX_USER_ID_CHARS}}},
            "cache_control": {"$ref": "#/$defs/cache_control"},
        },
        "$defs": {
            "tool_name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
            "cache_control": {"type": "object", "additionalProperties": False, "required": ["type"],
                              "properties": {"type": {"const": "ephemeral"}, "ttl": {"enum": list(_CACHE_TTLS)}}},
            "content_block": {"type": "object", "required": ["type"], "properties": {
                "type": {"type": "string", "minLength": 1}, "text": {"type": "string"},
                "cache_control": {"$ref": "#/$defs/cache_control"},
            }},
        },
    }

    def validate(self, payload: Any) -> dict[str, Any]:
        body = expect_object(payload, "input")
        for name in SAMPLING_FIELDS:
            if name in body:
                raise InvalidInputError(f"input.{name}", _NO_SAMPLING)
        reject_unknown(body, _FIELDS, "input")
        model = get(body, "model", str, "input", required=False)
        if model is not None and not _MODEL_ID.fullmatch(model):
            raise InvalidInputError("input.model", f"must be a model id: 1 to {MAX_MODEL_ID_CHARS} printable ASCII characters")
        in_range(get(body, "max_tokens", int, "input"), "input.max_tokens", 1, 128_000)
        _messages(get(body, "messages", list, "input"))
        _system(body.get("system"))
        _stop_sequences(body.get("stop_sequences"))
        _tool_choice(body.get("tool_choice"), _tools(body.get("tools")))
        _metadata(body.get("metadata"))
        _cache_breakpoints(body)
        return {key: value for key, value in body.items() if value is not None}  # null means "not given"

    def expected_duration_s(self, payload: dict[str, Any]) -> float:
        return round(1.0 + payload["max_tokens"] / _OUTPUT_TOKENS_PER_S, 1)


def _messages(messages: list[Any]) -> None:
    if not messages:
        raise InvalidInputError("input.messages", "must not be empty")
    if len(messages) > MAX_MESSAGES:
        raise InvalidInputError("input.messages", f"must hold at most {MAX_MESSAGES:,} messages, not {len(messages):,}")
    for i, message in enumerate(messages):
        path = f"input.messages[{i}]"
        expect_object(message, path)
        reject_unknown(message, {"role", "content"}, path)
        role = get(message, "role", str, path)
        if role not in {"user", "assistant"}:
            raise InvalidInputError(f"{path}.role", "must be 'user' or 'assistant'")
        # The API lets only a final assistant message (a prefill) be empty, and never end in whitespace.
        prefill = role == "assistant" and i == len(messages) - 1
        content = message.get("content")
        if isinstance(content, str):
            _text(content, f"{path}.content", prefill=prefill)
        elif isinstance(content, list):
            if not content and not prefill:
                raise InvalidInputError(f"{path}.content", "must not be empty")
            for j, block in enumerate(content):
                _content_block(block, f"{path}.content[{j}]", prefill=prefill and j == len(content) - 1)
        else:
            raise InvalidInputError(f"{path}.content", "must be a string or a list of content blocks")


def _text(text: str, path: str, *, prefill: bool = False) -> None:
    if prefill:
        if text != text.rstrip():
            raise InvalidInputError(path, "must not end with whitespace (the final assistant message)")
    elif not text.strip():
        raise InvalidInputError(path, "must contain non-whitespace text")


def _content_block(block: Any, path: str, *, prefill: bool = False) -> None:
    expect_object(block, path)
    kind = get(block, "type", str, path)
    if not kind:
        raise InvalidInputError(f"{path}.type", "must name the block's type")
    if kind == "text":
        _text(get(block, "text", str, path), f"{path}.text", prefill=prefill)
    _cache_control(block.get("cache_control"), f"{path}.cache_control")


def _system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise InvalidInputError("input.system", "must be a string or a list of text blocks")
    for i, block in enumerate(system):
        path = f"input.system[{i}]"
        expect_object(block, path)
        reject_unknown(block, {"type", "text", "cache_control", "citations"}, path)
        if get(block, "type", str, path) != "text":
            raise InvalidInputError(f"{path}.type", "must be 'text'")
        _text(get(block, "text", str, path), f"{path}.text")
        _cache_control(block.get("cache_control"), f"{path}.cache_control")


def _stop_sequences(sequences: Any) -> None:
    if sequences is None:
        return
    if not isinstance(sequences, list):
        raise InvalidInputError("input.stop_sequences", "must be a list of strings")
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise InvalidInputError("input.stop_sequences", f"must hold at most {MAX_STOP_SEQUENCES} sequences, not {len(sequences):,}")
    for i, sequence in enumerate(sequences):
        path = f"input.stop_sequences[{i}]"
        if not isinstance(sequence, str):
            raise InvalidInputError(path, "must be a string")
        if not sequence.strip():
            raise InvalidInputError(path, "must contain non-whitespace text")
        if len(sequence) > MAX_STOP_SEQUENCE_CHARS:
            raise InvalidInputError(path, f"must be at most {MAX_STOP_SEQUENCE_CHARS:,} characters")


def _tools(tools: Any) -> set[str]:
    """The tools' names, each tool's shape checked: a name; a custom tool's ``input_schema`` an object schema."""
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise InvalidInputError("input.tools", "must be a list of tools")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        path = f"input.tools[{i}]"
        expect_object(tool, path)
        name = get(tool, "name", str, path)
        if not _TOOL_NAME.fullmatch(name):
            raise InvalidInputError(f"{path}.name", "must be 1 to 128 letters, digits, '_' or '-'")
        if name in names:
            raise InvalidInputError(f"{path}.name", f"repeats the tool name {quoted(name)}")
        names.add(name)
        kind = get(tool, "type", str, path, required=False, default="custom")
        if kind == "custom":  # a client tool; the others are Anthropic's server tools, each its own shape
            schema = get(tool, "input_schema", dict, path)
            if schema.get("type") != "object":
                raise InvalidInputError(f"{path}.input_schema.type", "must be 'object'")
            get(tool, "description", str, path, required=False)
        elif not kind:
            raise InvalidInputError(f"{path}.type", "must name the tool's type")
        _cache_control(tool.get("cache_control"), f"{path}.cache_control")
    return names


def _tool_choice(choice: Any, tools: set[str]) -> None:
    if choice is None:
        return
    path = "input.tool_choice"
    expect_object(choice, path)
    kind = get(choice, "type", str, path)
    if kind not in _TOOL_CHOICES:
        raise InvalidInputError(f"{path}.type", f"must be one of {', '.join(_TOOL_CHOICES)}")
    reject_unknown(choice, {"type"} | _TOOL_CHOICES[kind], path)
    get(choice, "disable_parallel_tool_use", bool, path, required=False)
    if kind == "tool" and get(choice, "name", str, path) not in tools:
        raise InvalidInputError(f"{path}.name", f"names no tool of input.tools: {quoted(choice['name'])}")
    if kind == "any" and not tools:
        raise InvalidInputError(path, "'any' needs at least one tool in input.tools")


def _cache_control(marker: Any, path: str) -> None:
    """A client's own cache breakpoint, passed through: ``{"type": "ephemeral"}``, optionally ``"ttl": "5m"|"1h"``."""
    if marker is None:
        return
    expect_object(marker, path)
    reject_unknown(marker, {"type", "ttl"}, path)
    if get(marker, "type", str, path) != "ephemeral":
        raise InvalidInputError(f"{path}.type", "must be 'ephemeral'")
    ttl = get(marker, "ttl", str, path, required=False)
    if ttl is not None and ttl not in _CACHE_TTLS:
        raise InvalidInputError(f"{path}.ttl", f"must be one of {', '.join(_CACHE_TTLS)}")


def _cache_breakpoints(body: dict[str, Any]) -> None:
    """The client's cache markers (top level, tools, system, message blocks): at most the API's four."""
    _cache_control(body.get("cache_control"), "input.cache_control")
    count = breakpoints(body)
    if count > MAX_BREAKPOINTS:
        raise InvalidInputError("input", f"has {count} cache_control breakpoints; the Messages API takes at most {MAX_BREAKPOINTS}")


def _metadata(metadata: Any) -> None:
    if metadata is None:
        return
    expect_object(metadata, "input.metadata")
    reject_unknown(metadata, {"user_id"}, "input.metadata")
    user_id = get(metadata, "user_id", str, "input.metadata", required=False)
    if user_id is not None and len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidInputError("input.metadata.user_id", f"must be at most {MAX_USER_ID_CHARS} characters")


class MessagesExecutor:
    def requests(self, payload: dict[str, Any], *, model_id: str) -> list[ModelRequest]:
        return [ModelRequest("message", {"model": model_id, **payload})]

    def assemble(self, payload: dict[str, Any], responses: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        response = responses["message"]
        return {key: response.get(key) for key in ("id", "model", "content", "stop_reason", "usage")}

