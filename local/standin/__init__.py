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
``retry-after`` header, then answers again; ``{"fail": null}`` ends a failure; ``{"release": true}`` ends the
hangs and latencies of the calls waiting now (each answers at once; later calls wait as configured). Batches made from
then on follow ``{"batch": {"delay_s": 2, "cancel_delay_s": 0.5, "fail": [rule, ...]}}``, where a
rule picks requests by one of ``"custom_id"`` (a regex), ``"index"`` (0-based) or ``"fraction"``
and makes them ``"result": "errored"`` (the default, with ``"error_type"``, default
``overloaded_error``, and optional ``"message"``) or ``"expired"``; ``{"batch": {"fail": null}}``
drops the rules. The stats add ``batches``: ``{"created": n, "requests": {batch_id: size}}``.

Rate-limit mode (:mod:`local.standin.limits`; ``limits=ModelLimits(rpm=120, itpm=40000)``, ``--model-limits
rpm=120,itpm=40000,otpm=8000`` or the control body ``{"limits": {"rpm": 120, "itpm": 40000}}``, ``null``
turns it off): RPM, ITPM and OTPM token buckets refilled continuously, counted as Anthropic counts them, a
429 ``rate_limit_error`` with ``retry-after`` when one lacks room, the ``anthropic-ratelimit-*`` headers on
every answer; the stats' ``limits`` give what was admitted and refused, second by second.

    with ClaudeStandIn() as standin:
        client = anthropic.Anthropic(api_key="x", base_url=standin.base_url)

CLI: ``python -m local.claude_standin --port 8081 --latency 0.2 --batch-delay 1`` serves until Ctrl-C.

One module per concern: ``prompt`` (validation, text, tokens), ``cache`` (prompt caching), ``answers``
(the success answer; ``invoice`` is ``record_invoice``'s extractor), ``batches``, ``limits`` (the
rate-limit mode), ``control`` (injected behaviour and stats) and ``server`` (HTTP, :class:`ClaudeStandIn`).
"""

from local.standin.answers import EXTRACTORS, build_message, placeholder_input, summarize
from local.standin.api import ApiError
from local.standin.batches import BatchFailRule, BatchSettings
from local.standin.cache import PromptCache
from local.standin.control import FAIL_ERROR_TYPES
from local.standin.invoice import extract_invoice
from local.standin.limits import ModelLimits
from local.standin.prompt import count_tokens, validate_request
from local.standin.server import ClaudeStandIn, main

__all__ = [
    "EXTRACTORS", "FAIL_ERROR_TYPES", "ApiError", "BatchFailRule", "BatchSettings", "ClaudeStandIn", "ModelLimits", "PromptCache",
    "build_message", "count_tokens", "extract_invoice", "main", "placeholder_input", "summarize", "validate_request",
]
