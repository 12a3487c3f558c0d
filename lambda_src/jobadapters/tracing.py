"""Traces with OpenTelemetry: the spans of :class:`jobcore.ports.Observer`, exported over OTLP/HTTP (protobuf) to a
collector the operator runs, or (``traces_endpoint: "xray"``) straight to the Region's X-Ray OTLP endpoint, each
request signed with SigV4 by botocore, or, locally, to a file of JSON lines (``local.serve --traces FILE``).

Only :func:`start` imports the OpenTelemetry SDK, and only when something exports: a process that does not
trace (the router without an endpoint) never pays for it. A queued job's context travels as the W3C
``traceparent`` its job records (:attr:`jobcore.model.Job.trace_parent`), in every SQS message of the job
(message attributes) and into its webhook delivery.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobadapters.observer import Telemetry
    from jobadapters.settings import ObservabilitySettings

TRACEPARENT = "traceparent"  # the W3C header, and the SQS message attribute that carries it
# ``traces_endpoint``'s value for the Region's X-Ray OTLP traces endpoint (it needs Transaction Search on in the
# account), and what AWS authorizes a request to it as: "the OTLP traces endpoint, which is authorized as
# xray:PutTraceSegments" (X-Ray developer guide, "Setting up bearer token authentication for traces"). The action has
# no resource-level permissions: it is granted on "*".
XRAY = "xray"
XRAY_ACTIONS = ("xray:PutTraceSegments",)
XRAY_SIGNING_SERVICE = "xray"
# A Lambda exports its spans before it returns (it may be frozen after): bounded, so that a slow endpoint costs a
# request at most this, and loses its spans rather than the answer.
EXPORT_TIMEOUT_S = 2.0
_OTLP_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


def xray_traces_url(region: str) -> str:
    return f"https://xray.{region}.amazonaws.com/v1/traces"


def check_traces_endpoint(value: str) -> None:
    """ValueError unless ``value`` is a ``traces_endpoint`` the runtime takes: "" (no tracing), "xray" or an
    http(s) URL of an OTLP/HTTP traces endpoint. The CDK app checks the configuration with it at synth."""
    if not isinstance(value, str) or value not in ("", XRAY) and not _OTLP_URL.fullmatch(value):
        raise ValueError(f"{value!r} must be '', 'xray' (the Region's X-Ray OTLP endpoint) or an OTLP/HTTP traces URL "
                         "such as 'http://localhost:4318/v1/traces'")
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
        """Export what is buffered (a Lambda may be frozen as soon as it returns), within EXPORT_TIMEOUT_S."""
        self._provider.force_flush(timeout_millis=int(EXPORT_TIMEOUT_S * 1000))


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
    if settings.traces_endpoint == XRAY:
        provider.add_span_processor(BatchSpanProcessor(xray_exporter(settings.region)))
    elif settings.traces_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.traces_endpoint)))
    return Tracing(provider.get_tracer("jobpipe"), provider)


def xray_exporter(region: str, *, endpoint: str | None = None, credentials: Any = None) -> Any:
    """An OTLP/HTTP protobuf span exporter to X-Ray's OTLP endpoint in ``region`` (or ``endpoint``), each request
    signed with SigV4 for the ``xray`` service with ``credentials`` (botocore's; by default this process's: the Lambda's
    or the ECS task's role, refreshed as they rotate). The body signed is the body sent: the request is signed as
    it leaves, after the exporter has encoded (and, if configured, compressed) it."""
    import botocore.session
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    source = credentials if credentials is not None else botocore.session.get_session().get_credentials()
    if source is None:
        raise RuntimeError("traces_endpoint 'xray' needs AWS credentials to sign its requests; none were found")

    class SigV4Session(requests.Session):
        def send(self, request: Any, **kwargs: Any) -> Any:
            signed = {name: request.headers[name] for name in ("Content-Type", "Content-Encoding") if name in request.headers}
            aws = AWSRequest(method=request.method, url=request.url, data=request.body or b"", headers=signed)
            frozen = source.get_frozen_credentials() if hasattr(source, "get_frozen_credentials") else source
            SigV4Auth(frozen, XRAY_SIGNING_SERVICE, region).add_auth(aws)
            for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
                if name in aws.headers:
                    request.headers[name] = aws.headers[name]
            return super().send(request, **kwargs)

    return OTLPSpanExporter(endpoint=endpoint or xray_traces_url(region), session=SigV4Session(), timeout=EXPORT_TIMEOUT_S)


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
