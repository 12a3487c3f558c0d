"""What a task is: a profile for the router, a validator for its input, and a run over the model port."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from jobcore.model import Usage
from jobcore.ports import LanguageModel
from jobcore.routing import TaskProfile


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """What a running task may use: the model port, the default model and how wide to fan out."""

    llm: LanguageModel
    model_id: str
    concurrency: int = 8
    call_timeout_s: float | None = None


@dataclass(frozen=True)
class TaskResult:
    output: dict[str, Any]
    usage: Usage


class Task(Protocol):
    name: str
    description: str
    profile: TaskProfile

    def validate(self, payload: Any) -> dict[str, Any]:
        """The input, checked and normalised; InvalidInputError naming the field otherwise."""

    def expected_duration_s(self, payload: dict[str, Any]) -> float:
        """How long this input should take, for routing (the profile's figure scaled to the input)."""

    def run(self, payload: dict[str, Any], ctx: RunContext) -> TaskResult: ...


def usage_of(response: dict[str, Any]) -> Usage:
    usage = response.get("usage") or {}
    return Usage(int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)), 1)


def text_of(response: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in response.get("content", []) if block.get("type") == "text")


def call(ctx: RunContext, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.llm.create(params, timeout_s=ctx.call_timeout_s)
