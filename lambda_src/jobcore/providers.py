"""Model providers: who answers the deployment's Claude calls, in order of preference.

``anthropic``: the Anthropic API (a key from Secrets Manager). ``bedrock``: Amazon Bedrock, through an
inference profile (``global``, or a geography's: ``us``, ``eu``) of the model, with the role's own IAM
credentials. One provider, or an ordered list to fail over along (jobcore.failover). The parsers here are
the config's (stacks/config.py, at synth) and the settings' (jobadapters.settings, at start).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from jobcore.pricing import BedrockProfile, ClaudePrices

ANTHROPIC = "anthropic"
BEDROCK = "bedrock"
PROVIDERS = (ANTHROPIC, BEDROCK)
DEFAULT_PROVIDERS = (ANTHROPIC,)
# The profile scopes this build knows; the price file says which exist for which model and where.
BEDROCK_SCOPES = ("global", "us", "eu")
DEFAULT_BEDROCK_SCOPE = "global"


def parse_providers(value: Any) -> tuple[str, ...]:
    """An ordered, non-empty list of distinct known providers; ValueError saying what is wrong."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"must be a non-empty list of providers from {list(PROVIDERS)}, e.g. [\"anthropic\", \"bedrock\"]")
    unknown = [name for name in value if name not in PROVIDERS]
    if unknown:
        raise ValueError(f"unknown provider(s) {unknown}: the providers are {list(PROVIDERS)}")
    if len(set(value)) != len(value):
        raise ValueError(f"{list(value)} names a provider twice")
    return tuple(value)


def parse_scope(value: Any) -> str:
    if value not in BEDROCK_SCOPES:
        raise ValueError(f"must be one of {list(BEDROCK_SCOPES)} (an inference profile's scope), not {value!r}")
    return str(value)


def bedrock_profiles(claude: ClaudePrices, model_ids: Iterable[str], scope: str, region: str | None) -> list[BedrockProfile]:
    """The profiles the deployment's models use on Bedrock, checked to exist in the price file's table and to
    be callable from ``region`` (None: not known yet, e.g. an environment-agnostic synth); ValueError otherwise."""
    profiles = []
    for model_id in dict.fromkeys(model_ids):
        profile = claude.bedrock_profile(model_id, scope)
        if region is not None and region not in profile.sources:
            raise ValueError(
                f"model {model_id!r} has no {scope!r} inference profile callable from {region} on Amazon Bedrock "
                f"({profile.id} is callable from {', '.join(profile.sources)}): deploy to one of those Regions "
                "or choose another bedrock_profile")
        profiles.append(profile)
    return profiles


def batch_allowed(providers: Sequence[str]) -> bool:
    """The batch lane is the Anthropic Message Batches API: it needs Anthropic among the providers."""
    return ANTHROPIC in providers
