"""The task catalogue: every task the API accepts, by name (specs only: executors load where they run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobcore.errors import UnknownTaskError
from jobcore.tasks.base import ModelRequest, OutputFile, RunContext, TaskResult, TaskSpec, run_task
from jobcore.tasks.embeddings import EmbeddingsTask
from jobcore.tasks.invoice import InvoiceTask
from jobcore.tasks.messages import MessagesTask
from jobcore.tasks.summarize import SummarizeTask
from jobcore.validation import quoted

CATALOGUE: dict[str, TaskSpec] = {
    task.name: task for task in (MessagesTask(), InvoiceTask(), SummarizeTask(), EmbeddingsTask())
}


def lookup(name: str, catalogue: dict[str, TaskSpec] = CATALOGUE) -> TaskSpec:
    try:
        return catalogue[name]
    except KeyError:
        known = ", ".join(sorted(catalogue))
        raise UnknownTaskError(f"unknown task {quoted(name)}; known tasks: {known}") from None


def arrival_rates(raw: Mapping[str, Any], catalogue: Mapping[str, TaskSpec] = CATALOGUE) -> dict[str, float]:
    """The operator's expected requests a minute by task (the decision framework's frequency question),
    checked: every name a task of the catalogue, every rate a non-negative number. ValueError otherwise."""
    rates: dict[str, float] = {}
    for name, rate in raw.items():
        if name not in catalogue:
            raise ValueError(f"{name!r} is not a task; the tasks are {', '.join(sorted(catalogue))}")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < float("inf"):
            raise ValueError(f"the rate of {name!r} must be a non-negative number of requests a minute, not {rate!r}")
        rates[name] = float(rate)
    return rates


__all__ = ["CATALOGUE", "arrival_rates", "ModelRequest", "OutputFile", "RunContext", "TaskResult", "TaskSpec", "lookup", "run_task"]
