"""S3BlobStore against moto: JSON documents in and out, sizes, presigned links."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

from jobadapters.s3 import S3BlobStore
from jobcore.errors import BlobNotFoundError, StoreUnavailableError

DOCUMENT = {"invoice": {"vendor": "Acme", "total": 849.2, "due_date": None, "line_items": [{"qty": 2}]}, "ok": True}


@pytest.fixture
def s3(clients):
    return clients.s3


def test_put_then_get_json_roundtrips_and_returns_the_stored_size(aws, s3):
    blobs = S3BlobStore(s3, aws.bucket)

    size = blobs.put_json("results/job_1.json", DOCUMENT)

    assert blobs.get_json("results/job_1.json") == DOCUMENT
    stored = s3.head_object(Bucket=aws.bucket, Key="results/job_1.json")
    assert size == stored["ContentLength"] == len(json.dumps(DOCUMENT, separators=(",", ":")).encode())
    assert stored["ContentType"] == "application/json"


def test_put_json_overwrites_the_previous_document(aws, s3):
    blobs = S3BlobStore(s3, aws.bucket)
    blobs.put_json("inputs/job_2.json", {"v": 1})

    blobs.put_json("inputs/job_2.json", {"v": 2})

    assert blobs.get_json("inputs/job_2.json") == {"v": 2}


def test_get_json_of_a_missing_key_raises_blob_not_found(aws, s3):
    with pytest.raises(BlobNotFoundError, match="results/missing.json"):
        S3BlobStore(s3, aws.bucket).get_json("results/missing.json")


@pytest.mark.parametrize(("code", "status"), [("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503)])
def test_a_throttled_or_failing_s3_is_unavailable_in_our_words(aws, s3, code, status):
    blobs = S3BlobStore(s3, aws.bucket)
    with Stubber(s3) as stub:
        stub.add_client_error("put_object", service_error_code=code, service_message="raw S3 text, req 4F2A", http_status_code=status)
        stub.add_client_error("get_object", service_error_code=code, service_message="raw S3 text, req 4F2A", http_status_code=status)
        for call in (lambda: blobs.put_json("results/x.json", {}), lambda: blobs.get_json("results/x.json")):
            with pytest.raises(StoreUnavailableError) as caught:
                call()
            assert str(caught.value) == "the result store is unavailable (throttled or unreachable); retry shortly"
            assert caught.value.retryable and caught.value.job_id is None


class Unreachable:
    def put_object(self, **kwargs):
        raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.invalid/bucket")

    def get_object(self, **kwargs):
        raise ReadTimeoutError(endpoint_url="https://s3.us-east-1.amazonaws.invalid/bucket")


def test_an_unreachable_s3_is_unavailable():
    blobs = S3BlobStore(Unreachable(), "bucket")
    with pytest.raises(StoreUnavailableError):
        blobs.put_bytes("results/x/v.npy", b"1", content_type="application/octet-stream")
    with pytest.raises(StoreUnavailableError):
        blobs.get_json("results/x.json")


def test_an_error_that_is_not_about_availability_is_left_as_it_is(aws, s3):
    with Stubber(s3) as stub:
        stub.add_client_error("put_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(ClientError, match="AccessDenied"):
            S3BlobStore(s3, aws.bucket).put_json("results/x.json", {})


def test_url_for_is_a_presigned_get_of_that_key_with_the_configured_lifetime(aws, s3):
    blobs = S3BlobStore(s3, aws.bucket, url_ttl_s=120)

    url = blobs.url_for("results/job_3.json")

    parts = urlsplit(url)
    query = {k.lower(): v for k, v in parse_qs(parts.query).items()}
    assert parts.scheme == "https"
    assert parts.path.endswith("/results/job_3.json")
    assert aws.bucket in parts.netloc + parts.path
    assert "signature" in query or "x-amz-signature" in query
    if "x-amz-expires" in query:  # SigV4
        assert query["x-amz-expires"] == ["120"]
    else:  # SigV2 query auth: an absolute expiry, epoch seconds
        assert abs(int(query["expires"][0]) - (time.time() + 120)) < 30


def test_result_urls_from_the_production_wiring_are_signed_with_sigv4(aws):
    from jobadapters.wiring import AwsClients

    url = S3BlobStore(AwsClients.create(aws.table).s3, aws.bucket).url_for("results/job_4.json")

    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
