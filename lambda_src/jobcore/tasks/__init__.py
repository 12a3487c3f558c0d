"""The task catalogue: every task the API accepts, by name."""

from __future__ import annotations

from jobcore.errors import UnknownTaskError
from jobcore.tasks.base import RunContext, Task, TaskResult
from jobcore.tasks.invoice import InvoiceTask
from jobcore.tasks.messages import MessagesTask
from jobcore.tasks.summarize import SummarizeTask

CATALOGUE: dict[str, Task] = {task.name: task for task in (MessagesTask(), InvoiceTask(), SummarizeTask())}


def lookup(name: str, catalogue: dict[str, Task] = CATALOGUE) -> Task:
    try:
        return catalogue[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(catalogue))}") from None


__all__ = ["CATALOGUE", "RunContext", "Task", "TaskResult", "lookup"]
