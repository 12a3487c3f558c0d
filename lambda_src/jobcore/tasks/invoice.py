"""``invoice.extract``: the seed article's invoice example. Invoice text in, checked JSON out.

Claude is forced to answer through the ``record_invoice`` tool, so its answer arrives as JSON that
follows :data:`INVOICE_SCHEMA`; the task then validates that JSON itself (the model can still be wrong)
and reports whether the figures add up.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from jobcore.errors import TaskOutputError
from jobcore.routing import TaskProfile
from jobcore.tasks.base import ModelRequest
from jobcore.tasks.caching import cached_system
from jobcore.validation import expect_object, get, non_empty, reject_unknown

TOOL_NAME = "record_invoice"
_MONEY = {"type": "number"}
INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string", "description": "Who issued the invoice"},
        "invoice_number": {"type": "string"},
        "invoice_date": {"type": "string", "description": "ISO 8601 date, YYYY-MM-DD"},
        "due_date": {"type": ["string", "null"], "description": "ISO 8601 date, or null if absent"},
        "currency": {"type": "string", "description": "ISO 4217 code, e.g. USD"},
        "line_items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"description": {"type": "string"}, "quantity": _MONEY, "unit_price": _MONEY, "amount": _MONEY},
                "required": ["description", "quantity", "unit_price", "amount"],
            },
        },
        "subtotal": _MONEY,
        "tax": _MONEY,
        "total": _MONEY,
    },
    "required": ["vendor", "invoice_number", "invoice_date", "due_date", "currency", "line_items", "subtotal", "tax", "total"],
}
_SYSTEM = (
    "You extract structured data from invoices. Record exactly what the invoice says by calling "
    f"{TOOL_NAME}. Dates as YYYY-MM-DD, currency as an ISO 4217 code, amounts as plain numbers."
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_CENT = 0.01


class InvoiceTask:
    name = "invoice.extract"
    description = "Invoice text in; vendor, number, dates, currency, line items and totals out, checked."
    profile = TaskProfile(
        expected_duration_s=6.0, memory_mb=256, typical_input_tokens=1_500, typical_output_tokens=400,
        timeout_s=300.0,
    )
    executor = "jobcore.tasks.invoice:InvoiceExecutor"
    # The input as a JSON Schema (the API description's; :meth:`validate` is the authority).
    input_schema: dict[str, Any] = {
        "type": "object", "additionalProperties": False, "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 200_000, "description": "The invoice's text"}},
    }

    def validate(self, payload: Any) -> dict[str, Any]:
        body = expect_object(payload, "input")
        reject_unknown(body, {"text"}, "input")
        non_empty(get(body, "text", str, "input"), "input.text", max_chars=200_000)
        return body

    def expected_duration_s(self, payload: dict[str, Any]) -> float:
        # Longer invoices take longer to read; ~4 characters a token, ~2,000 input tokens/s.
        return self.profile.expected_duration_s + len(payload["text"]) / 8_000



TOOLS = [{"name": TOOL_NAME, "description": "Record the invoice's fields.", "input_schema": INVOICE_SCHEMA}]


class InvoiceExecutor:
    def requests(self, payload: dict[str, Any], *, model_id: str) -> list[ModelRequest]:
        # The tool definition and the system prompt are the same for every invoice: the request's stable
        # prefix, marked for caching when it is long enough for the model (jobcore.tasks.caching). Today it
        # is about 270 tokens, under every model's minimum, so it is sent unmarked; it is not padded to qualify.
        return [ModelRequest("invoice", {
            "model": model_id,
            "max_tokens": 2048,
            "system": cached_system(_SYSTEM, model_id, tools=TOOLS),
            "tools": TOOLS,
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
            "messages": [{"role": "user", "content": payload["text"]}],
        })]

    def assemble(self, payload: dict[str, Any], responses: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        content = responses["invoice"].get("content", [])
        uses = [b for b in content if b.get("type") == "tool_use" and b.get("name") == TOOL_NAME]
        if not uses:
            raise TaskOutputError(f"the model did not call {TOOL_NAME}")
        invoice = check_invoice(uses[0].get("input"))
        return {"invoice": invoice, "checks": arithmetic_checks(invoice)}


def check_invoice(data: Any) -> dict[str, Any]:
    """The model's invoice with its types and formats checked; TaskOutputError lists what is wrong."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise TaskOutputError("invoice: not an object")
    for key in ("vendor", "invoice_number"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            problems.append(f"{key}: missing")
    for key, nullable in (("invoice_date", False), ("due_date", True)):
        if not _is_date(data.get(key), nullable=nullable):
            problems.append(f"{key}: not a YYYY-MM-DD date")
    if not isinstance(data.get("currency"), str) or not _CURRENCY.match(data["currency"]):
        problems.append("currency: not an ISO 4217 code")
    for key in ("subtotal", "tax", "total"):
        if not _is_number(data.get(key)):
            problems.append(f"{key}: not a number")
    items = data.get("line_items")
    if not isinstance(items, list):
        problems.append("line_items: not a list")
        items = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("description"), str):
            problems.append(f"line_items[{i}].description: missing")
            continue
        problems += [f"line_items[{i}].{k}: not a number" for k in ("quantity", "unit_price", "amount") if not _is_number(item.get(k))]
    if problems:
        raise TaskOutputError("invoice failed validation: " + "; ".join(problems))
    return {key: data[key] for key in INVOICE_SCHEMA["properties"]}


def arithmetic_checks(invoice: dict[str, Any]) -> dict[str, bool]:
    """Whether the figures add up. Reported, not enforced: real invoices carry discounts and rounding."""
    items = invoice["line_items"]
    return {
        "line_amounts_match": all(abs(i["quantity"] * i["unit_price"] - i["amount"]) <= _CENT for i in items),
        "subtotal_matches_lines": abs(sum(i["amount"] for i in items) - invoice["subtotal"]) <= _CENT,
        "total_matches": abs(invoice["subtotal"] + invoice["tax"] - invoice["total"]) <= _CENT,
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_date(value: Any, *, nullable: bool) -> bool:
    if value is None:
        return nullable
    try:
        dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True
