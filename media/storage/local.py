"""The local backend: files under a root directory, uploaded and downloaded through URLs the API signs.

It stands in for S3 when no bucket is configured, with the same rules: the URL is the
credential, it expires, and an upload is bound to one key, one content type and a size limit
(media/storage/signing.py signs them, media/storage/local_views.py serves them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO
from urllib.parse import quote, urlencode

from media.errors import InvalidKey, StorageError
from media.storage.base import CHUNK_SIZE, ObjectStorage, validate_key
from media.storage.signing import sign_download, sign_upload


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

    def check(self) -> None:
        # The root is created on first use; what matters is that this process may write there.
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError("the local storage root is not writable")

    # ---- signed URLs
    def _put_url(
        self, key: str, content_type: str, size_bytes: int, exact: bool, *, ttl: int, expires_at: datetime
    ) -> str:
        # The local PUT view refuses a body over the signed limit, exact or not.
        token = sign_upload(key=key, content_type=content_type, size_limit=size_bytes, expires_at=expires_at)
        return f"{self.public_base_url}/storage/upload/{quote(key)}?{urlencode({'token': token})}"

    def _get_url(self, key: str, filename: str, *, ttl: int, expires_at: datetime) -> str:
        token = sign_download(key=key, filename=filename, expires_at=expires_at)
        return f"{self.public_base_url}/storage/download/{quote(key)}?{urlencode({'token': token})}"

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

    def list_folders(self, prefix: str) -> Iterator[str]:
        directory = self.path(prefix.rstrip("/"))
        if directory.is_dir():
            yield from sorted(p.name for p in directory.iterdir() if p.is_dir())

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

    def move(self, src_key: str, dst_key: str) -> None:
        # A rename: atomic, so a PUT still writing to ``src_key`` lands a new file there later
        # and can never change what is now under ``dst_key``.
        src, dst = self.path(src_key), self.path(dst_key)
        if not src.is_file():
            raise FileNotFoundError(src_key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._meta_path(src).replace(self._meta_path(dst))
        src.replace(dst)

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        yield path
