"""The local backend's signed URLs: what one URL allows, signed with ``django.core.signing``.

A URL's token holds the method, the key, the expiry and, for an upload, the content type and
size limit it binds, for a download the filename to offer. It is signed with SECRET_KEY (and
still accepted under SECRET_KEY_FALLBACKS during a key rotation) with a salt of its own, so a
token is worthless anywhere else the secret signs (sessions, password resets), and vice versa.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.signing import BadSignature, Signer

from media.errors import SignatureInvalid

SALT = "auteur.media.local-storage.signed-url.v2"


@dataclass(frozen=True)
class VerifiedUpload:
    key: str
    content_type: str
    size_limit: int


@dataclass(frozen=True)
class VerifiedPart:
    key: str
    upload_id: str
    number: int
    size: int
    sha256: str  # base64


@dataclass(frozen=True)
class VerifiedDownload:
    key: str
    filename: str


def _signer() -> Signer:
    # Built per use: it reads SECRET_KEY (and its fallbacks) when it signs or verifies.
    return Signer(salt=SALT)


def sign_upload(*, key: str, content_type: str, size_limit: int, expires_at: datetime) -> str:
    fields = {"m": "PUT", "k": key, "ct": content_type, "max": size_limit, "exp": int(expires_at.timestamp())}
    return _signer().sign_object(fields)


def sign_part(*, key: str, upload_id: str, number: int, size: int, sha256: str, expires_at: datetime) -> str:
    fields = {"m": "PUT-PART", "k": key, "u": upload_id, "n": number, "size": size, "sha": sha256,
              "exp": int(expires_at.timestamp())}
    return _signer().sign_object(fields)


def sign_download(*, key: str, filename: str, expires_at: datetime) -> str:
    return _signer().sign_object({"m": "GET", "k": key, "name": filename, "exp": int(expires_at.timestamp())})


def _verified_fields(method: str, key: str | None, token: str) -> dict[str, Any]:
    """The token's fields if it is genuine, for this method and (unless None: a part's URL names
    its key only in its token) this key."""
    try:
        fields = _signer().unsign_object(token)
    except BadSignature:
        fields = None
    # A token signed for another key or method (a download's for an upload) is not valid here.
    if not isinstance(fields, dict) or fields.get("m") != method or (key is not None and fields.get("k") != key):
        raise SignatureInvalid("invalid_signature", "The URL's signature is not valid.")
    # Only a genuine expiry (its signature verified) is reported as expired.
    if fields["exp"] < time.time():
        raise SignatureInvalid("url_expired", "This URL has expired; ask the API for a new one.")
    return fields


def verify_upload(key: str, token: str) -> VerifiedUpload:
    fields = _verified_fields("PUT", key, token)
    return VerifiedUpload(key=key, content_type=fields["ct"], size_limit=fields["max"])


def verify_part(upload_id: str, number: int, token: str) -> VerifiedPart:
    fields = _verified_fields("PUT-PART", None, token)
    if fields.get("u") != upload_id or fields.get("n") != number:
        raise SignatureInvalid("invalid_signature", "The URL's signature is not valid.")
    return VerifiedPart(key=fields["k"], upload_id=upload_id, number=number, size=fields["size"],
                        sha256=fields["sha"])


def verify_download(key: str, token: str) -> VerifiedDownload:
    return VerifiedDownload(key=key, filename=_verified_fields("GET", key, token)["name"])
