"""Prompt caching: when a task marks the stable prefix of its requests, by one rule.

The Messages API reads a request as tools, then system, then messages, and caches the prefix up to a
block marked ``cache_control: {"type": "ephemeral"}`` (the 5-minute TTL). A later request with the same
prefix reads it at a tenth of the input price; writing it costs 1.25× (``prices.json``,
``claude.prompt_caching``). The rule every task follows:

- Mark only a prefix that is the same for many requests: tool definitions, a system prompt, shared
  instructions; never the per-request part (the invoice, the document).
- Mark it only when it is at least the model's minimum cacheable length (``min_cacheable_tokens`` per
  model in ``prices.json``: 1,024 tokens for Sonnet 4.5, 4,096 for Opus 4.5 and Haiku 4.5). A shorter
  marked prefix is not an error, it is silently not cached, so marking it would only mislead. A prefix is
  never padded to reach the minimum: padding costs tokens on every request.
- Length is estimated at :data:`CHARS_PER_TOKEN` characters a token over the prefix's text (tool
  definitions as compact JSON), without a tokenizer or an API call.
- At most :data:`MAX_BREAKPOINTS` markers in one request (the API refuses more): a task marks one;
  ``claude.messages`` passes the client's own markers through and refuses a request with more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from jobcore.pricing import Prices, default_prices

CHARS_PER_TOKEN = 4  # English text and JSON average about 4 characters a token
MAX_BREAKPOINTS = 4  # cache_control markers the Messages API accepts in one request
EPHEMERAL: Mapping[str, str] = {"type": "ephemeral"}


def estimate_tokens(*parts: Any) -> int:
    """About how many tokens ``parts`` are: text as it is, anything else (a tool definition) as compact JSON."""
    chars = sum(len(part) if isinstance(part, str) else len(json.dumps(part, ensure_ascii=False, separators=(",", ":")))
                for part in parts)
    return chars // CHARS_PER_TOKEN


def min_cacheable_tokens(model_id: str | None, prices: Prices | None = None) -> int:
    """The model's minimum cacheable prefix (an unknown model: the default model's, as it is priced)."""
    rates, _ = (prices or default_prices()).claude.for_model(model_id)
    return rates.min_cacheable_tokens


def cacheable(blocks: Sequence[Any], model_id: str | None, minimum: int | Prices | None = None) -> bool:
    """Whether a prefix made of ``blocks`` (tool definitions, system text) is long enough for ``model_id`` to
    cache. ``minimum``: the floor in tokens, or the prices to read it from (default: the packaged file)."""
    floor = minimum if isinstance(minimum, int) else min_cacheable_tokens(model_id, minimum)
    return estimate_tokens(*blocks) >= floor


def cached_system(system: str, model_id: str | None, *, tools: Sequence[Any] = (),
                  minimum: int | Prices | None = None) -> str | list[dict[str, Any]]:
    """A request's system prompt, marked for caching when the request's stable prefix (its ``tools`` and this
    system prompt) is long enough; otherwise the text unchanged. One marker, on the system block: it caches
    the tools before it too."""
    if not cacheable([*tools, system], model_id, minimum):
        return system
    return [{"type": "text", "text": system, "cache_control": dict(EPHEMERAL)}]


def breakpoints(params: Mapping[str, Any]) -> int:
    """How many ``cache_control`` markers a Messages request carries: top level (automatic caching), tools,
    system blocks and message content blocks."""
    blocks: list[Any] = list(params.get("tools") or [])
    if isinstance(params.get("system"), list):
        blocks += params["system"]
    for message in params.get("messages") or []:
        if isinstance(message, Mapping) and isinstance(message.get("content"), list):
            blocks += message["content"]
    marked = sum(1 for block in blocks if isinstance(block, Mapping) and block.get("cache_control") is not None)
    return marked + (params.get("cache_control") is not None)
