"""Traces with OpenTelemetry: the spans of :class:`jobcore.ports.Observer`, exported over OTLP (an ADOT collector
or X-Ray's OTLP endpoint receives them) or, locally, to a file of JSON lines (``local.serve --traces FILE``).

Only :func:`start` imports the OpenTelemetry SDK, and only when something exports: a process that does not
trace (the router without an endpoint) never pays for it. A queued job's context travels as the W3C
``traceparent`` its job records (:attr:`jobcore.model.Job.trace_parent`), in every SQS message of the job
(message attributes) and into its webhook delivery.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobadapters.observer import Telemetry
    from jobadapters.settings import ObservabilitySettings

TRACEPARENT = "traceparent"  # the W3C header, and the SQS message attribute that carries it
# rpc.service of OpenTelemetry's AWS SDK conventions, by the lower-case name a span's name starts with.
AWS_SERVICES = {"dynamodb": "DynamoDB", "s3": "S3"}


def aws_call(telemetry: Telemetry | None, service: str, method: str, target: str,
             **attributes: Any) -> AbstractContextManager[Any]:
    """A CLIENT span around one AWS call, ``<service>.<Method> <target>`` (``dynamodb.PutItem jobs``), with
    OpenTelemetry's AWS SDK attributes (``rpc.system`` aws-api, ``rpc.service``, ``rpc.method``) and the call's own
    (``aws.dynamodb.table_names``, ``aws.s3.bucket``...); nothing at all when this process does not trace."""
    if telemetry is None or telemetry.tracing is None:
        return nullcontext()
    return telemetry.span(f"{service}.{method} {target}", kind="CLIENT", attributes={
        "rpc.system": "aws-api", "rpc.service": AWS_SERVICES[service], "rpc.method": method, **attributes})


class Tracing:
    """Spans over one OpenTelemetry tracer (made by :func:`start`)."""

    def __init__(self, tracer: Any, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self._tracer = tracer
        self._provider = provider
        self._propagator = TraceContextTextMapPropagator()

    @contextmanager
    def span(self, name: str, *, parent: str | None = None, link: str | None = None,
             attributes: Mapping[str, Any] | None = None, kind: str = "INTERNAL") -> Iterator[Any]:
        context = self._propagator.extract({TRACEPARENT: parent}) if parent else None
        links = []
        if link:
            linked = self._trace.get_current_span(self._propagator.extract({TRACEPARENT: link})).get_span_context()
            if linked.is_valid:
                links.append(self._trace.Link(linked, {"jobpipe.link": "submit"}))
        with self._tracer.start_as_current_span(name, context=context, links=links, kind=getattr(self._trace.SpanKind, kind),
                                                attributes=_plain(attributes or {})) as span:
            yield span

    def traceparent(self) -> str | None:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get(TRACEPARENT)

    def flush(self) -> None:
        """Export what is buffered (a Lambda may be frozen as soon as it returns)."""
        self._provider.force_flush()


def start(service: str, settings: ObservabilitySettings, *, stage: str) -> Tracing | None:
    """This process's tracing, or None when nothing exports (then nothing of OpenTelemetry's SDK is imported)."""
    if not settings.tracing:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"jobpipe-{service}",
                                                        "deployment.environment": stage}))
    if settings.traces_file:  # one line per span as it ends: a test or the demo reads them at once
        provider.add_span_processor(SimpleSpanProcessor(_file_exporter(settings.traces_file, service)))
    if settings.traces_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.traces_endpoint)))
    return Tracing(provider.get_tracer("jobpipe"), provider)


def _file_exporter(path: str, service: str) -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    lock = threading.Lock()

    class JsonLinesExporter(SpanExporter):
        """Spans as JSON lines, appended whole (several processes share the file)."""

        def export(self, spans: Sequence[Any]) -> Any:
            lines = "".join(json.dumps(_span_record(span, service)) + "\n" for span in spans)
            with lock:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, lines.encode())
                finally:
                    os.close(fd)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    return JsonLinesExporter()


def _span_record(span: Any, service: str) -> dict[str, Any]:
    context = span.get_span_context()
    return {
        "trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "name": span.name, "service": service, "start_ns": span.start_time, "end_ns": span.end_time,
        "status": span.status.status_code.name, "attributes": dict(span.attributes or {}),
        "links": [{"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}",
                   "attributes": dict(link.attributes or {})} for link in span.links],
    }


def _plain(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """What OpenTelemetry takes as attribute values: primitives, and sequences of strings (table names)."""
    plain: dict[str, Any] = {}
    for key, value in attributes.items():
        if isinstance(value, (str, bool, int, float)):
            plain[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            plain[key] = tuple(value)
    return plain
