"""The S3 backend: S3 or an S3-compatible store (Cloudflare R2, MinIO) through one boto3 client.

Clients upload and download straight to/from the bucket with presigned URLs; the PUT URL signs
the Content-Type and Content-Length headers, so the object can only be that type and size.

A presigned PUT cannot be revoked before it expires. Confirming an upload therefore moves the
object (``move``: CopyObject to its final key, then DeleteObject of the upload key) rather than
pinning the uploaded version or ETag: the final key is one no URL can write, so every reader
(the probe, a job's presigned GET, a download) reads it as it was priced without having to
know about versions, and it works on stores without object versioning. A PUT through the old
URL afterwards only makes a new object under the upload key, which nothing reads and which
is deleted once the URL has expired (media/services/uploads.py).
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from media.errors import StorageError
from media.storage.base import CHECK_TIMEOUT_SECONDS, ObjectStorage, content_disposition, validate_key

if TYPE_CHECKING:
    from botocore.exceptions import ClientError


def _is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


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
        self.bucket = bucket
        self._connection = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key or None,
            "aws_secret_access_key": secret_key or None,
        }
        self._addressing_style = addressing_style or "auto"
        # Every outbound call has a timeout; botocore retries throttling and 5xx itself.
        self.client = self._client(connect_timeout=5, read_timeout=60, max_attempts=4)

    def _client(self, *, connect_timeout: float, read_timeout: float, max_attempts: int) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": self._addressing_style},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        )
        return boto3.session.Session().client("s3", config=config, **self._connection)

    @functools.cached_property
    def _check_client(self) -> Any:
        # The same connection with a short timeout and a single attempt: /readyz must answer fast.
        return self._client(
            connect_timeout=CHECK_TIMEOUT_SECONDS, read_timeout=CHECK_TIMEOUT_SECONDS, max_attempts=1
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

    def _put_url(
        self, key: str, content_type: str, size_bytes: int, exact: bool, *, ttl: int, expires_at: datetime
    ) -> str:
        # ContentType and ContentLength become signed headers: S3 refuses any other type or size.
        # A presigned PUT cannot sign a range of lengths: an undeclared size is checked at confirm.
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ContentType": content_type}
        if exact:
            params["ContentLength"] = size_bytes
        return str(self.client.generate_presigned_url(
            "put_object",
            Params=params,
            ExpiresIn=ttl,
            HttpMethod="PUT",
        ))

    def _get_url(self, key: str, filename: str, *, ttl: int, expires_at: datetime) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        disposition = content_disposition(filename)
        if disposition:
            params["ResponseContentDisposition"] = disposition
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl))

    def head(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        validate_key(key)
        try:
            with self._errors():
                response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
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

    def list_folders(self, prefix: str) -> Iterator[str]:
        validate_key(prefix.rstrip("/"))
        prefix = prefix.rstrip("/") + "/"
        with self._errors():
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    yield common["Prefix"][len(prefix):].rstrip("/")

    def open(self, key: str) -> IO[bytes]:
        from botocore.exceptions import ClientError

        validate_key(key)
        try:
            with self._errors():
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if _is_missing(exc):
                raise FileNotFoundError(key) from exc
            raise
        return body

    def save(self, key: str, fileobj: IO[bytes], content_type: str) -> None:
        validate_key(key)
        with self._errors():
            # Multipart above 8 MiB, so large outputs stream instead of sitting in memory.
            self.client.upload_fileobj(fileobj, self.bucket, key, ExtraArgs={"ContentType": content_type})

    def copy(self, src_key: str, dst_key: str) -> None:
        from botocore.exceptions import ClientError

        validate_key(src_key)
        validate_key(dst_key)
        try:
            with self._errors():
                # Server-side (multipart above 8 MiB): no byte passes through this process.
                self.client.copy({"Bucket": self.bucket, "Key": src_key}, self.bucket, dst_key)
        except ClientError as exc:
            if _is_missing(exc):
                raise FileNotFoundError(src_key) from exc
            raise

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
                if _is_missing(exc):
                    raise FileNotFoundError(key) from exc
                raise
            yield path
