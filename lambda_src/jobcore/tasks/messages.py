"""``claude.messages``: a Messages API request passed through, checked before it costs a call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobcore.errors import InvalidInputError
from jobcore.routing import TaskProfile
from jobcore.tasks.base import ModelRequest
from jobcore.validation import expect_object, get, in_range, reject_unknown

# Claude's output rate, used to turn max_tokens into an expected duration for routing.
_OUTPUT_TOKENS_PER_S = 60.0
_FIELDS = {
    "model", "system", "messages", "max_tokens", "temperature", "top_p", "top_k",
    "stop_sequences", "tools", "tool_choice", "metadata",
}


class MessagesTask:
    """The spec; :class:`MessagesExecutor` runs it."""

    name = "claude.messages"
    description = "One Claude Messages API request, passed through; the response is the result."
    profile = TaskProfile(
        expected_duration_s=8.0, memory_mb=256, typical_input_tokens=1_000, typical_output_tokens=500,
        timeout_s=600.0,
    )
    executor = "jobcore.tasks.messages:MessagesExecutor"

    def validate(self, payload: Any) -> dict[str, Any]:
        body = expect_object(payload, "input")
        reject_unknown(body, _FIELDS, "input")
        get(body, "model", str, "input", required=False)
        in_range(get(body, "max_tokens", int, "input"), "input.max_tokens", 1, 128_000)
        messages = get(body, "messages", list, "input")
        if not messages:
            raise InvalidInputError("input.messages", "must not be empty")
        for i, message in enumerate(messages):
            path = f"input.messages[{i}]"
            expect_object(message, path)
            role = get(message, "role", str, path)
            if role not in {"user", "assistant"}:
                raise InvalidInputError(f"{path}.role", "must be 'user' or 'assistant'")
            if not isinstance(message.get("content"), (str, list)):
                raise InvalidInputError(f"{path}.content", "must be a string or a list of content blocks")
        temperature = get(body, "temperature", float, "input", required=False)
        if temperature is not None:
            in_range(temperature, "input.temperature", 0.0, 1.0)
        return body

    def expected_duration_s(self, payload: dict[str, Any]) -> float:
        return round(1.0 + payload["max_tokens"] / _OUTPUT_TOKENS_PER_S, 1)



class MessagesExecutor:
    def requests(self, payload: dict[str, Any], *, model_id: str) -> list[ModelRequest]:
        return [ModelRequest("message", {"model": model_id, **payload})]

    def assemble(self, payload: dict[str, Any], responses: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        response = responses["message"]
        return {key: response.get(key) for key in ("id", "model", "content", "stop_reason", "usage")}

