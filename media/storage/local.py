"""The local backend: Django's FileSystemStorage, with uploads and downloads through URLs the API signs.

It stands in for S3 when no bucket is configured, with the same rules: the URL is the
credential, it expires, and an upload is bound to one key, one content type and a size limit
(media/storage/signing.py signs them, media/storage/local_views.py serves them).

Every object reaches the disk through the storage's ``save`` as a finished file beside its
destination, which FileSystemStorage moves into place with a rename: a reader never sees half an
object, and a confirmed upload is renamed away from a key that a late PUT may still write.
The Content-Type an object was stored with is kept in a sidecar under a dot-name, which no key
can reach (KEY_RE).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import posixpath
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.core.files.storage import FileSystemStorage

from media.errors import InvalidKey, StorageError
from media.storage.base import CHUNK_SIZE, ObjectStorage, UploadedPart, validate_key
from media.storage.signing import sign_download, sign_part, sign_upload

UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}\Z")


class _FinishedFile(File):
    """A complete file on the storage's disk: FileSystemStorage moves it into place (a rename)
    instead of copying its bytes, as it does for Django's temporary uploads."""

    def temporary_file_path(self) -> str:
        return str(self.name)


def _meta_name(key: str) -> str:
    folder, name = posixpath.split(key)
    return posixpath.join(folder, f".{name}.meta.json")


class LocalStorage(ObjectStorage):
    """Files in a FileSystemStorage; uploads and downloads through URLs the API signs."""

    name = "local"
    backend: FileSystemStorage

    @property
    def public_base_url(self) -> str:
        """The base of the URLs this backend signs (the API serves them)."""
        return str(getattr(settings, "AUTEUR_PUBLIC_BASE_URL", "http://localhost:8000")).rstrip("/")

    # ---- paths
    @property
    def root(self) -> Path:
        return Path(self.backend.location)

    def path(self, key: str) -> Path:
        validate_key(key)
        try:
            path = Path(self.backend.path(key))
        except SuspiciousFileOperation:
            raise InvalidKey("Invalid storage key.") from None
        # KEY_RE already forbids "..", absolute paths and dot-segments; this is the backstop.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidKey("Invalid storage key.")
        return path

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
    def content_type(self, key: str) -> str | None:
        try:
            with self.backend.open(_meta_name(validate_key(key)), "rb") as fh:
                meta = json.loads(fh.read())
        except (FileNotFoundError, ValueError):
            return None
        value = meta.get("content_type") if isinstance(meta, dict) else None
        return value if isinstance(value, str) else None

    def delete(self, key: str) -> None:
        self.backend.delete(validate_key(key))
        self.backend.delete(_meta_name(key))

    def delete_prefix(self, prefix: str) -> int:
        removed = super().delete_prefix(prefix)
        # What is left is folders and uploads still being written (dot-names): they go with the folder.
        shutil.rmtree(self.path(prefix.rstrip("/")), ignore_errors=True)
        return removed

    def _move_in(self, name: str, finished: Path) -> None:
        self._saved(name, self.backend.save(name, _FinishedFile(None, name=str(finished))))

    def write_stream(self, key: str, chunks: Iterator[bytes], content_type: str) -> int:
        """Write atomically: into a temp file beside the target, which the storage then renames over it.

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
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._move_in_typed(key, tmp, content_type)
        return written

    def save(self, key: str, fileobj: IO[bytes], content_type: str) -> None:
        self.write_stream(key, iter(lambda: fileobj.read(CHUNK_SIZE), b""), content_type)

    def save_file(self, key: str, path: Path, content_type: str) -> None:
        # Renamed beside the target, then over it, where the file is on the storage's filesystem:
        # its bytes are not written again. From another filesystem, copied as `save` does.
        found = os.lstat(path)
        if not stat.S_ISREG(found.st_mode) or found.st_nlink != 1:
            # A file with another name elsewhere would be reachable by it once it is the object.
            raise StorageError("only a regular file with no other link can be moved into the storage")
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
        try:
            os.rename(path, staged)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            super().save_file(key, path, content_type)
            return
        self._move_in_typed(key, staged, content_type)

    def _move_in_typed(self, key: str, finished: Path, content_type: str) -> None:
        """A finished file beside the target moved in under `key`, its Content-Type sidecar first;
        when that fails, neither is left behind."""
        meta = finished.with_name(finished.name + ".meta")
        try:
            meta.write_text(json.dumps({"content_type": content_type}))
            self._move_in(_meta_name(key), meta)
            self._move_in(key, finished)
        except BaseException:
            for leftover in (finished, meta):
                leftover.unlink(missing_ok=True)
            raise

    def move(self, src_key: str, dst_key: str, *, if_etag: str = "") -> None:
        # A rename: atomic, so a PUT still writing to ``src_key`` lands a new file there later
        # and can never change what is now under ``dst_key``. It moves whatever is there when it
        # runs (this store tags no versions: `stat` gives no ETag), which its caller sizes again.
        if if_etag:
            raise NotImplementedError("local storage has no ETags")
        src = self.path(src_key)
        self.path(dst_key)
        if not src.is_file():
            raise FileNotFoundError(src_key)
        with contextlib.suppress(FileNotFoundError):
            meta = Path(self.backend.path(_meta_name(src_key)))
            if meta.is_file():
                self._move_in(_meta_name(dst_key), meta)
        self._move_in(dst_key, src)

    # ---- multipart uploads: S3's protocol on disk. An upload is a dot-named folder beside the
    # object's key (no key reaches it; deleting the file's prefix takes it along) holding one data
    # file, which each part's PUT (local_views.upload_part) writes at the part's offset, and a
    # record per part stored (its size and checksum), written once its bytes matched. Completing
    # renames the data file into place: no byte is copied, whatever the file's size. PUTs of one
    # part take turns (a lock per part), so a bad body can never overwrite a part recorded good.
    # Every PUT holds the upload's lock shared while it writes, and completing holds it exclusive:
    # no PUT still writing (of any part, listed or not) can change the object once it is made.
    # An upload is its key's only: its id with another key is no upload.
    def _parts_dir(self, key: str, upload_id: str) -> Path:
        if not UPLOAD_ID_RE.match(upload_id):
            raise FileNotFoundError(upload_id)
        folder = self.path(key).parent / f".multipart-{upload_id}"
        try:
            recorded = json.loads((folder / "upload.json").read_text()).get("key", key)
        except (FileNotFoundError, ValueError, AttributeError):
            recorded = key  # not begun yet, or gone: the callers say so
        if recorded != key:
            raise FileNotFoundError(upload_id)
        return folder

    def multipart_start(self, key: str, content_type: str, part_size: int, *, checksums: bool = True) -> str:
        upload_id = secrets.token_urlsafe(24)
        folder = self._parts_dir(key, upload_id)
        folder.mkdir(parents=True)
        (folder / "data").touch()
        (folder / ".upload.lock").touch()
        (folder / "upload.json").write_text(json.dumps({"key": key, "content_type": content_type,
                                                        "part_size": part_size}))
        return upload_id

    def _part_url(
        self, key: str, upload_id: str, number: int, size: int, sha256: str, *, ttl: int, expires_at: datetime
    ) -> str:
        token = sign_part(key=key, upload_id=upload_id, number=number, size=size, sha256=sha256,
                          expires_at=expires_at)
        return f"{self.public_base_url}/storage/part/{upload_id}/{number}?{urlencode({'token': token})}"

    def write_part(self, key: str, upload_id: str, number: int, chunks: Iterator[bytes], sha256: str) -> bool:
        """Write part ``number`` from ``chunks`` at its offset and record it if its SHA-256 (base64)
        is ``sha256`` (any, where ``sha256`` is empty: a part URL "at most" so many bytes); False
        otherwise (the part is then not stored, even if it was before). FileNotFoundError if the
        upload is not open."""
        folder = self._parts_dir(key, upload_id)
        try:
            part_size = json.loads((folder / "upload.json").read_text())["part_size"]
            upload_lock = (folder / ".upload.lock").open("a")
            lock = (folder / f".{number}.lock").open("a")
        except FileNotFoundError:
            raise FileNotFoundError(upload_id) from None
        record = folder / f"{number}.json"
        with upload_lock, lock:
            fcntl.flock(upload_lock, fcntl.LOCK_SH)
            fcntl.flock(lock, fcntl.LOCK_EX)
            digest, size = hashlib.sha256(), 0
            # (Gone once completed: FileNotFoundError, the upload is closed.)
            with (folder / "data").open("r+b") as out:
                out.seek((number - 1) * part_size)
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            found = base64.b64encode(digest.digest()).decode()
            if sha256 and found != sha256:
                record.unlink(missing_ok=True)
                return False
            staged = folder / f".{number}.json.tmp"
            staged.write_text(json.dumps({"size": size, "sha256": found}))
            os.replace(staged, record)
        return True

    def multipart_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        folder = self._parts_dir(key, upload_id)
        if not folder.is_dir():
            raise FileNotFoundError(upload_id)
        parts = []
        for record in folder.glob("[0-9]*.json"):
            facts = json.loads(record.read_text())
            parts.append(UploadedPart(number=int(record.stem), size=facts["size"], etag=facts["sha256"],
                                      sha256=facts["sha256"]))
        return sorted(parts, key=lambda p: p.number)

    def multipart_complete(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        folder = self._parts_dir(key, upload_id)
        try:
            upload = json.loads((folder / "upload.json").read_text())
        except FileNotFoundError:
            raise FileNotFoundError(upload_id) from None
        data = folder / "data"
        with contextlib.ExitStack() as held:
            # The upload's lock, exclusive: every PUT still writing finishes first, and one that
            # comes after finds no data file (409). No byte changes once the object is in place.
            try:
                upload_lock = held.enter_context((folder / ".upload.lock").open("a"))
            except FileNotFoundError:
                raise FileNotFoundError(upload_id) from None
            fcntl.flock(upload_lock, fcntl.LOCK_EX)
            for part in parts:
                lock = held.enter_context((folder / f".{part.number}.lock").open("a"))
                fcntl.flock(lock, fcntl.LOCK_EX)
            os.truncate(data, sum(part.size for part in parts))  # (a larger last part sent earlier, replaced)
            meta = folder / ".meta.json"
            meta.write_text(json.dumps({"content_type": upload["content_type"]}))
            self._move_in(_meta_name(key), meta)
            self._move_in(key, data)
            shutil.rmtree(folder, ignore_errors=True)

    def multipart_abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self._parts_dir(key, upload_id))

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        yield path
