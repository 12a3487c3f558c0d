"""LanguageModel over the anthropic SDK, and the one table that maps its errors onto the domain's.

The SDK is imported on first use: importing it costs about a second of CPU, which a cold router
answering ``GET /v1/jobs/{id}`` should not pay.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from jobcore.errors import ModelRequestError, ModelUnavailableError

log = logging.getLogger(__name__)
# The API's message about a refused request is passed on to the tenant, this long at most.
MAX_MESSAGE_CHARS = 300
# The offline stand-in accepts any key; the SDK insists on having one.
STANDIN_API_KEY = "local-standin"


# Who hears each answer's rate-limit headers (``anthropic-ratelimit-*``, a 429's ``retry-after``): the pacer
# (jobcore.capacity_pacer.Pacer.observe), with the model id the call named.
HeadersObserver = Callable[[str, Mapping[str, str]], None]


class AnthropicModel:
    """One SDK client, built lazily, rebuilt when the API key changes (secret rotation).

    With an ``observer`` (admission on), every answer's headers, a refusal's included, are handed to it: the raw
    response is read for them (``with_raw_response``), which costs nothing more than the parse the SDK does anyway.
    """

    def __init__(self, *, api_key: Callable[[], str | None], base_url: str | None = None, timeout_s: float = 600.0,
                 max_retries: int = 2, observer: HeadersObserver | None = None):
        self._api_key = api_key
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._observer = observer
        self._client: Any = None
        self._client_key: str | None = None
        self._lock = threading.Lock()

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        client = self._current_client()
        model_id = str(params.get("model", ""))
        try:
            if self._observer is None:
                message = client.messages.create(**params, timeout=timeout_s or self._timeout_s)
            else:
                raw = client.messages.with_raw_response.create(**params, timeout=timeout_s or self._timeout_s)
                self._observe(model_id, raw.headers)
                message = raw.parse()
        except Exception as error:  # noqa: BLE001 - the SDK's errors become the domain's
            response = getattr(error, "response", None)
            if response is not None:
                self._observe(model_id, response.headers)
            translated = translate(error)
            if translated is error:
                raise
            raise translated from error
        return message.model_dump(mode="json", exclude_none=True)

    def _observe(self, model_id: str, headers: Any) -> None:
        if self._observer is None:
            return
        try:
            self._observer(model_id, {k.lower(): v for k, v in headers.items()})
        except Exception:  # noqa: BLE001 - a correction that fails (the store is down) must not fail the answered call
            log.warning("the rate-limit headers of a %s answer could not be applied", model_id, exc_info=True)

    def _current_client(self) -> Any:
        key = self._api_key()
        with self._lock:
            if self._client is None or key != self._client_key:
                import anthropic

                self._client = anthropic.Anthropic(
                    api_key=key, base_url=self._base_url, timeout=self._timeout_s, max_retries=self._max_retries)
                self._client_key = key
            return self._client


def preload() -> None:
    """Import the SDK and the resources its first call loads, now (a worker at its start) rather than in the first
    calls: the router imports it lazily for its cold start, but in a worker the first burst of calls all waited behind
    one thread's import (5 to 10 s on two busy cores, the 32 callers competing for the interpreter lock)."""
    import anthropic.resources.messages  # noqa: F401 - imported for its side effect: loaded once, here


def translate(error: Exception) -> Exception:
    """The domain error for an SDK exception; anything else is returned unchanged.

    The domain error's message is ours, for the tenant; the SDK's own text (which can name hosts, request
    ids, our account's limits) is logged here and goes no further.
    """
    import anthropic

    if isinstance(error, (TypeError, ValueError)):
        # Raised by the SDK before sending: a malformed request, which no retry will fix.
        log.warning("the SDK refused the request: %s", error)
        return ModelRequestError("the request could not be sent to the model (malformed)")
    if isinstance(error, anthropic.APITimeoutError):
        log.warning("model call timed out: %s", error)
        return ModelUnavailableError("the model did not answer in time", kind="timeout")
    if isinstance(error, anthropic.APIConnectionError):
        log.warning("could not reach the model: %s", error)
        return ModelUnavailableError("could not reach the model", kind="unreachable")
    if not isinstance(error, anthropic.APIStatusError):
        return error
    status = error.status_code
    log.warning("model answered %s: %s", status, _message(error))
    if status == 429:
        return ModelUnavailableError("the model was rate-limited (429)", retry_after_s=_retry_after(error), status=status)
    if status == 529:
        return ModelUnavailableError("the model was overloaded (529)", retry_after_s=_retry_after(error), status=status)
    if status >= 500:
        return ModelUnavailableError(f"the model failed with a server error ({status})", retry_after_s=_retry_after(error),
                                     status=status)
    if status in (401, 403):
        return ModelRequestError(f"the service could not authenticate with the model ({status}); its operator can fix this")
    # The API's own words about the request (a bad parameter, too many tokens): the tenant's to fix.
    return ModelRequestError(f"the model refused the request ({status}): {_message(error)[:MAX_MESSAGE_CHARS]}")


def _message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        return str((body.get("error") or {}).get("message") or body)
    return str(error)


def _retry_after(error: Any) -> float | None:
    try:
        return float(error.response.headers.get("retry-after"))
    except (TypeError, ValueError, AttributeError):
        return None


def api_key_source(*, base_url: str | None, secret_arn: str | None, env: Mapping[str, str]) -> Callable[[], str | None]:
    """Where the key comes from: the stand-in, Secrets Manager (cached 5 min), or ANTHROPIC_API_KEY."""
    if base_url:
        return lambda: STANDIN_API_KEY
    if secret_arn:
        from aws_lambda_powertools.utilities import parameters

        return lambda: parameters.get_secret(secret_arn, max_age=300)
    return lambda: env.get("ANTHROPIC_API_KEY")

