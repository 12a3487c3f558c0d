"""Amazon Bedrock's runtime API for Anthropic models, as the stand-in answers it (``POST /model/{id}/invoke``).

The body is the Messages API's as Bedrock takes it: ``anthropic_version: bedrock-2023-05-31`` and no
``model`` (it is in the path: a foundation model id or an inference profile id). A request must be SigV4
signed (the signature is not checked: moto's credentials are fake); errors come in Bedrock's shape,
``{"message": ...}`` with the ``x-amzn-ErrorType`` header.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from local.standin.api import ApiError

INVOKE_PATH = re.compile(r"/model/(?P<model>[^/]+)/invoke")
BEDROCK_VERSION = "bedrock-2023-05-31"
# anthropic.claude-sonnet-4-5-20250929-v1:0, or from Sonnet 4.6 on without date and version
# (anthropic.claude-sonnet-4-6), optionally behind a profile scope: us., eu., apac., global. ...
_MODEL = re.compile(r"^(?:(?P<scope>global|us|eu|apac|jp|au)\.)?anthropic\.(?P<name>claude-[a-z0-9-]+?)(?:-\d{8})?(?:-v\d+(?::\d+)?)?$")
# The stand-in's failure statuses in Bedrock's words (Bedrock has no 529: an overloaded model is a 503).
_ERRORS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
           429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException"}


def bedrock_error(status: int, message: str) -> ApiError:
    status = 503 if status == 529 else status
    return BedrockError(status, _ERRORS.get(status, "InternalServerException"), message)


class BedrockError(ApiError):
    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, error_type, message, {"x-amzn-errortype": error_type, **(headers or {})})

    def payload(self) -> dict[str, Any]:
        return {"message": self.message}


def as_bedrock(error: ApiError) -> ApiError:
    """An error raised in the Messages API's shape, answered in Bedrock's."""
    if isinstance(error, BedrockError):
        return error
    converted = bedrock_error(error.status, error.message)
    converted.headers.update({k: v for k, v in error.headers.items() if k == "retry-after"})
    return converted


def authenticate(headers: Any) -> None:
    if not (headers.get("authorization") or "").startswith("AWS4-HMAC-SHA256 Credential="):
        raise bedrock_error(403, "Missing Authentication Token: the request must be SigV4-signed")


def messages_body(path_model: str, body: Any) -> dict[str, Any]:
    """The Messages API body this invocation stands for (``model``: the Anthropic id the path names)."""
    model = unquote(path_model)
    match = _MODEL.fullmatch(model)
    if match is None:
        raise bedrock_error(400, f"The provided model identifier is invalid: {model}")
    if not isinstance(body, dict):
        raise bedrock_error(400, "Malformed input request: the body must be a JSON object")
    if body.get("anthropic_version") != BEDROCK_VERSION:
        raise bedrock_error(400, f"Malformed input request: anthropic_version must be {BEDROCK_VERSION!r}")
    if "model" in body:
        raise bedrock_error(400, "Malformed input request: extraneous key [model] is not permitted")
    rest = {k: v for k, v in body.items() if k != "anthropic_version"}
    return {"model": match.group("name"), **rest}
