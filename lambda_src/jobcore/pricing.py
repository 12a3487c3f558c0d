"""Prices: one dated data file (``prices.json``), read once, overridable by configuration.

Every figure the cost model multiplies by comes from that file, so a price change is a reviewed data
change in one place, and a deployment in another region (or with a negotiated discount) passes
overrides instead of editing code. Limits that decide whether a lane can run a job at all (Lambda's
900 s, Fargate's largest task) are not prices: they live in :mod:`jobcore.limits`.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from importlib import resources
from typing import Any

# Maps keyed by a name rather than by a field: overrides may add entries (a new model, an instance type).
_OPEN_MAPS = frozenset({("ec2", "instances"), ("claude", "models"), ("claude", "bedrock", "models")})


@dataclass(frozen=True, kw_only=True)
class LambdaPrices:
    request_per_million: float
    gb_second: Mapping[str, float]  # by architecture: "arm64", "x86_64"
    # Keeping the router warm (docs/deploy.md): provisioned concurrency, by architecture, and SnapStart (Python).
    provisioned_gb_second: Mapping[str, float] = field(default_factory=dict)
    provisioned_duration_gb_second: Mapping[str, float] = field(default_factory=dict)
    snapstart_cache_gb_second: float = 0.0
    snapstart_restore_gb: float = 0.0


@dataclass(frozen=True, kw_only=True)
class FargateRate:
    vcpu_hour: float
    gb_hour: float


@dataclass(frozen=True, kw_only=True)
class FargatePrices:
    rates: Mapping[str, FargateRate]  # by architecture
    spot_discount: float  # fraction off the x86_64 on-demand rate
    min_billed_s: float


@dataclass(frozen=True, kw_only=True)
class Instance:
    name: str
    hour: float
    vcpu: float
    memory_gib: float
    gpus: int = 0
    gpu_model: str | None = None


@dataclass(frozen=True, kw_only=True)
class Ec2Prices:
    instances: Mapping[str, Instance]
    min_billed_s: float


@dataclass(frozen=True, kw_only=True)
class TokenPrices:
    input_per_million: float
    output_per_million: float
    min_cacheable_tokens: int  # not a price: the shortest prefix the model caches (a shorter one is not cached)


@dataclass(frozen=True, kw_only=True)
class CachingPrices:
    """Prompt caching, as multipliers of the model's base input price."""

    write_5m_multiplier: float  # a cache write with the default 5-minute TTL
    write_1h_multiplier: float  # a cache write with the 1-hour TTL
    read_multiplier: float  # a cache hit


@dataclass(frozen=True, kw_only=True)
class BedrockProfile:
    """One inference profile of a model on Amazon Bedrock: its id, its prices, where it may be called from
    (``sources``) and where it routes calls (``destinations``; None: every commercial Region, a global profile)."""

    scope: str  # "global", "us", "eu": the profile id's prefix
    id: str
    model: str  # the foundation model it routes to
    input_per_million: float
    output_per_million: float
    sources: tuple[str, ...]
    destinations: tuple[str, ...] | None


@dataclass(frozen=True, kw_only=True)
class ClaudePrices:
    models: Mapping[str, TokenPrices]
    default_model: str
    batch_discount: float  # fraction off every token of a Message Batches request
    caching: CachingPrices
    # Anthropic model id → inference profile scope → the profile (jobadapters.claude's Bedrock client, the IAM
    # grant, the config's Region check and the price of a call Bedrock answered).
    bedrock: Mapping[str, Mapping[str, BedrockProfile]] = field(default_factory=dict)
    # Anthropic model id → the day Anthropic retires it (the API answers 404 from then on).
    end_of_life: Mapping[str, date] = field(default_factory=dict)

    def retired(self, model_id: str, today: date) -> str | None:
        """Why ``model_id`` can no longer be called on ``today`` (its end of life has come), or None."""
        day = self.end_of_life.get(model_id)
        if day is None or today < day:
            return None
        return (f"model {model_id!r} reached its end of life on {day.isoformat()} (Anthropic answers it 404 from then on); "
                f"use a current model such as {self.default_model!r}")

    def bedrock_profile(self, model_id: str, scope: str) -> BedrockProfile:
        """The model's profile of that scope; ValueError saying which exist when there is none."""
        profiles = self.bedrock.get(model_id)
        if profiles is None:
            raise ValueError(f"model {model_id!r} has no Amazon Bedrock inference profile in the price file "
                             f"(it has: {', '.join(sorted(self.bedrock)) or 'none'})")
        if scope not in profiles:
            raise ValueError(f"model {model_id!r} has no {scope!r} inference profile on Amazon Bedrock "
                             f"(it has: {', '.join(sorted(profiles))})")
        return profiles[scope]

    def rates(self, model_id: str | None, provider: str | None, bedrock_scope: str) -> TokenPrices:
        """What a call answered by ``provider`` costs per token: Bedrock's profile price for a model it lists,
        the Anthropic API's otherwise (an unknown model at the default model's)."""
        anthropic, _ = self.for_model(model_id)
        profile = self.bedrock.get(model_id or "", {}).get(bedrock_scope) if provider == "bedrock" else None
        if profile is None:
            return anthropic
        return replace(anthropic, input_per_million=profile.input_per_million, output_per_million=profile.output_per_million)

    def for_model(self, model_id: str | None) -> tuple[TokenPrices, bool]:
        """The model's prices and whether it was known; unknown models cost what the default costs."""
        if model_id is not None and model_id in self.models:
            return self.models[model_id], True
        return self.models[self.default_model], False


@dataclass(frozen=True, kw_only=True)
class RequestPrices:
    api_gateway_rest_per_million: float
    api_gateway_http_per_million: float
    sqs_per_million: float
    sqs_chunk_kb: int
    dynamodb_write_per_million: float
    dynamodb_read_per_million: float
    s3_put_per_thousand: float
    s3_get_per_thousand: float


@dataclass(frozen=True, kw_only=True)
class Prices:
    as_of: str
    region: str
    currency: str
    hours_per_month: float
    lambda_: LambdaPrices
    fargate: FargatePrices
    ec2: Ec2Prices
    claude: ClaudePrices
    requests: RequestPrices
    data: Mapping[str, Any] = field(repr=False, compare=False)  # the source, for with_overrides

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prices:
        """Prices from the file's shape; ValueError naming the first missing or malformed key."""
        root = _Reader(data, "")
        return cls(
            as_of=root.text("as_of"), region=root.text("region"), currency=root.text("currency"),
            hours_per_month=root.num("hours_per_month"),
            lambda_=_lambda(root.group("lambda")), fargate=_fargate(root.group("fargate")),
            ec2=_ec2(root.group("ec2")), claude=_claude(root.group("claude")), requests=_requests(root),
            data=copy.deepcopy(dict(data)),
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> Prices:
        """These prices with ``overrides`` deep-merged in; ValueError naming any key the file lacks."""
        return Prices.from_dict(_merge(self.data, overrides, ()))


@functools.cache
def default_prices() -> Prices:
    """The packaged price file, parsed once per process (the Lambda reuses it across invocations)."""
    text = resources.files("jobcore").joinpath("prices.json").read_text(encoding="utf-8")
    return Prices.from_dict(json.loads(text))


class _Reader:
    """Typed access to one group of the price file, with the dotted path for error messages."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"prices: {path or 'the file'} must be an object")
        self._data, self._path = data, path

    def _get(self, key: str) -> Any:
        if key not in self._data:
            raise ValueError(f"prices: missing {self._where(key)}")
        return self._data[key]

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def num(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"prices: {self._where(key)} must be a non-negative number, not {value!r}")
        return value

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise ValueError(f"prices: {self._where(key)} must be a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if key in self._data else None

    def is_list(self, key: str) -> bool:
        return isinstance(self._data.get(key), list)

    def regions(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"prices: {self._where(key)} must be a non-empty list of Region names")
        return tuple(value)

    def has(self, key: str) -> bool:
        return key in self._data

    def group(self, key: str) -> _Reader:
        return _Reader(self._get(key), self._where(key))

    def groups(self) -> Iterator[tuple[str, _Reader]]:
        return ((key, _Reader(value, self._where(key))) for key, value in self._data.items())


def _lambda(r: _Reader) -> LambdaPrices:
    def by_arch(key: str) -> dict[str, float]:
        group = r.group(key)
        return {arch: group.num(arch) for arch in ("arm64", "x86_64")}

    return LambdaPrices(
        request_per_million=r.num("request_per_million"),
        gb_second=by_arch("gb_second"),
        provisioned_gb_second=by_arch("provisioned_gb_second"),
        provisioned_duration_gb_second=by_arch("provisioned_duration_gb_second"),
        snapstart_cache_gb_second=r.num("snapstart_cache_gb_second"),
        snapstart_restore_gb=r.num("snapstart_restore_gb"),
    )


def _fargate(r: _Reader) -> FargatePrices:
    rates = {}
    for arch in ("x86_64", "arm64"):
        rate = r.group(arch)
        rates[arch] = FargateRate(vcpu_hour=rate.num("vcpu_hour"), gb_hour=rate.num("gb_hour"))
    discount = r.num("spot_discount")
    if discount >= 1:
        raise ValueError("prices: fargate.spot_discount is a fraction below 1")
    return FargatePrices(rates=rates, spot_discount=discount, min_billed_s=r.num("min_billed_s"))


def _ec2(r: _Reader) -> Ec2Prices:
    instances = {
        name: Instance(
            name=name, hour=spec.num("hour"), vcpu=spec.num("vcpu"), memory_gib=spec.num("memory_gib"),
            gpus=int(spec.num("gpus")), gpu_model=spec.optional_text("gpu_model"),
        )
        for name, spec in r.group("instances").groups()
    }
    return Ec2Prices(instances=instances, min_billed_s=r.num("min_billed_s"))


def _claude(r: _Reader) -> ClaudePrices:
    specs = dict(r.group("models").groups())
    default = r.text("default_model")
    if default not in specs:
        raise ValueError(f"prices: claude.default_model {default!r} is not in claude.models")
    # A model added by an override without its minimum cacheable length gets the default model's.
    default_minimum = int(specs[default].num("min_cacheable_tokens"))
    models = {
        name: TokenPrices(
            input_per_million=spec.num("input_per_million"), output_per_million=spec.num("output_per_million"),
            min_cacheable_tokens=int(spec.num("min_cacheable_tokens")) if spec.has("min_cacheable_tokens") else default_minimum,
        )
        for name, spec in specs.items()
    }
    retirements = {name: _day(spec.text("end_of_life"), f"claude.models.{name}.end_of_life")
                   for name, spec in specs.items() if spec.has("end_of_life")}
    if default in retirements:
        raise ValueError(f"prices: claude.default_model {default!r} has an end of life; the default must be a current model")
    discount = r.group("batch").num("discount")
    if discount >= 1:
        raise ValueError("prices: claude.batch.discount is a fraction below 1")
    cache = r.group("prompt_caching")
    caching = CachingPrices(write_5m_multiplier=cache.num("write_5m_multiplier"),
                            write_1h_multiplier=cache.num("write_1h_multiplier"), read_multiplier=cache.num("read_multiplier"))
    return ClaudePrices(models=models, default_model=default, batch_discount=discount, caching=caching,
                        bedrock=_bedrock(r.group("bedrock").group("models")) if r.has("bedrock") else {},
                        end_of_life=retirements)


def _day(text: str, where: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"prices: {where} = {text!r}: expected a date, YYYY-MM-DD") from None


def _bedrock(r: _Reader) -> dict[str, dict[str, BedrockProfile]]:
    table: dict[str, dict[str, BedrockProfile]] = {}
    for model_id, spec in r.groups():
        foundation = spec.text("model")
        table[model_id] = {}
        for scope, profile in spec.group("profiles").groups():
            destinations = profile.regions("destinations") if profile.is_list("destinations") else None
            table[model_id][scope] = BedrockProfile(
                scope=scope, id=profile.text("id"), model=foundation, input_per_million=profile.num("input_per_million"),
                output_per_million=profile.num("output_per_million"), sources=profile.regions("sources"),
                destinations=destinations)
            if not table[model_id][scope].id.startswith(f"{scope}.{foundation}"):
                raise ValueError(f"prices: claude.bedrock.models.{model_id}.profiles.{scope}.id must be '{scope}.{foundation}'")
    return table


def _requests(root: _Reader) -> RequestPrices:
    api, sqs, ddb, s3 = (root.group(k) for k in ("api_gateway", "sqs", "dynamodb", "s3"))
    return RequestPrices(
        api_gateway_rest_per_million=api.num("rest_request_per_million"),
        api_gateway_http_per_million=api.num("http_request_per_million"),
        sqs_per_million=sqs.num("request_per_million"), sqs_chunk_kb=int(sqs.num("chunk_kb")),
        dynamodb_write_per_million=ddb.num("write_request_per_million"),
        dynamodb_read_per_million=ddb.num("read_request_per_million"),
        s3_put_per_thousand=s3.num("put_per_thousand"), s3_get_per_thousand=s3.num("get_per_thousand"),
    )


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, key by key; a typo fails loudly instead of being ignored."""
    if not isinstance(overrides, Mapping):
        raise ValueError(f"price overrides: {'.'.join(path) or 'the overrides'} must be an object")
    merged = dict(base)
    for key, value in overrides.items():
        where = (*path, key)
        if key not in base and path not in _OPEN_MAPS:
            raise ValueError(f"price overrides: unknown key {'.'.join(where)!r}")
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merged[key] = _merge(base[key], value, where)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
