"""Failover between model providers: one :class:`~jobcore.ports.LanguageModel` over an ordered list of them.

Each call goes to the first provider whose breaker (jobcore.breaker) lets it through; a provider that refuses
it (overloaded, rate-limited, failing, unreachable, timed out) counts against its breaker and the call goes on to
the next. A request the provider rejects as malformed (jobcore.errors.ModelRequestError) is not retried
elsewhere: the other provider would reject it too. The answer names the provider that gave it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from jobcore.breaker import Breakers
from jobcore.errors import MODEL_DOWN_KINDS, CapacityWaitError, ModelUnavailableError
from jobcore.ports import LanguageModel

log = logging.getLogger(__name__)

# The refusals that say the provider, not the request, is the trouble.
PROVIDER_DOWN_KINDS = MODEL_DOWN_KINDS | {"timeout"}


class FailoverModel:
    """``providers``: (name, model) in order of preference. ``breakers``: None with one provider (nothing to
    fail over to: its refusals go to the runner as before), the shared breakers otherwise."""

    def __init__(self, providers: Sequence[tuple[str, LanguageModel]], breakers: Breakers | None):
        if not providers:
            raise ValueError("FailoverModel: at least one provider")
        self.providers = tuple(providers)
        self.breakers = breakers

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        refused: ModelUnavailableError | None = None
        retry_at: list[int] = []
        for name, model in self.providers:
            permit = None if self.breakers is None else self.breakers.permit(name)
            if permit is not None and not permit.allowed:
                if permit.retry_at is not None:
                    retry_at.append(permit.retry_at)
                continue
            try:
                answer = model.create(params, timeout_s=timeout_s)
            except ModelUnavailableError as error:
                if self.breakers is not None and error.kind in PROVIDER_DOWN_KINDS:
                    self.breakers.record_failure(name)
                    log.warning("model provider %s refused a call (%s); trying the next", name, error.describe())
                # A wait for this provider's capacity (the pacer's refusal) is what the runner must see if every
                # provider refuses: it re-queues the job without spending an attempt; another provider's outage
                # would count toward the model-wait limit instead.
                if refused is None or not isinstance(refused, CapacityWaitError):
                    refused = error
                continue
            if self.breakers is not None:
                self.breakers.record_success(name, probe=bool(permit and permit.probe))
            return {**answer, "provider": name}
        if refused is not None:
            raise refused
        # Every breaker open: the runner waits (a queued job is re-queued) until the first one half-opens.
        assert self.breakers is not None
        wait_s = max(0.0, (min(retry_at) - self.breakers.clock_ms()) / 1000) if retry_at else None
        raise ModelUnavailableError("every model provider is failing; trying again after a cool-down",
                                    retry_after_s=wait_s, kind="overloaded")
