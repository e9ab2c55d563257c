"""JSON files that readers in other processes never see half-written."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


def _tmp_with(path: Path, data: Any) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` in one rename: a reader sees the old file or the new one."""
    tmp = _tmp_with(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_once(path: Path, data: Any) -> bool:
    """Create `path` with `data` unless it exists; True if this call wrote it (first writer wins).

    A hard link fails if the target exists, atomically: used for a call's final status, which the
    runner (finished / timed out) and a canceller may race to write.
    """
    tmp = _tmp_with(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


class TooLarge(ValueError):
    """The file is larger than its reader accepts (written by a process it does not trust)."""


def read(path: Path, *, max_bytes: int | None = None) -> Any | None:
    """The JSON in `path`, or None when it is missing, unreadable, not JSON, or a symlink or
    anything but a regular file. Raises TooLarge past `max_bytes`: a reader of what a sandboxed
    process wrote never loads more than it expects."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise TooLarge(f"{path.name} is larger than {max_bytes} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None
