"""The router's concurrency budget: how many inline runs may hold a router execution at once.

An inline job holds its router execution for the whole model call (seconds); a job that is queued holds one for
a few writes (tens of ms). Inline work therefore uses up the router's concurrency long before queued work does,
and once the function is throttled API Gateway answers 429/5xx to every request, queued ones and GETs too. So the
router admits an inline run only while fewer than its budget's ``INLINE_SHARE`` are running inline; past that, the
job is queued instead (202, its reason says why), and the rest of the budget keeps serving the short requests.

The count is kept in the store (``jobcore.ports.InlineSlots``): a counter per shard and per window of time, so a
run whose execution died without giving its slot back is forgotten when the window turns (docs/scale.md says
why this and not an estimate from rates).
"""

from __future__ import annotations

import math

INLINE_SHARE = 0.9  # of the router's concurrency budget, for inline runs; the rest for the short requests
SLOT_WINDOW_S = 60  # a counter's window: past it a slot never given back no longer counts
SLOT_WRITES_PER_SHARD_S = 800  # writes a second one counter item takes, with headroom under a partition's 1,000
SLOT_WRITES_PER_RUN = 2  # one to take the slot, one to give it back
MIN_INLINE_S = 1.0  # the shortest inline run: it bounds the rate of slot writes a budget can cause


def inline_slots(router_concurrency: int) -> int:
    """How many inline runs a router budget of ``router_concurrency`` executions admits at once."""
    return max(1, math.floor(router_concurrency * INLINE_SHARE))


def slot_shards(slots: int) -> int:
    """Counter items for ``slots`` inline runs: enough that the fastest turnover (each run ``MIN_INLINE_S``)
    stays under ``SLOT_WRITES_PER_SHARD_S`` writes a second on each."""
    return max(1, math.ceil(slots / MIN_INLINE_S * SLOT_WRITES_PER_RUN / SLOT_WRITES_PER_SHARD_S))
