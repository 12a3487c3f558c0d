"""Read the spans the local pipeline exported (``local.serve --traces FILE``) and print one trace as a tree.

``python -m local.traces FILE [TRACE_ID]``: the trace of TRACE_ID (a job view's ``trace_id``), or the last one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def of_trace(spans: Iterable[dict[str, Any]], trace_id: str) -> list[dict[str, Any]]:
    return sorted((span for span in spans if span["trace_id"] == trace_id), key=lambda span: span["start_ns"])


def tree(spans: list[dict[str, Any]]) -> str:
    """The spans of one trace, each under its parent, with its service, duration and a few attributes."""
    ids = {span["span_id"] for span in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            ms = (span["end_ns"] - span["start_ns"]) / 1e6
            notes = _notes(span)
            link = " (linked to the submit)" if span.get("links") else ""
            lines.append(f"{'  ' * depth}{span['name']} [{span['service']}] {ms:.1f} ms{link}{notes}")
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def _notes(span: dict[str, Any]) -> str:
    keys = ("http.route", "http.response.status_code", "job.lane", "job.status", "gen_ai.request.model",
            "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "model.status", "messaging.receive_count")
    shown = [f"{key.split('.')[-1]}={span['attributes'][key]}" for key in keys if key in span.get("attributes", {})]
    return f": {', '.join(shown)}" if shown else ""


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    spans = read(Path(args[0]))
    if not spans:
        print("no spans", file=sys.stderr)
        raise SystemExit(1)
    trace_id = args[1] if len(args) > 1 else spans[-1]["trace_id"]
    print(tree(of_trace(spans, trace_id)))


if __name__ == "__main__":
    main()
