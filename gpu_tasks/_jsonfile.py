"""JSON files that readers in other processes never see half-written."""

from __future__ import annotations

import json
import os
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


def read(path: Path) -> Any | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
