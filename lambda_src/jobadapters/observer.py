"""The Observer of the router, the workers and the local runtime: spans (jobadapters.tracing) and job metrics as
CloudWatch embedded metric format (EMF) lines, printed to stdout (CloudWatch Logs turns them into metrics, in
Lambda and in ECS alike) or appended to ``METRICS_FILE`` locally, under the same names."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from jobadapters.settings import ObservabilitySettings
from jobadapters.telemetry import (
    COST_METRIC,
    JOBS_FINISHED_METRIC,
    JOBS_STARTED_METRIC,
    JOBS_SUBMITTED_METRIC,
    MODEL_CALLS_METRIC,
    MODEL_CAPACITY_WAITS_METRIC,
    MODEL_RATE_LIMITED_METRIC,
    NAMESPACE,
    QUEUE_WAIT_METRIC,
    RUN_TIME_METRIC,
    STAGE_DIMENSION,
    TOKEN_METRICS,
)
from jobadapters.tracing import Tracing
from jobcore.errors import ModelUnavailableError
from jobcore.model import Job
from jobcore.observing import Quiet
from jobcore.ports import LanguageModel


class Emf:
    """Writes one EMF document per call: the metrics given, all with the same dimensions."""

    def __init__(self, *, stream: TextIO | None = None, path: str = "", clock_ms: Any = None) -> None:
        self._stream = stream
        self._path = path
        self._lock = threading.Lock()
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)

    def put(self, metrics: Mapping[str, tuple[float, str]], dimensions: Mapping[str, str]) -> None:
        document: dict[str, Any] = {
            "_aws": {"Timestamp": self._clock_ms(), "CloudWatchMetrics": [{
                "Namespace": NAMESPACE, "Dimensions": [list(dimensions)],
                "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()],
            }]},
            **dimensions, **{name: value for name, (value, _) in metrics.items()},
        }
        line = json.dumps(document, separators=(",", ":")) + "\n"
        with self._lock:
            if self._path:
                with open(self._path, "a", encoding="utf-8") as file:
                    file.write(line)
            else:
                stream = self._stream or sys.stdout
                stream.write(line)
                stream.flush()


class Telemetry(Quiet):
    """Spans through ``tracing`` (none when it is None) and the job metrics through ``emf``, dimensioned by ``stage``."""

    def __init__(self, *, stage: str, emf: Emf, tracing: Tracing | None = None) -> None:
        self.stage = stage
        self.emf = emf
        self.tracing = tracing

    @contextmanager
    def span(self, name: str, *, parent: str | None = None, link: str | None = None,
             attributes: Mapping[str, Any] | None = None, kind: str = "INTERNAL") -> Iterator[Any]:
        if self.tracing is None:
            with super().span(name) as span:
                yield span
            return
        with self.tracing.span(name, parent=parent, link=link, attributes=attributes, kind=kind) as span:
            yield span

    def traceparent(self) -> str | None:
        return self.tracing.traceparent() if self.tracing is not None else None

    def flush(self) -> None:
        if self.tracing is not None:
            self.tracing.flush()

    def dimensions(self, **more: str) -> dict[str, str]:
        return {STAGE_DIMENSION: self.stage, **more}

    def submitted(self, job: Job) -> None:
        self.emf.put({JOBS_SUBMITTED_METRIC: (1, "Count")}, self.dimensions(task=job.task, lane=job.lane))

    def started(self, job: Job, *, now_ms: int) -> None:
        metrics: dict[str, tuple[float, str]] = {JOBS_STARTED_METRIC: (1, "Count")}
        if job.attempts <= 1:  # a first start: its wait is the queue's (a retry's back-off is not)
            metrics[QUEUE_WAIT_METRIC] = (max(0, now_ms - job.created_at), "Milliseconds")
        self.emf.put(metrics, self.dimensions(task=job.task, lane=job.lane))

    def finished(self, job: Job) -> None:
        ran_ms = (job.finished_at or job.updated_at) - job.started_at if job.started_at is not None else 0
        actual = (job.cost or {}).get("actual") or {}
        metrics: dict[str, tuple[float, str]] = {
            JOBS_FINISHED_METRIC: (1, "Count"), RUN_TIME_METRIC: (max(0, ran_ms), "Milliseconds"),
            COST_METRIC: (float(actual.get("total") or 0.0), "None"), MODEL_CALLS_METRIC: (job.usage.model_calls, "Count"),
            **{name: (getattr(job.usage, field), "Count") for field, name in TOKEN_METRICS.items()},
        }
        self.emf.put(metrics, self.dimensions(task=job.task, lane=job.lane, outcome=job.status.value))

    def capacity_wait(self, job: Job) -> None:
        """A job re-queued to wait for the model's capacity (rate-limited, overloaded)."""
        self.emf.put({MODEL_CAPACITY_WAITS_METRIC: (1, "Count")}, self.dimensions(task=job.task, lane=job.lane))

    def rate_limited(self, lane: str) -> None:
        self.emf.put({MODEL_RATE_LIMITED_METRIC: (1, "Count")}, self.dimensions(lane=lane))


class TracedModel:
    """A LanguageModel whose every call is a span (model, tokens, provider, status); a 429 is counted."""

    def __init__(self, llm: LanguageModel, telemetry: Telemetry, *, lane: str, provider: str = "anthropic") -> None:
        self.llm = llm
        self.telemetry = telemetry
        self.lane = lane
        self.provider = provider

    def create(self, params: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        attributes = {"gen_ai.system": self.provider, "gen_ai.request.model": str(params.get("model") or ""),
                      "gen_ai.request.max_tokens": int(params.get("max_tokens") or 0), "job.lane": self.lane}
        with self.telemetry.span("model.call", attributes=attributes, kind="CLIENT") as span:
            try:
                response = self.llm.create(params, timeout_s=timeout_s)
            except ModelUnavailableError as error:
                span.set_attribute("model.status", str(error.status or error.kind))
                if error.status == 429:
                    self.telemetry.rate_limited(self.lane)
                raise
            except Exception as error:
                span.set_attribute("model.status", type(error).__name__)
                raise
            usage = response.get("usage") or {}
            span.set_attribute("model.status", "ok")
            span.set_attribute("gen_ai.response.model", str(response.get("model") or ""))
            for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
                span.set_attribute(f"gen_ai.usage.{key}", int(usage.get(key) or 0))
            return response


def telemetry_for(service: str, settings: ObservabilitySettings, *, stage: str) -> Telemetry:
    """This process's telemetry: EMF to stdout (or the local metrics file), spans only if something exports them."""
    from jobadapters.tracing import start

    return Telemetry(stage=stage, emf=Emf(path=settings.metrics_file), tracing=start(service, settings, stage=stage))
