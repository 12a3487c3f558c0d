"""The local runtime's S3 refuses what S3 refuses of a presigned URL (local/aws_server.py): another content
type or length than the signed ones, another key, a URL past its expiry; the signed request goes through."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from local.aws_server import CREDENTIALS, AwsServer

BUCKET = "uploads"
TYPE, DATA = "application/json", b'{"documents": []}'
LATER = dt.timedelta(hours=2)  # past the URLs' one hour


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """Two servers on one moto backend: one with the real clock, one two hours ahead of it."""
    now, later = AwsServer(), AwsServer(now=lambda: dt.datetime.now(dt.UTC) + LATER)
    now.start(), later.start()
    urls = {name: "http://{}:{}".format(*server.get_host_and_port()) for name, server in (("now", now), ("later", later))}
    s3(urls["now"]).create_bucket(Bucket=BUCKET)
    yield urls
    now.stop(), later.stop()


def s3(endpoint: str):
    # SigV4, as the adapters presign (jobadapters/wiring.py): the signature the check verifies.
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(signature_version="s3v4"),
                        aws_access_key_id=CREDENTIALS.access_key, aws_secret_access_key=CREDENTIALS.secret_key,
                        aws_session_token=CREDENTIALS.token)


def presigned_put(endpoint: str, key: str) -> str:
    return s3(endpoint).generate_presigned_url("put_object", ExpiresIn=3600, Params={
        "Bucket": BUCKET, "Key": key, "ContentType": TYPE, "ContentLength": len(DATA)})


def send(url: str, *, method: str = "PUT", data: bytes | None = DATA, content_type: str = TYPE) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_signed_put_is_taken(servers):
    assert send(presigned_put(servers["now"], "in/signed"))[0] == 200

    stored = s3(servers["now"]).head_object(Bucket=BUCKET, Key="in/signed")
    assert stored["ContentType"] == TYPE and stored["ContentLength"] == len(DATA)


@pytest.mark.parametrize(("change", "what"), [
    ({"content_type": "text/plain"}, "another content type"),
    ({"data": DATA + b" "}, "another length"),
])
def test_a_put_unlike_the_signed_one_is_refused_and_stores_nothing(servers, change, what):
    key = f"in/{what.replace(' ', '-')}"

    status, body = send(presigned_put(servers["now"], key), **change)

    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body, (what, body)
    assert s3(servers["now"]).list_objects_v2(Bucket=BUCKET, Prefix=key)["KeyCount"] == 0


def test_another_key_is_refused(servers):
    url = presigned_put(servers["now"], "in/mine").replace("in/mine", "in/theirs")

    assert send(url)[0] == 403


def test_a_url_past_its_expiry_is_refused(servers):
    status, body = send(presigned_put(servers["later"], "in/late"))

    assert status == 403 and b"<Code>AccessDenied</Code>" in body and b"expired" in body


def test_a_presigned_get_and_unsigned_requests_go_through(servers):
    s3(servers["now"]).put_object(Bucket=BUCKET, Key="out/result.json", Body=b"{}")
    url = s3(servers["now"]).generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "out/result.json"})

    assert send(url, method="GET", data=None) == (200, b"{}")


def test_the_retention_check_is_moto_s_own_in_constant_time():
    """moto's check that a received message is within its queue's retention gives the same answers with the local
    server's replacement, which reads the one attribute instead of computing them all (a count of every message)."""
    from moto import mock_aws
    from moto.sqs.models import SQSBackend, sqs_backends

    from local.aws_server import speed_up_moto

    original = SQSBackend.is_message_valid_based_on_retention_period
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="kept", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        for body in ("fresh", "old"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        backend = sqs_backends["123456789012"]["us-east-1"]
        fresh, old = backend.get_queue("kept")._messages
        old.sent_timestamp -= 61_000  # sent 61 s ago: past the queue's 60 s
        expected = [original(backend, "kept", m) for m in (fresh, old)]
        try:
            speed_up_moto()
            assert [backend.is_message_valid_based_on_retention_period("kept", m) for m in (fresh, old)] == expected
        finally:
            SQSBackend.is_message_valid_based_on_retention_period = original  # type: ignore[method-assign]
    assert expected == [True, False]


def test_the_queue_count_and_the_service_lookups_answer_as_moto_s_own():
    """The local server's cheaper counts of a queue's messages (no fair delivery order, one clock read) count what
    moto counts, with messages visible, in flight and delayed; its service lookups, made once per host, name the
    backends moto's own name."""
    from moto import backends as moto_backends
    from moto import mock_aws
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.sqs.models import Queue

    from local import aws_server

    originals = (Queue.approximate_number_of_messages, Queue.approximate_number_of_messages_not_visible,
                 Queue.approximate_number_of_messages_delayed, moto_backends.list_of_moto_modules,
                 DomainDispatcherApplication.get_backend_for_host)
    hosts = ["sqs.us-east-1.amazonaws.com", "dynamodb.eu-west-1.amazonaws.com", "s3.amazonaws.com", "moto_api", None,
             "bucket.s3.us-east-1.amazonaws.com", "sts.amazonaws.com"]
    app = DomainDispatcherApplication(create_backend_app)
    moto_answers = [originals[4](app, host) for host in hosts]
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="counted")["QueueUrl"]
        for n in range(6):
            sqs.send_message(QueueUrl=url, MessageBody=str(n), DelaySeconds=60 if n < 2 else 0)
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=60)  # 3 in flight, 1 visible
        counts = []
        try:
            for patched in (False, True):
                if patched:
                    aws_server.speed_up_moto()
                counts.append(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])
            assert [aws_server._cached_backend_for_host(app, host) for host in hosts] == moto_answers
            assert list(moto_backends.list_of_moto_modules()) == list(originals[3]())
        finally:
            (Queue.approximate_number_of_messages, Queue.approximate_number_of_messages_not_visible,  # type: ignore[method-assign]
             Queue.approximate_number_of_messages_delayed, moto_backends.list_of_moto_modules,
             DomainDispatcherApplication.get_backend_for_host) = originals
    assert counts[0] == counts[1]
    assert [counts[1][f"ApproximateNumberOfMessages{kind}"] for kind in ("", "NotVisible", "Delayed")] == ["1", "3", "2"]
    assert moto_answers[:3] == ["sqs", "dynamodb", "s3"]


def test_a_query_that_met_an_update_under_it_is_run_again(monkeypatch):
    """A sparse index's query reads the live items it selected to sort them: an update that removed one's key in
    between raised a KeyError (a 500). The local server runs such a query again; one that keeps failing still fails."""
    from local import aws_server

    calls: list[str] = []

    def raced_twice(table: object, *args: object, **kwargs: object) -> str:
        calls.append("query")
        if len(calls) <= 2:
            raise KeyError("watch_shard")
        return "answered"

    monkeypatch.setattr(aws_server, "_moto_query", raced_twice)
    assert aws_server._query_of_live_items(object(), "hash-key", index_name="watch") == "answered"
    assert len(calls) == 3

    def always(table: object, *args: object, **kwargs: object) -> str:
        calls.append("query")
        raise KeyError("watch_shard")

    calls.clear()
    monkeypatch.setattr(aws_server, "_moto_query", always)
    with pytest.raises(KeyError):
        aws_server._query_of_live_items(object())
    assert len(calls) == aws_server.QUERY_TRIES
