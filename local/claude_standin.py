"""The Claude stand-in's import path and CLI (``python -m local.claude_standin``); the code is :mod:`local.standin`."""

from local.standin import (
    EXTRACTORS,
    FAIL_ERROR_TYPES,
    ApiError,
    BatchFailRule,
    BatchSettings,
    ClaudeStandIn,
    ModelLimits,
    PromptCache,
    build_message,
    count_tokens,
    extract_invoice,
    main,
    placeholder_input,
    summarize,
    validate_request,
)

__all__ = [
    "EXTRACTORS", "FAIL_ERROR_TYPES", "ApiError", "BatchFailRule", "BatchSettings", "ClaudeStandIn", "ModelLimits", "PromptCache",
    "build_message", "count_tokens", "extract_invoice", "main", "placeholder_input", "summarize", "validate_request",
]

if __name__ == "__main__":
    main()
