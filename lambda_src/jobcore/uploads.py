"""Large inputs by upload: ``POST /v1/uploads`` hands out a presigned S3 PUT; a job names the upload
(``"input_upload": "upl_..."``) instead of carrying its input.

An upload lives at ``uploads/<tenant>/<upload id>`` (:func:`jobcore.schema_keys.upload_key`): a tenant can
only name its own. A JSON upload (``application/json``) is the task's ``input`` itself; a ``text/plain``
upload is accepted by the tasks in :data:`TEXT_INPUT` (the text becomes that task's text field).

The router never reads a large upload: one above ``INLINE_INPUT_LIMIT`` is checked only by its size
(HEAD), routed from the task's profile (or the client's hints) and always queued; the worker reads it, parses
and checks it as a request body is (:mod:`jobcore.jsonbody`), and validates it (an invalid one fails the job
``invalid_input``). A small one the router reads and checks the same way at submission (422 there).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol

from jobcore import jsonbody
from jobcore.errors import BadRequestError, BlobNotFoundError, InvalidInputError
from jobcore.limits import MAX_UPLOAD_BYTES, UPLOAD_URL_TTL_S
from jobcore.schema_keys import UPLOADS_PREFIX, upload_key
from jobcore.validation import expect_object, get, reject_unknown
from jobcore.views import iso

JSON = "application/json"
TEXT = "text/plain"
CONTENT_TYPES = (JSON, TEXT)
_UPLOAD_ID = re.compile(r"^upl_[0-9a-f]{32}$")
UPLOADED = "the uploaded input"  # how messages name an upload's content
_MESSAGE_CHARS = 300  # an error's message quotes no more of what was uploaded

# Tasks that take a text/plain upload, and the input it becomes (the text in the task's text field).
TEXT_INPUT: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "invoice.extract": lambda text, upload_id: {"text": text},
    "documents.summarize": lambda text, upload_id: {"documents": [{"id": upload_id, "text": text}]},
}


@dataclass(frozen=True)
class UploadRequest:
    content_type: str
    size: int


@dataclass(frozen=True)
class UploadInfo:
    """An uploaded object as HEAD reports it."""

    size: int
    content_type: str


class UploadStore(Protocol):
    """The uploads' bucket, as the router uses it (:class:`jobadapters.s3.S3BlobStore`)."""

    def presign_put(self, key: str, *, content_type: str, size: int, expires_s: int) -> str:
        """A URL that accepts one PUT of exactly ``size`` bytes of ``content_type`` at ``key``."""
        ...

    def head(self, key: str) -> UploadInfo | None:
        """The object's size and content type; None if nothing was uploaded there."""
        ...


class UploadReader(Protocol):
    def open_stream(self, key: str) -> tuple[IO[bytes], str]:
        """The object's body as a stream, and its content type; BlobNotFoundError if there is none."""
        ...


def parse_upload_request(body: Any) -> UploadRequest:
    """``POST /v1/uploads``'s body: ``content_type`` (application/json or text/plain) and ``size`` in bytes."""
    body = expect_object(body, "body")
    reject_unknown(body, {"content_type", "size"}, "")
    content_type = get(body, "content_type", str, "")
    if content_type not in CONTENT_TYPES:
        raise InvalidInputError("content_type", f"must be one of {', '.join(CONTENT_TYPES)}")
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_UPLOAD_BYTES:
        raise InvalidInputError("size", f"must be a whole number of bytes from 1 to {MAX_UPLOAD_BYTES:,} (1 GiB)")
    return UploadRequest(content_type, size)


def well_formed_upload_id(upload_id: Any) -> bool:
    return isinstance(upload_id, str) and bool(_UPLOAD_ID.fullmatch(upload_id))


def new_upload_id() -> str:
    return f"upl_{secrets.token_hex(16)}"


def create(store: UploadStore, request: UploadRequest, *, tenant_id: str, now_ms: int) -> dict[str, Any]:
    """A new upload: its id, the presigned PUT URL, the headers the PUT must send, when the URL expires."""
    upload_id = new_upload_id()
    url = store.presign_put(upload_key(tenant_id, upload_id), content_type=request.content_type, size=request.size,
                            expires_s=UPLOAD_URL_TTL_S)
    return {
        "upload_id": upload_id, "url": url, "method": "PUT",
        "headers": {"content-type": request.content_type, "content-length": str(request.size)},
        "expires_at": iso(now_ms + UPLOAD_URL_TTL_S * 1000), "max_bytes": MAX_UPLOAD_BYTES,
        "size": request.size, "content_type": request.content_type,
    }


def resolve(store: UploadStore, upload_id: Any, *, tenant_id: str, task: str) -> tuple[str, UploadInfo]:
    """The key and HEAD of the tenant's upload ``upload_id``, checked for ``task``; InvalidInputError naming
    ``input_upload`` if it is not the tenant's, not uploaded (yet), too large or of a type the task cannot take."""
    if not well_formed_upload_id(upload_id):
        raise InvalidInputError("input_upload", "must be an upload id (upl_ and 32 hex digits) from POST /v1/uploads")
    key = upload_key(tenant_id, upload_id)
    info = store.head(key)
    if info is None:  # another tenant's upload is not found either: ids must not leak
        raise InvalidInputError("input_upload", f"no upload {upload_id} has been uploaded: PUT it to its URL first")
    if info.size > MAX_UPLOAD_BYTES:
        raise InvalidInputError("input_upload", f"is {info.size:,} bytes; an upload holds at most {MAX_UPLOAD_BYTES:,}")
    content_type = info.content_type.split(";")[0].strip().lower()
    if content_type == TEXT and task not in TEXT_INPUT:
        raise InvalidInputError("input_upload", f"is text/plain, which {task} does not take: upload its input as "
                                                f"application/json (text/plain: {', '.join(TEXT_INPUT)})")
    if content_type not in CONTENT_TYPES:
        raise InvalidInputError("input_upload", f"has content type {content_type!r}; uploads are {', '.join(CONTENT_TYPES)}")
    return key, UploadInfo(info.size, content_type)


def is_upload_key(key: str) -> bool:
    return key.startswith(UPLOADS_PREFIX)


def load(reader: UploadReader, key: str, *, task: str) -> Any:
    """The task input an upload holds, read from the store, parsed and checked as a request body is
    (:func:`jobcore.jsonbody.parse`; not yet validated by the task); InvalidInputError (``input_upload``, the
    message naming the place inside it) if it is not UTF-8 text, not JSON, holds what cannot be kept, or is gone."""
    try:
        stream, content_type = reader.open_stream(key)
    except BlobNotFoundError:
        raise InvalidInputError("input_upload", "the uploaded input is gone (uploads expire with the job data)") from None
    upload_id = key.rsplit("/", 1)[-1]
    try:
        if content_type.split(";")[0].strip().lower() == TEXT and task in TEXT_INPUT:
            return TEXT_INPUT[task](jsonbody.decode(stream.read(), document=UPLOADED), upload_id)
        # The one parser of every input (a body's, an intake object's): what a body may not carry, an upload may
        # not either. The stdlib parser is not incremental: the whole body is read, decoded, then parsed (as
        # json.load does), and the bytes are dropped once decoded.
        return jsonbody.parse(stream.read(), document=UPLOADED, root="input")
    except (BadRequestError, InvalidInputError) as error:
        raise InvalidInputError("input_upload", str(error)[:_MESSAGE_CHARS]) from None
    finally:
        stream.close()
