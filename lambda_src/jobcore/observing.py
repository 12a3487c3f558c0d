"""The observer used where none is wired (tests, tools): no spans, no metrics, nothing imported."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from jobcore.model import Job


class _NoSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        pass


class Quiet:
    """An :class:`jobcore.ports.Observer` that records nothing."""

    @contextmanager
    def span(self, name: str, *, parent: str | None = None, link: str | None = None,
             attributes: Mapping[str, Any] | None = None) -> Iterator[_NoSpan]:
        yield _NoSpan()

    def traceparent(self) -> str | None:
        return None

    def submitted(self, job: Job) -> None:
        pass

    def started(self, job: Job, *, now_ms: int) -> None:
        pass

    def finished(self, job: Job) -> None:
        pass

    def capacity_wait(self, job: Job) -> None:
        pass

    def flush(self) -> None:
        pass


QUIET = Quiet()
