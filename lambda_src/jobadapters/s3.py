"""BlobStore over an S3 bucket: results and large inputs as JSON documents."""

from __future__ import annotations

import json
from typing import Any


class S3BlobStore:
    def __init__(self, client: Any, bucket: str, *, url_ttl_s: int = 3600):
        self._client = client
        self._bucket = bucket
        self._url_ttl_s = url_ttl_s

    def put_json(self, key: str, document: Any) -> int:
        body = json.dumps(document, separators=(",", ":")).encode()
        self._client.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")
        return len(body)

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> int:
        self._client.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)
        return len(data)

    def get_json(self, key: str) -> Any:
        return json.loads(self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read())

    def url_for(self, key: str) -> str | None:
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._url_ttl_s,
        )
