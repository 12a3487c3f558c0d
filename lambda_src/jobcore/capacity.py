"""Model capacity: the rate limits of a model family, the shared budget that paces every call, and its arithmetic.

Anthropic limits an organisation per model family in requests, input tokens and output tokens per minute
(RPM, ITPM, OTPM), each a token bucket replenished continuously up to the per-minute limit. This module is
that bucket as pure functions over a :class:`SharedBucket` (the state every process shares, kept by a
:class:`jobcore.ports.CapacityStore`), plus what feeds it: the configured :class:`RateLimits`, the
:class:`Amount` a call is expected to use (:func:`estimate_demand`), the correction an answer's
``anthropic-ratelimit-*`` headers carry (:func:`report_from_headers`), and the tenants' weights and caps
(:class:`TenantShare`). The scheduling of waiting calls is :mod:`jobcore.capacity_pacer`. docs/capacity.md
explains the design.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

_T = TypeVar("_T")
DIMENSIONS = ("requests", "input_tokens", "output_tokens")
PHRASES = {"requests": "requests", "input_tokens": "input tokens", "output_tokens": "output tokens"}
# The configuration key whose limits apply to every model family not named.
ANY_FAMILY = "*"
# Characters per token of the estimate made before a call (the real count settles it afterwards).
CHARS_PER_TOKEN = 4
# Per-tenant usage kept in the shared bucket decays with this half-life: "recent" use, for fair shares.
USAGE_HALF_LIFE_MS = 30_000
# A tenant whose decayed use is below this fraction of a minute's budget has stopped: it leaves the record.
USAGE_FORGET = 1e-4
# The most tenants the shared item remembers (the item must stay small: it is written on every lease).
MAX_TENANTS_TRACKED = 64
_HEADER_DIMENSIONS = {"requests": "requests", "input-tokens": "input_tokens", "output-tokens": "output_tokens"}
# A dimension a budget does not limit (a Bedrock budget's output tokens: its tokens per minute count them): a minute's
# worth that no burst spends.
UNLIMITED_PER_MINUTE = 10**9
# Bedrock counts each output token of Claude 3.7 Sonnet and later this many times toward its tokens-per-minute quota
# (AWS's "token burndown rate"; the price is per token, unchanged).
BEDROCK_OUTPUT_BURNDOWN = 5


class CapacityConfigError(ValueError):
    """A capacity setting is malformed; the message names it."""


@dataclass(frozen=True)
class Amount:
    """A quantity in each dimension of the budget: a call's demand, a bucket's level, a lease's slice."""

    requests: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0

    def values(self) -> tuple[float, float, float]:
        return (self.requests, self.input_tokens, self.output_tokens)

    @classmethod
    def of(cls, values: tuple[float, ...] | list[float]) -> Amount:
        return cls(*values)

    def __add__(self, other: Amount) -> Amount:
        return Amount.of([a + b for a, b in zip(self.values(), other.values(), strict=True)])

    def __sub__(self, other: Amount) -> Amount:
        return Amount.of([a - b for a, b in zip(self.values(), other.values(), strict=True)])

    def scaled(self, factor: float) -> Amount:
        return Amount.of([a * factor for a in self.values()])

    def clipped(self, low: Amount, high: Amount) -> Amount:
        return Amount.of([min(max(a, lo), hi) for a, lo, hi in zip(self.values(), low.values(), high.values(), strict=True)])

    def covers(self, other: Amount) -> bool:
        """At least ``other`` in every dimension (a millionth of a token of rounding forgiven)."""
        return all(a >= b - 1e-6 for a, b in zip(self.values(), other.values(), strict=True))

    def positive(self) -> Amount:
        return Amount.of([max(0.0, a) for a in self.values()])

    @property
    def empty(self) -> bool:
        return all(a <= 1e-9 for a in self.values())

    def to_dict(self) -> dict[str, float]:
        return {name: round(value, 3) for name, value in zip(DIMENSIONS, self.values(), strict=True)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Amount:
        return cls.of([float(data.get(name, 0)) for name in DIMENSIONS])


@dataclass(frozen=True)
class RateLimits:
    """One model family's limits per minute: the bucket's capacity in each dimension, refilled at that rate."""

    rpm: int
    itpm: int
    otpm: int

    @property
    def capacity(self) -> Amount:
        return Amount(self.rpm, self.itpm, self.otpm)

    @property
    def per_ms(self) -> Amount:
        return self.capacity.scaled(1 / 60_000)

    def cost(self, demand: Amount) -> float:
        """``demand`` as the fraction of a minute's budget it takes in its binding dimension: the unit in which
        tenants' shares are compared (a call heavy in input tokens costs what its input tokens cost)."""
        return max(d / c for d, c in zip(demand.values(), self.capacity.values(), strict=True))

    def to_dict(self) -> dict[str, int]:
        return {"rpm": self.rpm, "itpm": self.itpm, "otpm": self.otpm}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RateLimits:
        data = _object(data, where, ("rpm", "itpm", "otpm"))
        values = []
        for key in ("rpm", "itpm", "otpm"):
            value = data.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CapacityConfigError(f"{where}.{key}: must be a positive integer (per minute), not {value!r}")
            values.append(value)
        return cls(*values)


@dataclass(frozen=True)
class BedrockLimits:
    """One model family's Bedrock quotas per minute, for the deployment's Region and inference profile scope: tokens,
    input and output together with each output token counted ``output_burndown`` times (Bedrock reserves the input
    and ``max_tokens`` at the start and settles with the real count), and requests if the account has such a quota.
    Paced as a budget whose input dimension is those tokens (:meth:`as_rate_limits`, :meth:`demand`, :meth:`use`)."""

    tpm: int
    rpm: int | None = None
    output_burndown: int = BEDROCK_OUTPUT_BURNDOWN

    def as_rate_limits(self) -> RateLimits:
        return RateLimits(self.rpm or UNLIMITED_PER_MINUTE, self.tpm, UNLIMITED_PER_MINUTE)

    def tokens(self, input_tokens: float, output_tokens: float) -> float:
        return input_tokens + self.output_burndown * output_tokens

    def demand(self, params: Mapping[str, Any]) -> Amount:
        """A call's demand as Bedrock reserves it: one request, its input and ``max_tokens`` burned down."""
        anthropic = estimate_demand(params)
        return Amount(1, self.tokens(anthropic.input_tokens, anthropic.output_tokens), 0)

    def use(self, response: Mapping[str, Any]) -> Amount:
        """What an answered call counted: its input (cache reads left out, as for Anthropic's limits) and its output."""
        anthropic = actual_use(response)
        return Amount(1, self.tokens(anthropic.input_tokens, anthropic.output_tokens), 0)

    def to_dict(self) -> dict[str, int]:
        return {"tpm": self.tpm, **({"rpm": self.rpm} if self.rpm else {}), "output_burndown": self.output_burndown}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> BedrockLimits:
        data = _object(data, where, ("tpm", "rpm", "output_burndown"))
        for key, required, top in (("tpm", True, None), ("rpm", False, None), ("output_burndown", False, 100)):
            value = data.get(key)
            if value is None and not required:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (top is not None and value > top):
                bound = f", at most {top}" if top else " (per minute)"
                raise CapacityConfigError(f"{where}.{key}: must be a positive integer{bound}, not {value!r}")
        return cls(data["tpm"], data.get("rpm"), data.get("output_burndown", BEDROCK_OUTPUT_BURNDOWN))


def parse_bedrock_limits(data: Any, where: str = "bedrock_rate_limits") -> dict[str, BedrockLimits]:
    """``{"<model family>": {"tpm": .., "rpm": .., "output_burndown": ..}}`` (``"*"``: every other family), validated."""
    return _table(data, where, what="model families, e.g. {\"sonnet-4\": {\"tpm\": 200000}}",
                  key_ok=lambda k: k == ANY_FAMILY or bool(re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,63}", k)),
                  key_hint="a model family (e.g. 'sonnet-4', 'haiku-3.5', or '*')", parse=BedrockLimits.from_dict)


def parse_rate_limits(data: Any, where: str = "model_rate_limits") -> dict[str, RateLimits]:
    """``{"<model family>": {"rpm": .., "itpm": .., "otpm": ..}}`` (``"*"``: every other family), validated."""
    return _table(data, where, what="model families, e.g. {\"sonnet-4\": {\"rpm\": 50, ...}}",
                  key_ok=lambda k: k == ANY_FAMILY or bool(re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,63}", k)),
                  key_hint="a model family (e.g. 'sonnet-4', 'haiku-3.5', or '*')", parse=RateLimits.from_dict)


def _object(data: Any, where: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """A configuration entry: an object with no key but ``keys``."""
    if not isinstance(data, Mapping):
        raise CapacityConfigError(f"{where}: must be an object with {', '.join(keys)}")
    unknown = set(data) - set(keys)
    if unknown:
        raise CapacityConfigError(f"{where}: unknown key(s) {sorted(unknown)}; the keys are {', '.join(keys)}")
    return data


def _table(data: Any, where: str, *, what: str, key_ok: Callable[[str], bool], key_hint: str,
           parse: Callable[[Any, str], _T]) -> dict[str, _T]:
    """A configuration object of named entries, each key checked and each value parsed (None: empty)."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise CapacityConfigError(f"{where}: must be an object of {what}")
    table = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key_ok(key):
            raise CapacityConfigError(f"{where}: {key!r} is not {key_hint}")
        table[key] = parse(value, f"{where}.{key}")
    return table


_FAMILY = re.compile(r"(opus|sonnet|haiku)")
_VERSION = re.compile(r"(?<![0-9])([0-9])(?:[-.]([0-9]))?(?![0-9])")


def model_family(model_id: str) -> str:
    """The family whose limits a model id counts against: ``claude-sonnet-4-5-20250929`` → ``sonnet-4``,
    ``claude-3-5-haiku-20241022`` → ``haiku-3.5``. Anthropic shares one limit among the 4.x models of a class
    and gives each 3.x version its own; a Bedrock id (``us.anthropic.claude-…``) names the same family. An id
    that names no class is its own family."""
    name = model_id.lower()
    kind = _FAMILY.search(name)
    if kind is None:
        return name
    dateless = re.sub(r"-?\d{8}.*$", "", name)  # the snapshot date, and Bedrock's "-v1:0" after it
    version = _VERSION.search(dateless)
    if version is None:
        return kind.group(1)
    major, minor = version.group(1), version.group(2)
    if int(major) >= 4 or minor is None:
        return f"{kind.group(1)}-{major}"
    return f"{kind.group(1)}-{major}.{minor}"


def limits_for(model_id: str, table: Mapping[str, _T]) -> tuple[str, _T] | None:
    """The family of ``model_id`` and its limits (the family's own, else ``"*"``'s); None: no limit configured."""
    family = model_family(model_id)
    limits = table.get(family) or table.get(ANY_FAMILY)
    return (family, limits) if limits is not None else None


# --- tenants' shares ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantShare:
    """A tenant's weight among those waiting for the model, and its caps (which hold only while others wait)."""

    weight: float = 1.0
    max_in_flight: int | None = None  # model calls of this tenant in flight at once, per process; and jobs per worker
    max_share: float = 1.0  # of the budget, in its recent use

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TenantShare:
        data = _object(data, where, ("weight", "max_in_flight", "max_share"))
        weight = data.get("weight", 1)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 < weight <= 1000:
            raise CapacityConfigError(f"{where}.weight: must be a number above 0, at most 1000, not {weight!r}")
        in_flight = data.get("max_in_flight")
        if in_flight is not None and (not isinstance(in_flight, int) or isinstance(in_flight, bool) or in_flight < 1):
            raise CapacityConfigError(f"{where}.max_in_flight: must be a positive integer, not {in_flight!r}")
        share = data.get("max_share", 1.0)
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share <= 1:
            raise CapacityConfigError(f"{where}.max_share: must be a fraction above 0, at most 1, not {share!r}")
        return cls(float(weight), in_flight, float(share))


def parse_tenant_shares(data: Any, where: str = "tenant_shares") -> dict[str, TenantShare]:
    """``{"<tenant>": {"weight": 3, "max_in_flight": 50, "max_share": 0.5}}`` (``"*"``: every other tenant)."""
    return _table(data, where, what="tenants", key_ok=lambda k: 0 < len(k) <= 128, key_hint="a tenant id",
                  parse=TenantShare.from_dict)


def share_of(tenant: str, shares: Mapping[str, TenantShare]) -> TenantShare:
    return shares.get(tenant) or shares.get(ANY_FAMILY) or TenantShare()


# The budget kept back from queued work: for inline calls, and for tenants below their fair share.
MAX_RESERVED_SHARE = 0.5


def parse_reserved_share(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= MAX_RESERVED_SHARE:
        raise CapacityConfigError(f"{where}: must be a fraction from 0 to {MAX_RESERVED_SHARE}, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class CapacityConfig:
    """The whole capacity configuration, as cdk.json gives it and the settings carry it."""

    admission: bool = True
    limits: Mapping[str, RateLimits] = field(default_factory=dict)  # Anthropic's, by model family
    tenants: Mapping[str, TenantShare] = field(default_factory=dict)
    inline_reserved_share: float = 0.1  # of each dimension, that only inline calls may take
    fair_reserve_share: float = 0.1  # of each dimension, that a tenant above its fair share may not take
    bedrock: Mapping[str, BedrockLimits] = field(default_factory=dict)  # Bedrock's, by model family

    @property
    def active(self) -> bool:
        return self.admission and bool(self.limits or self.bedrock)


# --- the shared bucket -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedBucket:
    """One model family's budget as every process sees it (the store keeps it; ``version`` guards each write).

    ``levels`` is what is left at ``at_ms`` in each dimension (negative: owed, when calls used more than they
    reserved); it refills at the limit's rate up to the limit. ``blocked_until_ms``: a 429's Retry-After, for
    every process. ``usage``: each tenant's recent use (:meth:`RateLimits.cost` units, decayed with
    USAGE_HALF_LIFE_MS to ``at_ms``), so that every process knows who is above its fair share.
    """

    levels: Amount
    at_ms: int
    blocked_until_ms: int = 0
    usage: Mapping[str, float] = field(default_factory=dict)
    limits: RateLimits | None = None  # as the API last reported them, when they differ from the configured ones
    version: int = 0

    @classmethod
    def full(cls, limits: RateLimits, now_ms: int) -> SharedBucket:
        return cls(limits.capacity, now_ms)

    def refilled(self, limits: RateLimits, now_ms: int) -> SharedBucket:
        """The bucket at ``now_ms``: refilled for the time since ``at_ms``, usage decayed (never back in time)."""
        if now_ms <= self.at_ms:
            return self
        elapsed = now_ms - self.at_ms
        levels = (self.levels + limits.per_ms.scaled(elapsed)).clipped(Amount(-math.inf, -math.inf, -math.inf), limits.capacity)
        decay = 0.5 ** (elapsed / USAGE_HALF_LIFE_MS)
        usage = {t: u * decay for t, u in self.usage.items() if u * decay >= USAGE_FORGET}
        return replace(self, levels=levels, at_ms=now_ms, usage=usage)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"levels": self.levels.to_dict(), "at_ms": self.at_ms, "blocked_until_ms": self.blocked_until_ms,
                                "usage": {t: round(u, 6) for t, u in self.usage.items()}, "version": self.version}
        if self.limits is not None:
            data["limits"] = self.limits.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SharedBucket:
        limits = data.get("limits")
        return cls(Amount.from_dict(data["levels"]), int(data["at_ms"]), int(data.get("blocked_until_ms") or 0),
                   {str(t): float(u) for t, u in (data.get("usage") or {}).items()},
                   RateLimits(**{k: int(v) for k, v in limits.items()}) if limits else None, int(data.get("version") or 0))


def effective_limits(configured: RateLimits, bucket: SharedBucket | None) -> RateLimits:
    """The limits to pace by: the ones the API reported last (an organisation's tier can change), else the configured."""
    return bucket.limits if bucket is not None and bucket.limits is not None else configured


@dataclass(frozen=True)
class Lease:
    """What one conditional write of the shared bucket decided: the slice taken (maybe nothing) and the bucket to write."""

    slice: Amount
    bucket: SharedBucket


def lease(bucket: SharedBucket, limits: RateLimits, *, want: Amount, need: Amount, floor: Amount, now_ms: int,
          used: Mapping[str, float] | None = None) -> Lease:
    """Take up to ``want`` from the bucket, keeping ``floor`` in it, all dimensions in proportion; nothing unless
    at least ``need`` (the next call's demand) fits. ``used``: the tenants' use since this process's last lease,
    added to the shared usage record. Nothing is taken while the bucket is blocked by a 429's Retry-After."""
    now = bucket.refilled(limits, now_ms)
    usage = dict(now.usage)
    for tenant, cost in (used or {}).items():
        usage[tenant] = usage.get(tenant, 0.0) + cost
    if len(usage) > MAX_TENANTS_TRACKED:
        usage = dict(sorted(usage.items(), key=lambda kv: -kv[1])[:MAX_TENANTS_TRACKED])
    now = replace(now, usage=usage)
    available = (now.levels - floor).positive()
    if now_ms < now.blocked_until_ms or not available.covers(need):
        return Lease(Amount(), now)
    fraction = min([1.0] + [a / w for a, w in zip(available.values(), want.values(), strict=True) if w > 0])
    taken = want.scaled(fraction)
    # The proportional slice may fall short of ``need`` in a dimension ``want`` is light in: take ``need`` then.
    taken = Amount.of([max(t, n) for t, n in zip(taken.values(), need.values(), strict=True)])
    return Lease(taken, replace(now, levels=now.levels - taken))


def give_back(bucket: SharedBucket, limits: RateLimits, amount: Amount, *, now_ms: int) -> SharedBucket:
    """The bucket with an unused slice (or a call's unused reservation) returned, never above the limit; a
    negative ``amount`` is a debt (a call used more than it reserved)."""
    now = bucket.refilled(limits, now_ms)
    return replace(now, levels=(now.levels + amount).clipped(Amount(-math.inf, -math.inf, -math.inf), limits.capacity))


def ready_at(bucket: SharedBucket, limits: RateLimits, *, need: Amount, floor: Amount, now_ms: int) -> tuple[int, str | None]:
    """When ``need`` fits above ``floor`` with no one else taking anything, and the dimension that binds then
    (None: it fits now, or a 429's Retry-After holds it back longer)."""
    now = bucket.refilled(limits, now_ms)
    wait_ms, binding = 0.0, None
    for name, level, n, f, rate in zip(DIMENSIONS, now.levels.values(), need.values(), floor.values(),
                                       limits.per_ms.values(), strict=True):
        short = n + f - level
        if short > 1e-6 and short / rate > wait_ms:
            wait_ms, binding = short / rate, name
    at = now_ms + math.ceil(wait_ms)
    if now.blocked_until_ms > at:
        return now.blocked_until_ms, None
    return at, binding


def clamp_demand(demand: Amount, limits: RateLimits, floor: Amount) -> Amount:
    """A demand no larger than what a full bucket above ``floor`` holds, so that every call can fit eventually
    (a ``max_tokens`` above the OTPM limit reserves the whole bucket, not more)."""
    return demand.clipped(Amount(), (limits.capacity - floor).positive())


# --- a call's demand, and the API's reports --------------------------------------------------------------


def estimate_demand(params: Mapping[str, Any], *, cached_prefix_tokens: int = 0) -> Amount:
    """What a Messages API call will count against the limits, before it is made: one request; its input
    tokens estimated from its text (CHARS_PER_TOKEN), less a cached prefix known to be read from the cache
    (cache reads do not count toward ITPM); ``max_tokens`` of output (OTPM reserves it at the start)."""
    chars = 0
    for part in ("system", "messages", "tools"):
        chars += _text_chars(params.get(part))
    input_tokens = max(1, math.ceil(chars / CHARS_PER_TOKEN) - cached_prefix_tokens)
    max_tokens = params.get("max_tokens")
    output = max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0 else 4096
    return Amount(1, input_tokens, output)


def _text_chars(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        if isinstance(value.get("text"), str):
            return len(value["text"])
        if isinstance(value.get("content"), (str, list)):
            return _text_chars(value["content"])
        return len(json.dumps(value, separators=(",", ":"), default=str))
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    return len(str(value))


def actual_use(response: Mapping[str, Any]) -> Amount:
    """What an answered call counted, as Anthropic counts it: the request, uncached input plus cache writes
    (cache reads are free of ITPM), output."""
    usage = response.get("usage") or {}
    return Amount(1, int(usage.get("input_tokens") or 0) + int(usage.get("cache_creation_input_tokens") or 0),
                  int(usage.get("output_tokens") or 0))


@dataclass(frozen=True)
class Report:
    """What an answer's ``anthropic-ratelimit-*`` headers (and a 429's ``retry-after``) say of the budget."""

    at_ms: int
    limits: RateLimits | None = None  # all three limits, when the headers gave all three
    remaining: Amount | None = None  # the API's levels (None where a dimension was not reported: infinite)
    retry_after_ms: int | None = None


def report_from_headers(headers: Mapping[str, str], *, now_ms: int) -> Report | None:
    """The budget as the API reported it in an answer's headers; None when they say nothing of it."""
    lower = {k.lower(): v for k, v in headers.items()}
    limit: dict[str, int] = {}
    remaining: dict[str, float] = {}
    for prefix, name in _HEADER_DIMENSIONS.items():
        value = _int(lower.get(f"anthropic-ratelimit-{prefix}-limit"))
        if value is not None and value > 0:
            limit[name] = value
        left = _int(lower.get(f"anthropic-ratelimit-{prefix}-remaining"))
        if left is not None:
            remaining[name] = float(max(0, left))
    retry_after = lower.get("retry-after")
    retry_after_ms = None
    try:
        if retry_after is not None:
            retry_after_ms = max(0, math.ceil(float(retry_after) * 1000))
    except ValueError:
        retry_after_ms = None
    if not limit and not remaining and retry_after_ms is None:
        return None
    limits = RateLimits(limit["requests"], limit["input_tokens"], limit["output_tokens"]) if len(limit) == 3 else None
    levels = Amount.of([remaining.get(name, math.inf) for name in DIMENSIONS]) if remaining else None
    return Report(now_ms, limits, levels, retry_after_ms)


def corrected(bucket: SharedBucket, configured: RateLimits, report: Report) -> SharedBucket:
    """The shared bucket after an answer's report: never more left than the API says (another client of the
    organisation may be spending it too), the API's limits adopted when they differ from the configured ones,
    and a 429's Retry-After blocking every process until then."""
    limits = report.limits if report.limits is not None else effective_limits(configured, bucket)
    now = bucket.refilled(limits, report.at_ms)
    levels = now.levels
    if report.remaining is not None:
        levels = Amount.of([min(a, r) for a, r in zip(levels.values(), report.remaining.values(), strict=True)])
    blocked = now.blocked_until_ms
    if report.retry_after_ms is not None:
        blocked = max(blocked, report.at_ms + report.retry_after_ms)
    adopted = report.limits if report.limits is not None and report.limits != configured else now.limits
    return replace(now, levels=levels, blocked_until_ms=blocked, limits=adopted)


def _int(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None

