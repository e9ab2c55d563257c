"""Object storage behind one small interface, with two backends chosen by settings.

* S3/R2 (``AWS_STORAGE_BUCKET_NAME`` set): boto3 with the django-storages settings values.
  Clients upload and download straight to/from the bucket with presigned URLs; the PUT URL signs
  the Content-Type and Content-Length headers, so the object can only be that type and size.
* Local (the default): files under ``settings.MEDIA_ROOT``. The API serves the signed URLs
  itself (media/local_storage.py); each URL carries an HMAC-SHA256 over the method, key,
  content type, size limit and expiry, so the same rules hold as with S3.

Workers use ``open`` / ``save`` / ``local_path`` (ffmpeg and PyAV want a file on disk).
Signed URLs are credentials: never log one (auteur/logging.py scrubs query strings anyway).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULT_URL_TTL_SECONDS = 15 * 60
CHUNK_SIZE = 1024 * 1024
# A key is a relative path of safe segments; no segment may start with "." (no "..", and the
# local backend keeps its sidecar files under dot-names, which no key can then reach).
KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
MAX_KEY_LENGTH = 500
# Key-derivation salt for the local backend's URL signatures: a token signed for this purpose
# is worthless anywhere else SECRET_KEY is used (sessions, password resets).
SIGNING_PURPOSE = "auteur.media.local-storage.signed-url.v1"


class StorageError(Exception):
    """The storage could not be reached or failed on its side: worth retrying later."""


class InvalidKey(ValueError):
    """Not a key this application would make: refused before it reaches a path or a bucket."""


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    expires_at: datetime
    # Headers the client must send with the PUT, exactly (they are part of the signature).
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "PUT"


@dataclass(frozen=True)
class PresignedDownload:
    url: str
    expires_at: datetime


def validate_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not KEY_RE.match(key):
        raise InvalidKey("Invalid storage key.")
    return key


def url_ttl_seconds() -> int:
    return int(getattr(settings, "AUTEUR_SIGNED_URL_TTL_SECONDS", DEFAULT_URL_TTL_SECONDS))


def _expiry(expires_in: int | None) -> tuple[int, datetime]:
    ttl = url_ttl_seconds() if expires_in is None else expires_in
    exp = int(time.time()) + ttl
    return exp, datetime.fromtimestamp(exp, UTC)


def content_disposition(filename: str | None) -> str | None:
    """An attachment header that survives any filename (RFC 6266: ASCII fallback + UTF-8)."""
    if not filename:
        return None
    ascii_name = re.sub(r'[^A-Za-z0-9._ -]', "_", filename)[:150] or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename[:150], safe='')}"


class ObjectStorage(ABC):
    """What the application needs from object storage, and nothing more."""

    name: str

    @abstractmethod
    def presign_put(
        self, key: str, content_type: str, size_bytes: int, *, expires_in: int | None = None
    ) -> PresignedUpload: ...

    @abstractmethod
    def presign_get(
        self, key: str, filename: str | None = None, *, expires_in: int | None = None
    ) -> PresignedDownload: ...

    @abstractmethod
    def head(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing an absent object is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix/``; returns how many were removed."""

    @abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """A binary stream of the object's bytes (FileNotFoundError if absent)."""

    @abstractmethod
    def save(self, key: str, fileobj: IO[bytes], content_type: str) -> None: ...

    @abstractmethod
    def copy(self, src_key: str, dst_key: str) -> None: ...

    @abstractmethod
    def local_path(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """A path on this machine holding the object's bytes, for ffmpeg and PyAV (a context manager)."""

    @abstractmethod
    def content_type(self, key: str) -> str | None:
        """The Content-Type the object was stored with, or None."""


# ----------------------------------------------------------------------------- local


def _signing_key() -> bytes:
    return hashlib.sha256(f"{SIGNING_PURPOSE}:{settings.SECRET_KEY}".encode()).digest()


def _signature(method: str, key: str, content_type: str, size_limit: str, exp: str, filename: str) -> str:
    # Fields joined by "\n": none of them can contain one (keys and types are validated, the
    # filename's newlines are refused by the caller), so no two field lists sign the same bytes.
    message = "\n".join((method, key, content_type, size_limit, exp, filename)).encode()
    return hmac.new(_signing_key(), message, hashlib.sha256).hexdigest()


class SignatureInvalid(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class VerifiedUpload:
    key: str
    content_type: str
    size_limit: int


@dataclass(frozen=True)
class VerifiedDownload:
    key: str
    filename: str


class LocalStorage(ObjectStorage):
    """Files under a root directory; uploads and downloads through URLs the API signs."""

    name = "local"

    def __init__(self, root: Path, public_base_url: str) -> None:
        self.root = root
        self.public_base_url = public_base_url.rstrip("/")

    # ---- paths
    def path(self, key: str) -> Path:
        validate_key(key)
        path = self.root / key
        # KEY_RE already forbids "..", absolute paths and dot-segments; this is the backstop.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidKey("Invalid storage key.")
        return path

    @staticmethod
    def _meta_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.meta.json")

    # ---- signed URLs
    def presign_put(
        self, key: str, content_type: str, size_bytes: int, *, expires_in: int | None = None
    ) -> PresignedUpload:
        validate_key(key)
        exp, expires_at = _expiry(expires_in)
        sig = _signature("PUT", key, content_type, str(size_bytes), str(exp), "")
        query = urlencode({"ct": content_type, "max": size_bytes, "exp": exp, "sig": sig})
        url = f"{self.public_base_url}/storage/upload/{quote(key)}?{query}"
        return PresignedUpload(url=url, expires_at=expires_at, headers={"Content-Type": content_type})

    def presign_get(
        self, key: str, filename: str | None = None, *, expires_in: int | None = None
    ) -> PresignedDownload:
        validate_key(key)
        exp, expires_at = _expiry(expires_in)
        name = (filename or "").replace("\r", " ").replace("\n", " ")
        sig = _signature("GET", key, "", "", str(exp), name)
        params: dict[str, Any] = {"exp": exp, "sig": sig}
        if name:
            params["name"] = name
        url = f"{self.public_base_url}/storage/download/{quote(key)}?{urlencode(params)}"
        return PresignedDownload(url=url, expires_at=expires_at)

    @staticmethod
    def _check(expected: str, given: str, exp: str) -> None:
        # compare_digest refuses non-ASCII str (TypeError): compare bytes, so garbage is a 403.
        if not given or not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
            raise SignatureInvalid("invalid_signature", "The URL's signature is not valid.")
        # Only a genuine expiry (its signature verified) is reported as expired.
        if int(exp) < time.time():
            raise SignatureInvalid("url_expired", "This URL has expired; ask the API for a new one.")

    def verify_put(self, key: str, query: dict[str, str]) -> VerifiedUpload:
        content_type, size_limit, exp = query.get("ct", ""), query.get("max", ""), query.get("exp", "")
        if not (KEY_RE.match(key) and size_limit.isdigit() and exp.isdigit() and "\n" not in content_type):
            raise SignatureInvalid("invalid_signature", "The URL's signature is not valid.")
        self._check(_signature("PUT", key, content_type, size_limit, exp, ""), query.get("sig", ""), exp)
        return VerifiedUpload(key=key, content_type=content_type, size_limit=int(size_limit))

    def verify_get(self, key: str, query: dict[str, str]) -> VerifiedDownload:
        exp, name = query.get("exp", ""), query.get("name", "")
        if not (KEY_RE.match(key) and exp.isdigit() and "\n" not in name):
            raise SignatureInvalid("invalid_signature", "The URL's signature is not valid.")
        self._check(_signature("GET", key, "", "", exp, name), query.get("sig", ""), exp)
        return VerifiedDownload(key=key, filename=name)

    # ---- objects
    def head(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def content_type(self, key: str) -> str | None:
        try:
            meta = json.loads(self._meta_path(self.path(key)).read_text())
        except (FileNotFoundError, ValueError):
            return None
        value = meta.get("content_type")
        return value if isinstance(value, str) else None

    def delete(self, key: str) -> None:
        path = self.path(key)
        for p in (path, self._meta_path(path)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def delete_prefix(self, prefix: str) -> int:
        directory = self.path(prefix.rstrip("/"))
        if not directory.is_dir():
            return 0
        count = sum(1 for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
        shutil.rmtree(directory, ignore_errors=True)
        return count

    def open(self, key: str) -> IO[bytes]:
        return self.path(key).open("rb")

    def write_stream(self, key: str, chunks: Iterator[bytes], content_type: str) -> int:
        """Write atomically: into a temp file beside the target, then rename over it.

        A reader never sees half an object, and an upload cut off half-way leaves nothing.
        The iterator may raise to abort; the temp file is then removed.
        """
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        tmp = Path(tmp_name)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
            meta_tmp = tmp.with_name(tmp.name + ".meta")
            meta_tmp.write_text(json.dumps({"content_type": content_type}))
            meta_tmp.replace(self._meta_path(path))
            tmp.replace(path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return written

    def save(self, key: str, fileobj: IO[bytes], content_type: str) -> None:
        self.write_stream(key, iter(lambda: fileobj.read(CHUNK_SIZE), b""), content_type)

    def copy(self, src_key: str, dst_key: str) -> None:
        content_type = self.content_type(src_key) or "application/octet-stream"
        with self.open(src_key) as src:
            self.save(dst_key, src, content_type)

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        yield path


# ----------------------------------------------------------------------------- S3 / R2


class S3ObjectStorage(ObjectStorage):
    """S3 or an S3-compatible store (Cloudflare R2, MinIO) through boto3."""

    name = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str | None,
        access_key: str | None,
        secret_key: str | None,
        addressing_style: str | None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": addressing_style or "auto"},
                # Every outbound call has a timeout; botocore retries throttling and 5xx itself.
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 4, "mode": "standard"},
            ),
        )

    @staticmethod
    def _transient(exc: Exception) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return int(status) >= 500 or exc.response.get("Error", {}).get("Code") in ("SlowDown", "Throttling")
        return isinstance(exc, BotoCoreError)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            if self._transient(exc):
                raise StorageError(f"object storage failed: {type(exc).__name__}") from exc
            raise

    def presign_put(
        self, key: str, content_type: str, size_bytes: int, *, expires_in: int | None = None
    ) -> PresignedUpload:
        validate_key(key)
        ttl = url_ttl_seconds() if expires_in is None else expires_in
        # ContentType and ContentLength become signed headers: S3 refuses any other type or size.
        url = self.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type, "ContentLength": size_bytes},
            ExpiresIn=ttl,
            HttpMethod="PUT",
        )
        return PresignedUpload(
            url=url,
            expires_at=datetime.fromtimestamp(int(time.time()) + ttl, UTC),
            headers={"Content-Type": content_type},
        )

    def presign_get(
        self, key: str, filename: str | None = None, *, expires_in: int | None = None
    ) -> PresignedDownload:
        validate_key(key)
        ttl = url_ttl_seconds() if expires_in is None else expires_in
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        disposition = content_disposition(filename)
        if disposition:
            params["ResponseContentDisposition"] = disposition
        url = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)
        return PresignedDownload(url=url, expires_at=datetime.fromtimestamp(int(time.time()) + ttl, UTC))

    def head(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        validate_key(key)
        try:
            with self._errors():
                response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(response["ContentLength"])

    def content_type(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            with self._errors():
                return str(self.client.head_object(Bucket=self.bucket, Key=validate_key(key))["ContentType"])
        except ClientError:
            return None

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._errors():
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        validate_key(prefix.rstrip("/"))
        prefix = prefix.rstrip("/") + "/"
        removed = 0
        with self._errors():
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objects:  # at most 1000 per page, which is also delete_objects' limit
                    response = self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                    )
                    if response.get("Errors"):
                        # A 200 can still carry per-key failures: retry the whole prefix later.
                        raise StorageError(f"object storage kept {len(response['Errors'])} object(s)")
                    removed += len(objects)
        return removed

    def open(self, key: str) -> IO[bytes]:
        from botocore.exceptions import ClientError

        validate_key(key)
        try:
            with self._errors():
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(key) from exc
            raise
        return body

    def save(self, key: str, fileobj: IO[bytes], content_type: str) -> None:
        validate_key(key)
        with self._errors():
            # Multipart above 8 MiB, so large outputs stream instead of sitting in memory.
            self.client.upload_fileobj(fileobj, self.bucket, key, ExtraArgs={"ContentType": content_type})

    def copy(self, src_key: str, dst_key: str) -> None:
        validate_key(src_key)
        validate_key(dst_key)
        with self._errors():
            self.client.copy({"Bucket": self.bucket, "Key": src_key}, self.bucket, dst_key)

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        from botocore.exceptions import ClientError

        validate_key(key)
        suffix = Path(key).suffix[:16]
        with tempfile.TemporaryDirectory(prefix="auteur-media-") as tmpdir:
            path = Path(tmpdir) / f"object{suffix}"
            try:
                with self._errors():
                    self.client.download_file(self.bucket, key, str(path))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    raise FileNotFoundError(key) from exc
                raise
            yield path


# ----------------------------------------------------------------------------- selection


# One client per configuration: building one costs tens of milliseconds; clients are thread-safe.
_s3_storage = functools.lru_cache(maxsize=4)(S3ObjectStorage)


def get_storage() -> ObjectStorage:
    """The configured backend: S3/R2 when a bucket is set (as in settings.STORAGES), else local."""
    bucket = getattr(settings, "AWS_STORAGE_BUCKET_NAME", "")
    if bucket:
        return _s3_storage(
            bucket=bucket,
            endpoint_url=getattr(settings, "AWS_S3_ENDPOINT_URL", None) or None,
            region=getattr(settings, "AWS_S3_REGION_NAME", None) or None,
            access_key=getattr(settings, "AWS_ACCESS_KEY_ID", None) or None,
            secret_key=getattr(settings, "AWS_SECRET_ACCESS_KEY", None) or None,
            addressing_style=getattr(settings, "AWS_S3_ADDRESSING_STYLE", None) or None,
        )
    return LocalStorage(
        Path(settings.MEDIA_ROOT),
        getattr(settings, "AUTEUR_PUBLIC_BASE_URL", "http://localhost:8000"),
    )


def get_local_storage() -> LocalStorage | None:
    """The local backend when it is the configured one (its URL views are off otherwise)."""
    storage = get_storage()
    return storage if isinstance(storage, LocalStorage) else None


@receiver(setting_changed)
def _forget_clients(setting: str, **kwargs: Any) -> None:
    if setting.startswith("AWS_"):
        _s3_storage.cache_clear()

