"""The views behind the local backend's signed upload and download URLs (plain Django, not DRF),
and the one that serves published files' public copies as a CDN's origin would.

They stand in for S3's presigned URLs when no bucket is configured, with the same rules: the
URL is the credential (no bearer token), it expires, and an upload is bound to one key, one
content type and a size limit. The body of a PUT is streamed to disk in chunks: it is never
held in memory, so DATA_UPLOAD_MAX_MEMORY_SIZE (which guards ``request.body``) does not apply,
and the signed size limit does. An upload URL writes only while its file is ``uploading``:
after confirm (which moves the object to a key no URL names) it answers 409 ``upload_closed``.
Every request counts against a per-IP rate limit (429 ``rate_limited``). Errors use the API's
JSON envelope.

These URLs are never logged: Django and gunicorn log the path only, not the query string that
holds the signature (auteur/gunicorn_conf.py).
"""

from __future__ import annotations

import math
import re
import stat
from collections.abc import Callable, Iterator
from typing import IO, TypeVar

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import get_conditional_response
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request

from auteur.core.errors import error_response
from auteur.core.throttling import SlidingWindowThrottle
from media.errors import IncompleteUploadBody, InvalidKey, SignatureInvalid
from media.selectors import upload_is_open
from media.services.keys import is_staging_key, public_content_type
from media.storage import get_local_storage, get_public_storage
from media.storage.base import CHECKSUM_HEADER, CHUNK_SIZE, content_disposition
from media.storage.local import LocalStorage
from media.storage.signing import verify_download, verify_part, verify_upload

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
Signed = TypeVar("Signed")


def _not_found() -> HttpResponse:
    return error_response(404, "not_found", "No such object.")


def _rate_limited(request: HttpRequest, scope: str = "storage") -> HttpResponse | None:
    """429 once the client IP has spent AUTEUR_RATE_LIMIT_STORAGE_PER_MINUTE (the API's limiter),
    or, for the parts of multipart uploads (scope "storage-parts"), the larger
    AUTEUR_RATE_LIMIT_STORAGE_PARTS_PER_MINUTE: a client sending a large file sends a part every
    fraction of a second, each one worth a full upload.

    These views are outside DRF and its throttles; every request counts, refused ones too, so
    guessing signatures is as limited as fetching.
    """
    limit = (settings.AUTEUR_RATE_LIMIT_STORAGE_PARTS_PER_MINUTE if scope == "storage-parts"
             else settings.AUTEUR_RATE_LIMIT_STORAGE_PER_MINUTE)
    throttle = SlidingWindowThrottle()
    if throttle.allow_client(Request(request), scope=scope, limit=limit):
        return None
    wait = math.ceil(throttle.wait() or 1)
    refused = error_response(
        429, "rate_limited", "Too many requests to storage URLs; try again later.", {"retry_after_seconds": wait}
    )
    refused["Retry-After"] = str(wait)
    return refused


def _admitted(
    request: HttpRequest, key: str, *, methods: tuple[str, ...], hint: str, verify: Callable[[str, str], Signed],
    scope: str = "storage",
) -> tuple[LocalStorage, Signed] | HttpResponse:
    """The storage and what the URL's token allows, or the answer refusing the request."""
    storage = get_local_storage()
    if storage is None:
        return _not_found()
    limited = _rate_limited(request, scope)
    if limited is not None:
        return limited
    if request.method not in methods:
        refused = error_response(405, "method_not_allowed", hint)
        refused["Allow"] = ", ".join(methods)
        return refused
    try:
        return storage, verify(key, request.GET.get("token", ""))
    except SignatureInvalid as exc:
        return error_response(403, exc.code, exc.message)


def _declared_length(request: HttpRequest) -> int | HttpResponse:
    """The body's Content-Length, or the 411 refusing a body of undeclared length."""
    raw_length = request.META.get("CONTENT_LENGTH", "")
    if not raw_length.isdigit():
        return error_response(411, "length_required", "Send a Content-Length header (chunked uploads are refused).")
    return int(raw_length)


def _body_chunks(request: HttpRequest, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = request.read(min(CHUNK_SIZE, remaining))
        if not chunk:
            # The client went away (or lied about Content-Length): keep nothing.
            raise IncompleteUploadBody
        remaining -= len(chunk)
        yield chunk


@csrf_exempt
def upload(request: HttpRequest, key: str) -> HttpResponse:
    """PUT the object's bytes to a URL from ``POST /projects/{id}/media/upload-url``."""
    admitted = _admitted(request, key, methods=("PUT",), hint="Upload with PUT.", verify=verify_upload)
    if isinstance(admitted, HttpResponse):
        return admitted
    storage, signed = admitted

    given_type = request.META.get("CONTENT_TYPE", "").strip().lower()
    if given_type != signed.content_type.lower():
        return error_response(
            403,
            "content_type_mismatch",
            "The Content-Type header must be exactly the type this URL was issued for.",
            {"expected": signed.content_type},
        )
    length = _declared_length(request)
    if isinstance(length, HttpResponse):
        return length
    if length > signed.size_limit:
        # Refused before a byte is read: nothing is written.
        return error_response(
            413,
            "body_too_large",
            "The body is larger than this URL allows.",
            {"max_bytes": signed.size_limit},
        )
    # A GPU call's output target stays open until its URL expires: its store moves the object away
    # before reading it, and the lease made with the target deletes whatever lands there later.
    if not is_staging_key(signed.key) and not upload_is_open(key=signed.key):
        # Checked last, right before writing: confirm has moved the file away (or it was
        # deleted), and the URL, still signed and unexpired, must no longer change anything.
        return error_response(
            409, "upload_closed", "This upload was already confirmed or deleted; ask the API for a new upload URL."
        )
    try:
        storage.write_stream(signed.key, _body_chunks(request, length), signed.content_type)
    except IncompleteUploadBody:
        return error_response(400, "incomplete_body", "The body ended before Content-Length bytes were sent.")
    return HttpResponse(status=200)


# The one query (whether the file still waits for its bytes) names the file by the signed key, not by
# a caller: this view has no user to act as, so it reads with the owner's login (auteur/core/rls.py).
upload.reads_across_users = True  # type: ignore[attr-defined]


@csrf_exempt
def upload_part(request: HttpRequest, upload_id: str, number: int) -> HttpResponse:
    """PUT one part of a multipart upload, to a URL from ``POST .../media/{id}/parts``: exactly the
    signed size, with the signed SHA-256 in CHECKSUM_HEADER; a body whose SHA-256 differs is
    refused (400 ``checksum_mismatch``) and nothing of it is kept. PUT again to replace a part."""
    admitted = _admitted(request, f"{upload_id}/{number}", methods=("PUT",), hint="Upload a part with PUT.",
                         verify=lambda _key, token: verify_part(upload_id, number, token), scope="storage-parts")
    if isinstance(admitted, HttpResponse):
        return admitted
    storage, signed = admitted
    header = "HTTP_" + CHECKSUM_HEADER.upper().replace("-", "_")
    if signed.sha256 and request.META.get(header, "") != signed.sha256:
        return error_response(403, "checksum_header_mismatch",
                              f"Send the {CHECKSUM_HEADER} header this URL was issued for, exactly.",
                              {"expected": signed.sha256})
    length = _declared_length(request)
    if isinstance(length, HttpResponse):
        return length
    if length != signed.size and (signed.sha256 or length > signed.size):  # unbound parts: at most that size
        return error_response(400, "part_size_mismatch", "A part must be exactly the size its URL was issued for."
                              if signed.sha256 else "A part may not be larger than its URL was issued for.",
                              {"expected_bytes": signed.size})
    try:
        stored = storage.write_part(signed.key, upload_id, number, _body_chunks(request, length), signed.sha256)
    except IncompleteUploadBody:
        return error_response(400, "incomplete_body", "The body ended before Content-Length bytes were sent.")
    except FileNotFoundError:
        return error_response(409, "upload_closed",
                              "This upload was already completed or deleted; ask the API for a new upload URL.")
    if not stored:
        return error_response(400, "checksum_mismatch",
                              f"The part's bytes do not match its {CHECKSUM_HEADER}; nothing was kept.")
    response = HttpResponse(status=200)
    if signed.sha256:
        response["ETag"] = f'"{signed.sha256}"'
    return response


def _ranged(fh: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    try:
        fh.seek(start)
        remaining = length
        while remaining > 0:
            chunk = fh.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


def _parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """(start, end) inclusive; None for no usable Range (serve it all); False if unsatisfiable."""
    match = _RANGE_RE.match(header.strip())
    if not match or (not match[1] and not match[2]):
        return None  # absent, multi-range or malformed: RFC 9110 lets a server ignore it
    if not match[1]:
        suffix = int(match[2])
        if suffix == 0:
            return False
        return max(0, size - suffix), size - 1
    start = int(match[1])
    end = int(match[2]) if match[2] else size - 1
    if start >= size or end < start:
        return False
    return start, min(end, size - 1)


def _object_response(
    request: HttpRequest, storage: LocalStorage, key: str, *, size: int, headers: dict[str, str], etag: str = "",
    content_type: str = "",
) -> HttpResponseBase:
    """The object's bytes for a GET (all of them, or the one range asked for) or its headers for a
    HEAD, with ``headers`` added. A Range is honoured only under an ``If-Range`` that names the
    object's ``etag`` as it is now, when one is given (otherwise the whole object is sent). The
    Content-Type is the one it was stored with unless ``content_type`` is given."""
    content_type = content_type or storage.content_type(key) or "application/octet-stream"
    if_range = request.headers.get("If-Range")
    byte_range = None if if_range is not None and if_range != etag else _parse_range(
        request.headers.get("Range", ""), size)
    if byte_range is False:
        unsatisfiable = error_response(416, "range_not_satisfiable", "The requested range is outside the object.")
        unsatisfiable["Content-Range"] = f"bytes */{size}"
        return unsatisfiable
    response: HttpResponseBase
    if request.method == "HEAD":
        response = HttpResponse(content_type=content_type)
        response["Content-Length"] = str(size)
    elif byte_range is None:
        response = FileResponse(storage.open(key), content_type=content_type)
        response["Content-Length"] = str(size)
    else:
        assert isinstance(byte_range, tuple)
        start, end = byte_range
        response = StreamingHttpResponse(
            _ranged(storage.open(key), start, end - start + 1), status=206, content_type=content_type
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    for name, value in headers.items():
        response[name] = value
    return response


def download(request: HttpRequest, key: str) -> HttpResponseBase:
    """GET the object from a URL the API signed (``download_url``, ``thumbnail_url``)."""
    admitted = _admitted(request, key, methods=("GET", "HEAD"), hint="Download with GET.", verify=verify_download)
    if isinstance(admitted, HttpResponse):
        return admitted
    storage, signed = admitted
    size = storage.head(signed.key)
    if size is None:
        return _not_found()
    # The URL is a credential: no shared cache may keep the response.
    headers = {"Cache-Control": "private, max-age=0, no-store"}
    disposition = content_disposition(signed.filename)
    if disposition:
        headers["Content-Disposition"] = disposition
    return _object_response(request, storage, signed.key, size=size, headers=headers)


def public(request: HttpRequest, key: str) -> HttpResponseBase:
    """GET a published file's public copy (``public_url``): no signature, as from a CDN that serves
    a public bucket, and cacheable by anyone for AUTEUR_CDN_CACHE_MAX_AGE_SECONDS. Only with the
    local backend (404 otherwise); a CDN may pull from here, or ``make run`` serves it directly."""
    storage = get_public_storage()
    if get_local_storage() is None or not isinstance(storage, LocalStorage):
        return _not_found()
    limited = _rate_limited(request)
    if limited is not None:
        return limited
    if request.method not in ("GET", "HEAD"):
        refused = error_response(405, "method_not_allowed", "Download with GET.")
        refused["Allow"] = "GET, HEAD"
        return refused
    try:
        facts = storage.path(key).stat()
    except (InvalidKey, FileNotFoundError, NotADirectoryError):
        return _not_found()
    if not stat.S_ISREG(facts.st_mode):
        return _not_found()
    # A published key is written once (a new publication gets a new key), so its size and time
    # of writing name its version.
    etag = f'"{facts.st_size:x}-{facts.st_mtime_ns:x}"'
    modified = int(facts.st_mtime)
    # Served from the API's origin: only plain media is served as itself, and nothing served here
    # may run (no sniffing, a sandbox without scripts); anything else is a download.
    content_type = public_content_type(storage.content_type(key) or "")
    headers = {
        "Cache-Control": f"public, max-age={settings.AUTEUR_CDN_CACHE_MAX_AGE_SECONDS}",
        "ETag": etag,
        "Last-Modified": http_date(modified),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; media-src 'self'; img-src 'self'; sandbox",
    }
    if content_type == "application/octet-stream":
        headers["Content-Disposition"] = "attachment"
    not_modified = get_conditional_response(request, etag=etag, last_modified=modified)
    if not_modified is not None:
        for name, value in headers.items():
            not_modified[name] = value
        return not_modified
    return _object_response(request, storage, key, size=facts.st_size, headers=headers, etag=etag,
                            content_type=content_type)
