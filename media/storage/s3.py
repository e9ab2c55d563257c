"""The S3 backend: S3 or an S3-compatible store (Cloudflare R2, MinIO) through django-storages.

Reads, writes, deletes, existence and sizes go through the Django storage
(``storages.backends.s3.S3Storage``, configured in STORAGES). The rule for boto3: it is called
only where django-storages has no operation, and only with the storage's own session and
configuration (its credentials, endpoint and timeouts), all in this module. Those places are:
presigned URLs (``_signer``: django-storages signs a GET with its own endpoint only, and a client
outside the store's network needs the public address, AWS_S3_PUBLIC_ENDPOINT_URL) for downloads,
direct uploads (``_put_url``) and multipart uploads beside them (create,
presign each part, list the parts, complete, abort); the server-side copy behind ``move`` (no byte
passes through this process), made conditional on an ETag, and the one into the public bucket that
publishes a file (``copy_public``, with its own headers); the HEAD that reads the ETag with
the size (``stat``: the storage's ``size`` gives the size alone); batched deletes and the
page-by-page folder listing (one request per 1,000 keys, never a whole listing in memory);
downloading an object straight to a file for ffmpeg; and the readiness check's HEAD of the bucket
with a short timeout. Everything else goes through the storage.

Clients upload and download straight to/from the bucket with presigned URLs; the PUT URL signs
the Content-Type and Content-Length headers, so the object can only be that type and size.

A presigned PUT cannot be revoked before it expires. Confirming an upload therefore moves the
object (``move``: CopyObject to its final key, then DeleteObject of the upload key) rather than
pinning the uploaded version or ETag for its readers: the final key is one no URL can write, so every reader
(the probe, a job's presigned GET, a download) reads it as it was priced without having to
know about versions, and it works on stores without object versioning. A PUT through the old
URL afterwards only makes a new object under the upload key, which nothing reads and which
is deleted once the URL has expired (media/services/uploads.py). The move itself is made on the
ETag confirm read with the size it checked (``stat``, ``copy(if_etag=...)``): a PUT landing
between that HEAD and the copy fails the copy (412) instead of moving an object nobody sized.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import weakref
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.storage import Storage

from media.errors import ObjectChanged, StorageError
from media.storage.base import (
    CHECK_TIMEOUT_SECONDS,
    ObjectStat,
    ObjectStorage,
    PartsRefused,
    UploadedPart,
    content_disposition,
    validate_key,
)

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from storages.backends.s3 import S3Storage


# The signing clients for a public endpoint: {storage: {endpoint: client}}.
_SIGNERS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class S3ObjectStorage(ObjectStorage):
    """S3 or an S3-compatible store (Cloudflare R2, MinIO) through django-storages' S3Storage.

    Its signed URLs name AWS_S3_PUBLIC_ENDPOINT_URL where one is set (docker-compose.yml: the
    media site Caddy serves in front of MinIO, which passes the Host header through unchanged, so
    that the store checks the signature over the name the client used), else the endpoint itself.
    `public=False`: the store's own endpoint, for readers inside the deployment (`for_engines`)."""

    name = "s3"
    backend: S3Storage

    def __init__(self, backend: Storage, *, public: bool = True) -> None:
        super().__init__(backend)
        self.public = public

    def for_engines(self) -> S3ObjectStorage:
        """Engines that run in this deployment's workers (AUTEUR_GPU_LOCAL_BACKENDS) reach the store
        at its own endpoint, not at the public name (which may not resolve, or not be trusted, inside
        the deployment's network); Modal's reach it at the public name, as clients do."""
        if not self.public or settings.AUTEUR_GPU_BACKEND not in settings.AUTEUR_GPU_LOCAL_BACKENDS:
            return self
        return S3ObjectStorage(self.backend, public=False)

    @property
    def _signer(self) -> Any:
        """The boto3 client that signs URLs: one for the public endpoint, or the storage's own.
        Signing is computation only (no request is sent), so the public name need not resolve here."""
        endpoint = getattr(settings, "AWS_S3_PUBLIC_ENDPOINT_URL", "") if self.public else ""
        if not endpoint or endpoint == self.backend.endpoint_url:
            return self.client
        clients = _SIGNERS.setdefault(self.backend, {})
        client = clients.get(endpoint)
        if client is None:
            client = self.backend._create_session().client(
                "s3",
                region_name=self.backend.region_name,
                use_ssl=self.backend.use_ssl,
                endpoint_url=endpoint,
                verify=self.backend.verify,
                config=self.backend.client_config,
            )
            # boto3's clients may be shared by threads; two threads may both make one here: either will do.
            clients[endpoint] = client
        return client

    @property
    def bucket(self) -> str:
        return str(self.backend.bucket_name)

    @property
    def client(self) -> Any:
        """The storage's own boto3 client (one per thread), for what django-storages does not do."""
        return self.backend.connection.meta.client

    @functools.cached_property
    def _check_client(self) -> Any:
        # The storage's connection with a short timeout and a single attempt: /readyz must answer fast.
        from botocore.config import Config

        config = self.backend.client_config.merge(
            Config(
                connect_timeout=CHECK_TIMEOUT_SECONDS,
                read_timeout=CHECK_TIMEOUT_SECONDS,
                retries={"max_attempts": 1, "mode": "standard"},
            )
        )
        return self.backend._create_session().client(
            "s3",
            region_name=self.backend.region_name,
            use_ssl=self.backend.use_ssl,
            endpoint_url=self.backend.endpoint_url,
            verify=self.backend.verify,
            config=config,
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

    def check(self) -> None:
        # A HEAD of the bucket proves credentials, bucket and reachability.
        with self._errors():
            self._check_client.head_bucket(Bucket=self.bucket)

    # ---- signed URLs
    def _put_url(
        self, key: str, content_type: str, size_bytes: int, exact: bool, *, ttl: int, expires_at: datetime
    ) -> str:
        # ContentType and ContentLength become signed headers: S3 refuses any other type or size.
        # A presigned PUT cannot sign a range of lengths: an undeclared size is checked at confirm.
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ContentType": content_type}
        if exact:
            params["ContentLength"] = size_bytes
        return str(self._signer.generate_presigned_url("put_object", Params=params, ExpiresIn=ttl, HttpMethod="PUT"))

    # ---- multipart uploads: the client PUTs each part straight to the bucket. Each part's URL
    # signs its length and its SHA-256 (S3 refuses a body that does not match: BadDigest); the
    # upload is made with the SHA-256 algorithm, so completing checks every part's checksum again.
    # A bucket lifecycle rule (AbortIncompleteMultipartUpload) is the backstop for parts of an
    # upload nobody aborted.
    def multipart_start(self, key: str, content_type: str, part_size: int, *, checksums: bool = True) -> str:
        with self._errors():
            answer = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=validate_key(key), ContentType=content_type,
                **({"ChecksumAlgorithm": "SHA256"} if checksums else {}))
        return str(answer["UploadId"])

    def _part_url(
        self, key: str, upload_id: str, number: int, size: int, sha256: str, *, ttl: int, expires_at: datetime
    ) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": number}
        if sha256:  # S3 signs an exact length only: a part "at most" so many bytes is checked when completed
            params.update(ContentLength=size, ChecksumSHA256=sha256)
        return str(self._signer.generate_presigned_url("upload_part", Params=params, ExpiresIn=ttl, HttpMethod="PUT"))

    def multipart_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        from botocore.exceptions import ClientError

        parts: list[UploadedPart] = []
        marker = 0
        try:
            with self._errors():
                while True:  # a page of at most 1,000 parts per request
                    page = self.client.list_parts(Bucket=self.bucket, Key=validate_key(key), UploadId=upload_id,
                                                  PartNumberMarker=marker)
                    parts += [UploadedPart(number=int(p["PartNumber"]), size=int(p["Size"]), etag=str(p["ETag"]),
                                           sha256=str(p.get("ChecksumSHA256") or "")) for p in page.get("Parts", [])]
                    if not page.get("IsTruncated"):
                        return parts
                    marker = int(page["NextPartNumberMarker"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404"):
                raise FileNotFoundError(key) from exc
            raise

    def multipart_complete(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        from botocore.exceptions import ClientError

        listed = [{"PartNumber": p.number, "ETag": p.etag, **({"ChecksumSHA256": p.sha256} if p.sha256 else {})}
                  for p in parts]
        try:
            with self._errors():
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=validate_key(key), UploadId=upload_id,
                                                      MultipartUpload={"Parts": listed})
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchUpload", "404"):
                raise FileNotFoundError(key) from exc
            if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                raise PartsRefused(code) from exc
            raise

    def multipart_abort(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            with self._errors():
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=validate_key(key), UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchUpload", "404"):
                raise

    def _get_url(self, key: str, filename: str, *, ttl: int, expires_at: datetime) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        disposition = content_disposition(filename)
        if disposition:
            params["ResponseContentDisposition"] = disposition
        with self._errors():
            return str(self._signer.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl))

    # ---- objects: the storage's operations, with transient failures as StorageError
    def head(self, key: str) -> int | None:
        with self._errors():
            return super().head(key)

    def exists(self, key: str) -> bool:
        with self._errors():
            return super().exists(key)

    def open(self, key: str) -> IO[bytes]:
        with self._errors():
            fh = super().open(key)
            # S3File reads the object on first use: fetch it here, where a failure is reported.
            fh.read(0)
        return fh

    def save(self, key: str, fileobj: IO[bytes], content_type: str) -> None:
        with self._errors():
            # Multipart above 8 MiB (the storage's transfer config), so large outputs stream.
            super().save(key, fileobj, content_type)

    def delete(self, key: str) -> None:
        with self._errors():
            super().delete(key)

    def content_type(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            with self._errors(), self.backend.open(validate_key(key), "rb") as fh:
                return str(fh.obj.content_type)  # S3File's object, loaded by the HEAD that opened it
        except (ClientError, FileNotFoundError):
            return None

    # ---- what django-storages does not do (boto3, through the storage's connection)
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
            # And the uploads in progress there, whose parts S3 keeps (and bills) until aborted.
            uploads = self.client.get_paginator("list_multipart_uploads")
            for page in uploads.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    self.multipart_abort(upload["Key"], upload["UploadId"])
        return removed

    def list_folders(self, prefix: str) -> Iterator[str]:
        validate_key(prefix.rstrip("/"))
        prefix = prefix.rstrip("/") + "/"
        with self._errors():
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    yield common["Prefix"][len(prefix):].rstrip("/")

    def stat(self, key: str) -> ObjectStat | None:
        from botocore.exceptions import ClientError

        try:
            with self._errors():
                answer = self.client.head_object(Bucket=self.bucket, Key=validate_key(key))
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return ObjectStat(size=int(answer["ContentLength"]), etag=str(answer["ETag"]))

    def copy(self, src_key: str, dst_key: str, *, if_etag: str = "") -> None:
        from botocore.exceptions import ClientError

        validate_key(src_key)
        validate_key(dst_key)
        # `if_etag`: S3 copies only that version of the source (x-amz-copy-source-if-match, on the
        # CopyObject or on every UploadPartCopy of a multipart copy, and on the HEAD before it),
        # else 412: a PUT through a still-valid URL cannot slip another object in after it was sized.
        extra = {"CopySourceIfMatch": if_etag} if if_etag else None
        try:
            with self._errors():
                # Server-side (multipart above 8 MiB): no byte passes through this process.
                self.client.copy({"Bucket": self.bucket, "Key": src_key}, self.bucket, dst_key, ExtraArgs=extra)
        except ClientError as exc:
            if _is_missing(exc):
                raise FileNotFoundError(src_key) from exc
            if exc.response.get("Error", {}).get("Code") in ("412", "PreconditionFailed"):
                raise ObjectChanged(src_key) from exc
            raise

    def copy_public(
        self, public: ObjectStorage, src_key: str, dst_key: str, *, content_type: str, cache_control: str
    ) -> None:
        from botocore.exceptions import ClientError

        if not isinstance(public, S3ObjectStorage):
            super().copy_public(public, src_key, dst_key, content_type=content_type, cache_control=cache_control)
            return
        validate_key(src_key)
        validate_key(dst_key)
        # REPLACE: the copy gets these headers, not the private object's, which S3 would copy with it.
        extra = {"ContentType": content_type, "CacheControl": cache_control, "MetadataDirective": "REPLACE"}
        try:
            with self._errors():
                # Server-side, from this bucket into the public one with this storage's client (the
                # public bucket shares its endpoint and credentials); multipart above 8 MiB, where
                # each part is copied by the store and the headers go on the upload that makes it.
                self.client.copy({"Bucket": self.bucket, "Key": src_key}, public.bucket, dst_key, ExtraArgs=extra)
        except ClientError as exc:
            if _is_missing(exc):
                raise FileNotFoundError(src_key) from exc
            raise

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """The whole object in a scratch file. Its readers read every byte (the probe measures the
        duration from every packet and hashes the file; pieces are planned from every packet) and
        may be sandboxed without network, so a copy, not a range read, is what serves them."""
        from botocore.exceptions import ClientError

        validate_key(key)
        suffix = Path(key).suffix[:16]
        with tempfile.TemporaryDirectory(prefix="auteur-media-") as tmpdir:
            path = Path(tmpdir) / f"object{suffix}"
            try:
                with self._errors():
                    # Straight to the file: reading through the storage would spool a copy first.
                    self.client.download_file(self.bucket, key, str(path), Config=self.backend.transfer_config)
            except ClientError as exc:
                if _is_missing(exc):
                    raise FileNotFoundError(key) from exc
                raise
            yield path
