"""``record_invoice``'s extractor: a forgiving heuristic invoice parser."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any

_NUMBER = r"-?\d(?:[\d.,]*\d)?"
# A number standing on its own: not glued to letters, not a percentage, not cut out of a longer number.
_AMOUNT = re.compile(rf"(?<![\w.,]){_NUMBER}(?!\s*%|\w|[.,]\d)")
_CELL_NUMBER = re.compile(rf"(?:[$€£¥]|[A-Z]{{3}})?\s*({_NUMBER})\s*(?:[$€£¥]|[A-Z]{{3}})?")
_TIMES_ITEM = re.compile(
    rf"(?P<desc>.*?[^\W\d_].*?)\s+(?P<qty>{_NUMBER})\s*[xX×@*]\s*(?P<price>{_CELL_NUMBER.pattern})"
    rf"(?:\s+(?P<amount>{_CELL_NUMBER.pattern}))?"
)
_BULLET = re.compile(r"^\s*[-*•]\s+")
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_CODES = re.compile(r"(?<![A-Za-z])(USD|EUR|GBP|CHF|JPY|CAD|AUD|SEK|NOK|DKK|PLN|INR)(?![A-Za-z])")
_TITLE_WORDS = {"invoice", "tax", "commercial", "rechnung", "facture", "bill"}
_VENDOR_LABELS = ("vendor", "from", "seller", "supplier", "issued by", "bill from")
_NUMBER_LABELS = (r"invoice\s*(?:number|num|no|#|id)", r"inv\s*(?:no|#)", r"^\s*(?:number|no|#)")
_DATE_LABELS = (r"invoice\s*date", r"issue\s*date", r"date\s*of\s*issue", r"(?<!due\s)date")
_DUE_LABELS = (r"due\s*date", r"payment\s*due", r"due\s*by", r"due")
_SUBTOTAL_LABELS = (r"sub-?\s?total", r"net\s*total", r"total\s*net", r"net\s*amount", r"total\s*excl\w*")
_TAX_LABELS = (r"(?:sales\s*)?tax(?!\s*(?:id|no|number)\b)", r"vat(?!\s*(?:id|no|number|reg\w*)\b)", r"gst", r"mwst")
_TOTAL_LABELS = (r"total\s*due", r"amount\s*due", r"balance\s*due", r"grand\s*total", r"(?<!net\s)(?<!sub)total(?!\s*(?:net|excl))")


def extract_invoice(text: str) -> dict[str, Any]:
    """The ``record_invoice`` fields read from invoice text, forgivingly, with sensible defaults.

    Vendor: a Vendor/From line, else the first line that is not a bare "INVOICE" title. Dates
    become ISO; ambiguous ``01/03/2024`` is read day first unless the currency is USD. Line items
    are ``desc | qty | price [| amount]``, ``desc  qty x price  [amount]`` or columns separated by
    two or more spaces. Missing subtotal is the sum of amounts, missing tax 0, missing total
    subtotal + tax.
    """
    document = _document(text)
    lines, currency = document.splitlines(), _currency(document)
    items, item_lines = _line_items(lines)
    # Who and when come above the items, the sums below them; an item's text must pass for neither.
    first = min(item_lines, default=len(lines))
    header = lines[:first]
    footer = [line for i, line in enumerate(lines) if i >= first and i not in item_lines] if item_lines else lines

    def date(value: str) -> str | None:
        return _date(value, day_first=currency != "USD")

    subtotal = _first(_money_after(footer, _SUBTOTAL_LABELS), round(sum(i["amount"] for i in items), 2))
    tax = _first(_money_after(footer, _TAX_LABELS), 0.0)
    return {
        "vendor": _vendor(lines),
        "invoice_number": _first(_values(header, _NUMBER_LABELS, _invoice_number), ""),
        # A labelled invoice date, else the first date above the items.
        "invoice_date": _first(chain(_values(header, _DATE_LABELS, date), map(date, header)), ""),
        "due_date": _first(_values(header, _DUE_LABELS, date), None),
        "currency": currency,
        "line_items": items,
        "subtotal": subtotal,
        "tax": tax,
        "total": _first(_money_after(footer, _TOTAL_LABELS), round(subtotal + tax, 2)),
    }


def _document(text: str) -> str:
    """The invoice itself when a prompt wraps it in <invoice> or <document> tags."""
    match = re.search(r"<(invoice|document)\b[^>]*>(.*?)</\1>", text, re.S | re.I)
    return match.group(2) if match else text


def _first(values: Iterable[Any], default: Any) -> Any:
    return next((v for v in values if v is not None), default)


def _values(lines: list[str], labels: Iterable[str], parse: Callable[[str], Any]) -> Iterator[Any]:
    """What ``parse`` makes of the text after each label, labels in priority order, then lines in order."""
    for label in labels:
        regex = re.compile(rf"(?<!\w)(?:{label})(?:(?<=#)|(?!\w))[\s:#.=-]*(?P<value>.*)", re.I)
        for line in lines:
            for match in regex.finditer(line):
                yield parse(match.group("value"))


def _money_after(lines: list[str], labels: Iterable[str]) -> Iterator[float | None]:
    return _values(lines, labels, lambda v: _to_number(m.group(0)) if (m := _AMOUNT.search(v)) else None)


def _to_number(token: str) -> float:
    """``1,234.56``, ``1.234,56``, ``95,00`` and ``1,140`` alike: the last separator decides."""
    if "," in token and "." in token:
        decimal = "," if token.rfind(",") > token.rfind(".") else "."
    elif "," in token:
        decimal = "." if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+", token) else ","
    else:
        decimal = "," if token.count(".") > 1 else "."
    thousands = "." if decimal == "," else ","
    return float(token.replace(thousands, "").replace(decimal, "."))


def _vendor(lines: list[str]) -> str:
    labelled = _first(_values(lines, [rf"^\s*{label}" for label in _VENDOR_LABELS], _cell), None)
    if labelled:
        return labelled
    titles = (line.strip() for line in lines if line.strip() and not _is_title(line))
    return next(titles, "")


def _is_title(line: str) -> bool:
    words = re.findall(r"[^\W\d_]+", line.lower())
    return not words or set(words) <= _TITLE_WORDS


def _cell(value: str) -> str | None:
    """A value up to the next column gap (two spaces or a tab), or None when empty."""
    return re.split(r"\s{2,}|\t", value.strip())[0] or None


def _invoice_number(value: str) -> str | None:
    match = re.match(r"[A-Za-z0-9][\w/-]*", value.strip())
    return match.group(0) if match and re.search(r"\d", match.group(0)) else None


def _currency(text: str) -> str:
    labelled = re.search(r"(?<!\w)currency\s*[:=]?\s*([A-Za-z]{3})(?![A-Za-z])", text, re.I)
    if labelled:
        return labelled.group(1).upper()
    symbols = sorted((text.index(s), code) for s, code in _SYMBOLS.items() if s in text)
    if symbols:
        return symbols[0][1]
    code = _CODES.search(text)
    return code.group(1) if code else "USD"


def _line_items(lines: list[str]) -> tuple[list[dict[str, Any]], set[int]]:
    """The parsed line items, and the indexes of the lines that held them."""
    parsed = [(i, _line_item(_BULLET.sub("", line).strip())) for i, line in enumerate(lines)]
    found = [(i, item) for i, item in parsed if item]
    return [item for _, item in found], {i for i, _ in found}


def _line_item(line: str) -> dict[str, Any] | None:
    times = _TIMES_ITEM.fullmatch(line)
    if times:
        amount = times.group("amount")
        cells = [times.group("desc"), times.group("qty"), times.group("price")] + ([amount] if amount else [])
    else:
        cells = [c.strip() for c in line.strip("|").split("|")] if "|" in line else re.split(r"\s{2,}|\t", line)
    return _item_from_cells(cells)


def _item_from_cells(cells: list[str]) -> dict[str, Any] | None:
    """A description with a letter in it, then quantity, unit price and optionally amount."""
    if len(cells) not in (3, 4) or not re.search(r"[^\W\d_]", cells[0]):
        return None
    matches = [_CELL_NUMBER.fullmatch(c.strip()) for c in cells[1:]]
    if not all(matches):
        return None
    numbers = [_to_number(m.group(1)) for m in matches if m is not None]
    quantity, unit_price = numbers[0], numbers[1]
    amount = numbers[2] if len(numbers) == 3 else round(quantity * unit_price, 2)
    return {
        "description": cells[0].strip(),
        "quantity": int(quantity) if quantity.is_integer() else quantity,
        "unit_price": unit_price,
        "amount": amount,
    }


_ISO_DATE = re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,2})([./-])(\d{1,2})\2(\d{4})(?!\d)")
_MONTH_FIRST = re.compile(r"\b([A-Za-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b")
_DAY_FIRST = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+([A-Za-z]{3,9})\.?,?\s+(\d{4})\b")


def _date(value: str, day_first: bool) -> str | None:
    """The earliest date written in ``value``, as YYYY-MM-DD, or None."""
    found: list[tuple[int, dt.date]] = []
    for match in _ISO_DATE.finditer(value):
        found += _valid(match.start(), int(match[1]), int(match[2]), int(match[3]))
    for match in _NUMERIC_DATE.finditer(value):
        a, b, year = int(match[1]), int(match[3]), int(match[4])
        by_day = match[2] == "." or a > 12 or (b <= 12 and day_first)
        found += _valid(match.start(), year, *((b, a) if by_day else (a, b)))
    for match in _MONTH_FIRST.finditer(value):
        found += _valid(match.start(), int(match[3]), _month(match[1]), int(match[2]))
    for match in _DAY_FIRST.finditer(value):
        found += _valid(match.start(), int(match[3]), _month(match[2]), int(match[1]))
    return min(found)[1].isoformat() if found else None


def _valid(position: int, year: int, month: int | None, day: int) -> list[tuple[int, dt.date]]:
    try:
        return [(position, dt.date(year, month or 0, day))]
    except ValueError:
        return []


def _month(word: str) -> int | None:
    word = word.lower()
    return next((i for i, name in enumerate(calendar.month_name) if i and name.lower().startswith(word)), None)
