"""Prompt caching, counted as the API counts it: cached prefixes, their ttls, reads and writes."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass
from typing import Any

from local.standin.api import invalid
from local.standin.prompt import CHARS_PER_TOKEN, block_text

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
        blocks += [_prompt_block("system", b, len(block_text(b)) + (1 if i else 0), f"system.{i}") for i, b in enumerate(items)]
    for m, message in enumerate(body["messages"]):
        content, role = message["content"], message["role"]
        if isinstance(content, str):
            blocks.append(_prompt_block(role, {"type": "text", "text": content}, len(content), f"messages.{m}.content"))
        else:
            path = f"messages.{m}.content"
            blocks += [_prompt_block(role, b, len(block_text(b)) + (1 if i else 0), f"{path}.{i}") for i, b in enumerate(content)]
    top = _cache_ttl(body, "cache_control")
    if top and blocks and blocks[-1].ttl is None:
        blocks[-1] = PromptBlock(blocks[-1].key, blocks[-1].chars, top)
    ttls = [b.ttl for b in blocks if b.ttl]
    if len(ttls) > MAX_CACHE_BREAKPOINTS:
        raise invalid(f"cache_control: A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {len(ttls)}.")
    if "5m" in ttls and "1h" in ttls[ttls.index("5m"):]:
        raise invalid("cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' one")
    return blocks


def _prompt_block(kind: str, block: dict[str, Any], chars: int, path: str) -> PromptBlock:
    canonical = {"kind": kind, "block": {k: v for k, v in block.items() if k != "cache_control"}}
    return PromptBlock(json.dumps(canonical, sort_keys=True), chars, _cache_ttl(block, path + ".cache_control"))


def _cache_ttl(holder: dict[str, Any], path: str) -> str | None:
    control = holder.get("cache_control")
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise invalid(f"{path}.type: Input should be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl not in CACHE_TTLS:
        raise invalid(f"{path}.ttl: Input should be '5m' or '1h'")
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
        keys, tokens = _prefixes(model, blocks)
        minimum = min_cacheable_tokens(model)
        with self._lock:
            read_at = self._read_at(keys, breakpoints, now)
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

    def reads(self, model: str, blocks: list[PromptBlock], now: float) -> int:
        """The tokens :meth:`use` would read at ``now``, changing nothing: rate limits count a request's
        input before its answer is built, and cache reads are not counted."""
        breakpoints = [i for i, block in enumerate(blocks) if block.ttl]
        if not breakpoints:
            return 0
        keys, tokens = _prefixes(model, blocks)
        with self._lock:
            read_at = self._read_at(keys, breakpoints, now)
        return tokens[read_at] if read_at >= 0 else 0

    def _read_at(self, keys: list[str], breakpoints: list[int], now: float) -> int:
        """The last block of the longest cached prefix a breakpoint reaches back to, or -1 (the lock is held)."""
        self._entries = {key: entry for key, entry in self._entries.items() if entry[0] > now}
        read_at = -1
        for b in breakpoints:
            hit = next((j for j in range(b, max(b - CACHE_LOOKBACK_BLOCKS, -1), -1) if keys[j] in self._entries), -1)
            read_at = max(read_at, hit)
        return read_at


def _prefixes(model: str, blocks: list[PromptBlock]) -> tuple[list[str], list[int]]:
    """Each prefix's key (a running hash, per model) and its tokens, block by block."""
    running, keys, tokens, chars = hashlib.sha256(model.encode()), [], [], 0
    for block in blocks:
        running.update(block.key.encode() + b"\n")
        chars += block.chars
        keys.append(running.hexdigest())
        tokens.append(math.ceil(chars / CHARS_PER_TOKEN))
    return keys, tokens
