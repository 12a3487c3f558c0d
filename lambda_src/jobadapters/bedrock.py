"""LanguageModel over Amazon Bedrock, through the anthropic SDK's own Bedrock client (``AnthropicBedrock``).

The request is the Messages API's, as for the Anthropic API: the client moves the model into the path
(``POST /model/{id}/invoke``), adds ``anthropic_version`` and signs with SigV4 from botocore's credential
chain (the Lambda's or the task's role; locally moto's fake keys). The model id a task names is mapped to the
deployment's inference profile (jobcore.pricing's table); errors map onto the domain's as the Anthropic API's do.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from jobadapters.claude import translate

# The body's version as Bedrock's documentation gives it for Anthropic models. Set explicitly: this SDK's
# client fills in its own API version (a date) only where the body has none.
BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"


class BedrockModel:
    """One ``AnthropicBedrock`` client, built on first use. ``profiles``: Anthropic model id → profile id."""

    def __init__(self, *, region: str, profiles: Mapping[str, str], base_url: str | None = None,
                 timeout_s: float = 600.0, max_retries: int = 2):
        self._region = region
        self._profiles = dict(profiles)
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._client: Any = None
        self._lock = threading.Lock()

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        model_id = str(params.get("model", ""))
        profile = self._profiles.get(model_id)
        if profile is None:
            from jobcore.errors import ModelRequestError

            raise ModelRequestError(f"model {model_id!r} is not available on this deployment's Amazon Bedrock provider")
        try:
            extra_body = {**(params.get("extra_body") or {}), "anthropic_version": BEDROCK_ANTHROPIC_VERSION}
            message = self._current_client().messages.create(**{**params, "model": profile, "extra_body": extra_body},
                                                              timeout=timeout_s or self._timeout_s)
        except Exception as error:  # noqa: BLE001 - the SDK's errors become the domain's
            translated = translate(error)
            if translated is error:
                raise
            raise translated from error
        return message.model_dump(mode="json", exclude_none=True)

    def _current_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import anthropic

                self._client = anthropic.AnthropicBedrock(
                    aws_region=self._region, base_url=self._base_url, timeout=self._timeout_s, max_retries=self._max_retries)
            return self._client
