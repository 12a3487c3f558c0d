"""BlobStore over an S3 bucket: results and large inputs as JSON documents."""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jobadapters.aws_errors import translated
from jobadapters.tracing import aws_call
from jobcore.errors import BlobNotFoundError
from jobcore.uploads import UploadInfo

if TYPE_CHECKING:
    from jobadapters.observer import Telemetry

# What a tenant is told when the bucket throttles or cannot be reached (the details are logged).
_STORE = "the result store"


class S3BlobStore:
    """Transient S3 errors (SlowDown, 5xx, timeouts) raise StoreUnavailableError; a missing document
    BlobNotFoundError."""

    def __init__(self, client: Any, bucket: str, *, url_ttl_s: int = 3600, telemetry: Telemetry | None = None):
        """``telemetry``: each document or file written is a span when this process traces."""
        self._client = client
        self._bucket = bucket
        self._url_ttl_s = url_ttl_s
        self._telemetry = telemetry

    @translated(_STORE)
    def put_json(self, key: str, document: Any) -> int:
        body = json.dumps(document, separators=(",", ":")).encode()
        self._put(key, body, "application/json")
        return len(body)

    @translated(_STORE)
    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> int:
        self._put(key, data, content_type)
        return len(data)

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        # Named by the key's first part (results, inputs): one name per kind of object, not per object.
        with aws_call(self._telemetry, "s3", "PutObject", key.split("/", 1)[0],
                      **{"aws.s3.bucket": self._bucket, "aws.s3.key": key}):
            self._client.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type)

    @translated(_STORE)
    def get_json(self, key: str) -> Any:
        stream, _ = self.open_stream(key)
        with stream:
            return json.load(stream)

    @translated(_STORE)
    def open_stream(self, key: str) -> tuple[IO[bytes], str]:
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobNotFoundError(f"the stored document {key} is gone") from None
            raise
        return response["Body"], response.get("ContentType") or "application/octet-stream"

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    @translated(_STORE)
    def head(self, key: str) -> UploadInfo | None:
        """An uploaded object's size and content type; None if there is none."""
        try:
            response = self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return UploadInfo(int(response["ContentLength"]), response.get("ContentType") or "")

    def presign_put(self, key: str, *, content_type: str, size: int, expires_s: int) -> str:
        """A PUT URL that signs the key, the content type and the content length: S3 refuses any other."""
        return self._client.generate_presigned_url(
            "put_object", Params={"Bucket": self._bucket, "Key": key, "ContentType": content_type, "ContentLength": size},
            ExpiresIn=expires_s,
        )

    def url_for(self, key: str) -> str | None:
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._url_ttl_s,
        )
