"""traces_endpoint "xray": spans go as OTLP/HTTP protobuf to X-Ray's OTLP endpoint, each request signed with SigV4
for the ``xray`` service. Checked against a server on 127.0.0.1 that verifies the signature over the body it got."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from jobadapters.settings import ConfigError, ObservabilitySettings
from jobadapters.tracing import XRAY, check_traces_endpoint, xray_exporter, xray_traces_url
from local.otlp_sink import OtlpSink

REGION = "eu-west-1"
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")
_AUTHORIZATION = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/"
                            r"aws4_request, SignedHeaders=(?P<headers>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$")


@pytest.fixture()
def collector() -> Iterator[dict[str, Any]]:
    sink = OtlpSink().start()
    yield {"url": sink.url, "received": sink.received}
    sink.stop()


def export_one_span(url: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(xray_exporter(REGION, endpoint=url, credentials=CREDENTIALS)))
    with provider.get_tracer("test").start_as_current_span("job.run"):
        pass
    provider.shutdown()


def expected_signature(url: str, request: dict[str, Any], signed_headers: list[str]) -> str:
    """The SigV4 signature of the request as the server received it: its own method, URL, signed headers and body."""
    headers = {name: value for name, value in request["headers"].items() if name in signed_headers and name != "host"}
    aws = AWSRequest(method="POST", url=url, data=request["body"], headers=headers)
    aws.context["timestamp"] = request["headers"]["x-amz-date"]
    auth = SigV4Auth(CREDENTIALS, "xray", REGION)
    return auth.signature(auth.string_to_sign(aws, auth.canonical_request(aws)), aws)


def test_the_exporter_sends_protobuf_signed_with_sigv4_for_the_xray_service(collector):
    export_one_span(collector["url"])

    (request,) = collector["received"]
    assert request["path"] == "/v1/traces" and request["headers"]["content-type"] == "application/x-protobuf"
    assert request["body"] and request["headers"]["x-amz-security-token"] == "session-token"
    match = _AUTHORIZATION.fullmatch(request["headers"]["authorization"])
    assert match is not None, request["headers"]["authorization"]
    assert (match["key"], match["region"], match["service"]) == ("AKIDEXAMPLE", REGION, "xray")
    signed = match["headers"].split(";")
    assert {"host", "content-type", "x-amz-date"} <= set(signed)
    # The signature covers the bytes that arrived: a body changed after signing would not verify.
    assert match["signature"] == expected_signature(collector["url"], request, signed)
    tampered = {**request, "body": request["body"] + b"\x00"}
    assert match["signature"] != expected_signature(collector["url"], tampered, signed)


def test_xray_is_the_regions_otlp_endpoint_and_needs_the_region():
    settings = ObservabilitySettings.from_env({"TRACES_ENDPOINT": XRAY, "AWS_REGION": REGION})
    assert (settings.tracing, settings.region) == (True, REGION)
    assert xray_traces_url(REGION) == "https://xray.eu-west-1.amazonaws.com/v1/traces"
    with pytest.raises(ConfigError, match="AWS_REGION"):
        ObservabilitySettings.from_env({"TRACES_ENDPOINT": XRAY})


@pytest.mark.parametrize("value", ["", "xray", "http://localhost:4318/v1/traces", "https://collector.internal/v1/traces"])
def test_a_traces_endpoint_is_empty_xray_or_an_otlp_url(value):
    check_traces_endpoint(value)


@pytest.mark.parametrize("value", ["localhost:4318", "XRAY", "x-ray", "ftp://collector/v1/traces", 4318])
def test_anything_else_is_refused_naming_what_is_accepted(value):
    with pytest.raises(ValueError, match="'xray'"):
        check_traces_endpoint(value)
