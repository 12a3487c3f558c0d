"""BlobStore over an S3 bucket: results and large inputs as JSON documents."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from jobadapters.aws_errors import translated
from jobcore.errors import BlobNotFoundError

# What a tenant is told when the bucket throttles or cannot be reached (the details are logged).
_STORE = "the result store"


class S3BlobStore:
    """Transient S3 errors (SlowDown, 5xx, timeouts) raise StoreUnavailableError; a missing document
    BlobNotFoundError."""

    def __init__(self, client: Any, bucket: str, *, url_ttl_s: int = 3600):
        self._client = client
        self._bucket = bucket
        self._url_ttl_s = url_ttl_s

    @translated(_STORE)
    def put_json(self, key: str, document: Any) -> int:
        body = json.dumps(document, separators=(",", ":")).encode()
        self._client.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")
        return len(body)

    @translated(_STORE)
    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> int:
        self._client.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)
        return len(data)

    @translated(_STORE)
    def get_json(self, key: str) -> Any:
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobNotFoundError(f"the stored document {key} is gone") from None
            raise
        return json.loads(body)

    def url_for(self, key: str) -> str | None:
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._url_ttl_s,
        )
