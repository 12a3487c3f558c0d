"""Prompt caching: the one rule for marking a request's stable prefix, the tasks that follow it, the
cache counts read from a response, and the client's own markers in ``claude.messages``."""

from __future__ import annotations

import pytest

from jobcore.errors import InvalidInputError
from jobcore.model import Usage
from jobcore.pricing import default_prices
from jobcore.tasks.base import usage_of
from jobcore.tasks.caching import (
    CHARS_PER_TOKEN,
    MAX_BREAKPOINTS,
    breakpoints,
    cacheable,
    cached_system,
    estimate_tokens,
    min_cacheable_tokens,
)
from jobcore.tasks.invoice import InvoiceExecutor, InvoiceTask
from jobcore.tasks.messages import MessagesExecutor, MessagesTask
from jobcore.tasks.summarize import MAX_INSTRUCTIONS_CHARS, SummarizeExecutor, SummarizeTask
from jobcore.views import usage_view

SONNET, HAIKU = "claude-sonnet-4-5", "claude-haiku-4-5"
MARK = {"type": "ephemeral"}


def words(tokens: int) -> str:
    """Text of about ``tokens`` tokens by the 4-characters-a-token estimate."""
    return ("lorem ip " * tokens)[: tokens * CHARS_PER_TOKEN]


# -- the rule --------------------------------------------------------------------------------------

def test_a_prefix_is_cacheable_from_the_models_minimum_length():
    assert min_cacheable_tokens(SONNET) == 1024 and min_cacheable_tokens(HAIKU) == 4096
    assert min_cacheable_tokens("claude-unheard-of") == 1024  # priced, and cached, as the default model
    assert estimate_tokens(words(1024)) == 1024
    assert cacheable([words(1024)], SONNET) and not cacheable([words(1023)], SONNET)
    assert not cacheable([words(2000)], HAIKU)
    assert cacheable([words(600), {"name": "t", "input_schema": {"description": words(500)}}], SONNET)  # tools count
    assert cacheable([words(10)], SONNET, minimum=8) and not cacheable([words(10)], SONNET, minimum=default_prices())


def test_cached_system_marks_a_long_prefix_and_leaves_a_short_one_as_text():
    assert cached_system("Be brief.", SONNET) == "Be brief."
    long = words(1100)
    assert cached_system(long, SONNET) == [{"type": "text", "text": long, "cache_control": MARK}]
    assert cached_system(long, HAIKU) == long  # under Haiku 4.5's 4,096
    assert cached_system("Be brief.", SONNET, tools=[{"description": words(1100)}])[0]["cache_control"] == MARK


def test_breakpoints_counts_markers_everywhere_in_a_request():
    params = {
        "cache_control": MARK, "tools": [{"name": "a", "cache_control": MARK}, {"name": "b"}],
        "system": [{"type": "text", "text": "x", "cache_control": MARK}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "y", "cache_control": MARK}]},
                     {"role": "user", "content": "z"}],
    }
    assert breakpoints(params) == 4
    assert breakpoints({"system": "x", "messages": [{"role": "user", "content": "y"}]}) == 0


# -- the tasks -------------------------------------------------------------------------------------

def test_invoice_extract_leaves_its_short_prefix_unmarked():
    payload = InvoiceTask().validate({"text": "INVOICE INV-1 ... " * 2_000})  # a long invoice: not the prefix
    (request,) = InvoiceExecutor().requests(payload, model_id=SONNET)
    assert isinstance(request.params["system"], str)  # tools + system are ~270 tokens: under 1,024
    assert breakpoints(request.params) == 0


def test_invoice_extract_marks_its_prefix_once_the_model_would_cache_it(monkeypatch):
    from jobcore.tasks import invoice

    monkeypatch.setattr(invoice, "_SYSTEM", invoice._SYSTEM + " Rules: " + words(1000))
    (request,) = InvoiceExecutor().requests({"text": "INVOICE"}, model_id=SONNET)
    assert request.params["system"][0]["cache_control"] == MARK and breakpoints(request.params) == 1
    (haiku,) = InvoiceExecutor().requests({"text": "INVOICE"}, model_id=HAIKU)
    assert isinstance(haiku.params["system"], str)


def test_summarize_marks_the_shared_system_prompt_only_when_long_enough():
    documents = [{"id": str(i), "text": f"Document {i}."} for i in range(3)]
    short = SummarizeTask().validate({"documents": documents})
    assert all(isinstance(r.params["system"], str) for r in SummarizeExecutor().requests(short, model_id=SONNET))
    rubric = words(4_900)
    long = SummarizeTask().validate({"documents": documents, "instructions": rubric})
    requests = SummarizeExecutor().requests(long, model_id=SONNET)
    assert all(r.params["system"][0]["cache_control"] == MARK and breakpoints(r.params) == 1 for r in requests)
    assert len({r.params["system"][0]["text"] for r in requests}) == 1  # the same prefix for every document
    assert all(r.params["messages"][0]["content"] == d["text"] for r, d in zip(requests, documents, strict=True))
    assert len(rubric) <= MAX_INSTRUCTIONS_CHARS


@pytest.mark.parametrize("model_id", [SONNET, HAIKU, "claude-opus-4-5"])
def test_no_built_in_task_sends_more_than_four_breakpoints(model_id):
    documents = [{"id": str(i), "text": words(3_000)} for i in range(4)]
    summarize = SummarizeTask().validate({"documents": documents, "instructions": words(4_990)})
    invoice = InvoiceTask().validate({"text": words(30_000)})
    for request in [*SummarizeExecutor().requests(summarize, model_id=model_id),
                    *InvoiceExecutor().requests(invoice, model_id=model_id)]:
        assert breakpoints(request.params) <= MAX_BREAKPOINTS


# -- claude.messages: the client's own markers pass through ----------------------------------------

def messages_input(**extra):
    return {"max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}], **extra}


def test_claude_messages_passes_the_clients_markers_through():
    body = messages_input(
        cache_control={"type": "ephemeral", "ttl": "1h"},
        system=[{"type": "text", "text": words(2000), "cache_control": MARK}],
        tools=[{"name": "t", "input_schema": {"type": "object"}, "cache_control": MARK}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": MARK}]}],
    )
    payload = MessagesTask().validate(body)
    (request,) = MessagesExecutor().requests(payload, model_id=SONNET)
    assert request.params == {"model": SONNET, **body}
    assert breakpoints(request.params) == 4


def test_claude_messages_refuses_a_fifth_breakpoint_and_a_malformed_marker():
    content = [{"type": "text", "text": f"part {i}", "cache_control": MARK} for i in range(5)]
    with pytest.raises(InvalidInputError, match="has 5 cache_control breakpoints; the Messages API takes at most 4"):
        MessagesTask().validate(messages_input(messages=[{"role": "user", "content": content}]))
    with pytest.raises(InvalidInputError) as error:
        MessagesTask().validate(messages_input(system=[{"type": "text", "text": "x", "cache_control": {"type": "forever"}}]))
    assert error.value.field == "input.system[0].cache_control.type"
    with pytest.raises(InvalidInputError) as error:
        MessagesTask().validate(messages_input(cache_control={"type": "ephemeral", "ttl": "1d"}))
    assert error.value.field == "input.cache_control.ttl"


# -- what a response says it used ------------------------------------------------------------------

def test_usage_of_reads_the_cache_counts_of_a_response():
    response = {"usage": {"input_tokens": 300, "output_tokens": 400, "cache_creation_input_tokens": 1200,
                          "cache_read_input_tokens": 0, "cache_creation": {"ephemeral_5m_input_tokens": 200,
                                                                           "ephemeral_1h_input_tokens": 1000}}}
    assert usage_of(response) == Usage(300, 400, 1, cache_creation_input_tokens=1200, cache_creation_1h_input_tokens=1000)
    assert usage_of({"usage": {"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": None}}) == Usage(5, 1, 1)
    assert usage_of({}) == Usage(0, 0, 1)


def test_the_usage_view_shows_the_cache_counts():
    assert usage_view(Usage(3, 4, 1, cache_read_input_tokens=1200)) == {
        "input_tokens": 3, "output_tokens": 4, "model_calls": 1,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1200,
    }
    assert usage_view(Usage(cache_creation_input_tokens=9, cache_creation_1h_input_tokens=9))["cache_creation_1h_input_tokens"] == 9
