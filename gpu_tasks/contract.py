"""The payload/result contract between the jobs app and every backend.

Payload (a JSON-able dict given to `backend.spawn(job_type, payload)`):

- Inputs are *input refs*: `{"path": "/abs/local/file"}` (local backend only: the file must be
  readable by the worker) or `{"url": "https://signed-get-url"}` (any backend; downloaded with a
  connect/read timeout as the engine begins, or, for a piece of a long file, only its span's
  packets fetched by range: gpu_tasks.ranged; the URL lives AUTEUR_SIGNED_URL_TTL_SECONDS, 15
  minutes by default, from the spawn, and a call that begins later is refused it: a transient
  failure, spawned again with fresh URLs).
  Which keys carry inputs depends on the type (see each engine's docstring):
  transcription `media`; tts `voice_sample` (optional); compression `media`;
  render `media: {media_file_id: {"kind": "video"|"audio"|"image", **input_ref}}`.
- An input ref of audio or video may carry `max_duration_ms`: the length the job was priced
  for (the probe's measure of the file). An engine reads no further into that input (ffmpeg
  `-t`, decoders stop there): a file that grew after it was priced is never processed whole.
- Parameters sit beside them (`language`, `script`, `text`, `speed`, `preset`, `edl`, ...).
- Where outputs go, one of:
  * `output_dir`: a directory the worker can write (local backend; defaults to a folder inside
    the call's own directory). Outputs come back as `{"path": ...}` refs inside it. The local
    runner gives its sandboxed engine a folder of its own box instead, and copies the outputs
    it has checked from there to this one (gpu_tasks.local_runner).
  * `output_targets: {output_name: {"key", "url", "headers", "max_bytes"}}`: where the engine
    PUTs each named output (Modal, or the local backend given `upload_outputs`): one signed PUT
    of at most `max_bytes`, with exactly `headers` (the Content-Type it is signed for), to the
    object `key`. Where the largest output is more than one PUT takes, the target also holds
    `multipart: {"upload_id", "part_bytes", "parts": [{"number", "url"}], "max_bytes"}`: a file
    larger than `max_bytes` goes in parts of exactly `part_bytes` (the last smaller), each PUT to
    its URL in order, and the ref names `upload_id`.
    The worker makes a target for each of the type's large outputs (`JobTypeSpec.uploaded_outputs`);
    the others come back by the next two forms. An uploaded output comes back as
    `{"uploaded": true, "key", "size_bytes", "sha256"}` (and `upload_id`, in parts), which the
    worker checks against the target it gave and the bytes it finds stored, before it keeps anything.
  * neither (Modal only): outputs come back inline as `{"data": <bytes>}` in the result.

Result (`CallStatus.result` on success): a dict of type-specific fields (a transcript, durations,
...) plus `outputs: {output_name: output_ref}` where an output ref is exactly one of

    {"path": "/abs/file", "content_type": ..., "size_bytes": N, "filename": ...}
    {"uploaded": True, "key": ..., "sha256": <hex>, "content_type": ..., "size_bytes": N, "filename": ...}
    {"data": b"...", "content_type": ..., "size_bytes": N, "filename": ...}

and may also carry `metadata`: every parameter that shaped it (model, seed, steps, prompt...),
which the Django side keeps with the stored media. A result is the container's word: the Django
side keeps it only once `gpu_tasks.results.check_result` has found it to be what the backend
produces, then stores each output with `save_output(ref, dest, policy=...)`. Output
names per type: tts `audio`, render `video`, compression `video`; transcription has none (the
transcript is in the result).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from gpu_tasks.errors import GpuError, PermanentGpuError, TransientGpuError, raise_for_http
from gpu_tasks.input_policy import descriptor_of
from gpu_tasks.results import (
    DATA,
    PATH,
    UPLOADED,
    OutputPolicy,
    ResultLimits,
    copy_output,
    open_output,
    refused,
)

# (connect, read) seconds for every outbound HTTP call: a stalled peer never holds a worker.
HTTP_TIMEOUT: tuple[float, float] = (10.0, 60.0)
MAX_INPUT_BYTES = 8 * 1024**3
MAX_INLINE_OUTPUT_BYTES = 256 * 1024**2
DEFAULT_LIMITS = ResultLimits()

ProgressFn = Callable[[float], None]


def _no_progress(_: float) -> None:
    return None


def input_ref_kind(ref: Any) -> str:
    """'path' or 'url'; anything else is invalid input."""
    if isinstance(ref, Mapping):
        if isinstance(ref.get("path"), str) and ref["path"]:
            return "path"
        if isinstance(ref.get("url"), str) and urlsplit(ref["url"]).scheme in ("http", "https"):
            return "url"
    raise PermanentGpuError("invalid_input", "an input must be {'path': '/file'} or {'url': 'https://...'}")


def input_limit_s(ref: Any) -> float | None:
    """How many seconds of an input an engine may read: its `max_duration_ms`, or None (no limit)."""
    value = ref.get("max_duration_ms") if isinstance(ref, Mapping) else None
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise PermanentGpuError("invalid_input", "max_duration_ms must be a positive whole number")
    return value / 1000


def resolve_input(
    ref: Any, dest_dir: Path, *, name: str = "input", timeout: tuple[float, float] = HTTP_TIMEOUT
) -> Path:
    """A local path to the input: the path itself, or the URL downloaded into `dest_dir`."""
    if input_ref_kind(ref) == "path":
        path = Path(ref["path"])
        fd = descriptor_of(path)
        if fd is not None:  # held open by the local runner (a piece of a long file): read through it
            try:
                regular = stat.S_ISREG(os.fstat(fd).st_mode)
            except OSError:
                regular = False
            if not regular:
                raise PermanentGpuError("invalid_input", f"{name}: no such file")
            return path
        if not path.is_file():
            raise PermanentGpuError("invalid_input", f"{name}: no such file")
        return path
    return download(ref["url"], dest_dir / f"{name}{Path(urlsplit(ref['url']).path).suffix[:10]}", timeout=timeout)


def download(url: str, dest: Path, *, timeout: tuple[float, float] = HTTP_TIMEOUT) -> Path:
    import requests

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with requests.get(url, stream=True, timeout=timeout) as resp:
            raise_for_http(resp.status_code, "download")
            written = 0
            with open(dest, "wb") as fh:
                for chunk in resp.iter_content(chunk_size=1 << 20):
                    written += len(chunk)
                    if written > MAX_INPUT_BYTES:
                        raise PermanentGpuError("invalid_input", "input larger than the size limit")
                    fh.write(chunk)
    except GpuError:
        dest.unlink(missing_ok=True)
        raise
    except requests.RequestException as exc:
        dest.unlink(missing_ok=True)
        # The URL itself is never logged or returned: it is a bearer credential.
        raise TransientGpuError("network", f"download failed: {type(exc).__name__}") from exc
    return dest


class _HashingReader:
    """`size` bytes of a file read front to back by whoever sends them, hashed into `digest` (one
    digest across the parts of a file sent in parts)."""

    def __init__(self, fh: BinaryIO, size: int, digest: Any = None) -> None:
        self.fh, self.size, self.left = fh, size, size
        self.digest = hashlib.sha256() if digest is None else digest

    def __len__(self) -> int:
        return self.size  # the Content-Length of the PUT

    def read(self, amount: int = -1) -> bytes:
        chunk = self.fh.read(self.left if amount is None or amount < 0 else min(amount, self.left))
        self.left -= len(chunk)
        self.digest.update(chunk)
        return chunk


def _put(url: str, reader: _HashingReader, headers: Mapping[str, str], timeout: tuple[float, float]) -> None:
    import requests

    try:
        resp = requests.put(url, data=reader, headers=dict(headers), timeout=timeout)
        raise_for_http(resp.status_code, "upload")
    except requests.RequestException as exc:
        # The URL itself is never logged or returned: it is a bearer credential.
        raise TransientGpuError("network", f"upload failed: {type(exc).__name__}") from None


def upload_output(fh: BinaryIO, size: int, target: Any, content_type: str, *,
                  timeout: tuple[float, float] = HTTP_TIMEOUT) -> dict[str, Any]:
    """PUT the `size` bytes of `fh` (from its start) to an output target (see the module
    docstring), streamed and hashed on the way; the fields of the output's `uploaded` ref."""
    if not isinstance(target, Mapping) or not all(isinstance(target.get(k), str) for k in ("key", "url")):
        raise PermanentGpuError("invalid_input", "an output target is not {key, url, headers, max_bytes}")
    headers = {str(k): str(v) for k, v in (target.get("headers") or {}).items()}
    if headers.get("Content-Type", content_type) != content_type:
        raise PermanentGpuError("internal", f"the output is {content_type}, and its target takes "
                                            f"{headers['Content-Type']}")
    max_bytes = target.get("max_bytes")
    if isinstance(max_bytes, int) and size > max_bytes:
        if isinstance(target.get("multipart"), Mapping):
            return _upload_parts(fh, size, target["key"], target["multipart"], timeout)
        raise PermanentGpuError("invalid_input", f"the output has {size} bytes, more than its target's {max_bytes}")
    reader = _HashingReader(fh, size)
    _put(target["url"], reader, {"Content-Type": content_type, **headers}, timeout)
    return {UPLOADED: True, "key": target["key"], "size_bytes": size, "sha256": reader.digest.hexdigest()}


def _upload_parts(fh: BinaryIO, size: int, key: str, multipart: Mapping[str, Any],
                  timeout: tuple[float, float]) -> dict[str, Any]:
    """A target's multipart upload: parts of exactly `part_bytes` (the last smaller), in order, each to its URL."""
    part_bytes, parts, upload_id = multipart.get("part_bytes"), multipart.get("parts"), multipart.get("upload_id")
    if not (isinstance(part_bytes, int) and part_bytes > 0 and isinstance(parts, list) and isinstance(upload_id, str)
            and all(isinstance(p, Mapping) and isinstance(p.get("url"), str) for p in parts)):
        raise PermanentGpuError("invalid_input", "an output target's multipart is not {upload_id, part_bytes, parts}")
    max_bytes = multipart.get("max_bytes")
    needed = -(-size // part_bytes)
    if needed > len(parts) or (isinstance(max_bytes, int) and size > max_bytes):
        raise PermanentGpuError("invalid_input", f"the output has {size} bytes, more than its target takes")
    digest = hashlib.sha256()
    for index in range(needed):
        length = min(part_bytes, size - index * part_bytes)
        _put(parts[index]["url"], _HashingReader(fh, length, digest), {}, timeout)
    return {UPLOADED: True, "key": key, "size_bytes": size, "sha256": digest.hexdigest(), "upload_id": upload_id}


def save_output(ref: Mapping[str, Any], dest: str | Path, *, policy: OutputPolicy,
                limits: ResultLimits = DEFAULT_LIMITS) -> Path:
    """Put an output at `dest`, from the file or the bytes it came back as. An `uploaded` output
    is not saved here: its caller keeps the object it names (media.services.gpu_outputs).

    `ref` is a GPU container's word (see `gpu_tasks.results`): only the forms `policy` admits, a
    file only from inside the call's own output folder, bytes only up to the limits. `dest` is
    created, never overwritten, and never written through a symlink."""
    dest = Path(dest)
    form = next((f for f in (UPLOADED, PATH, DATA) if f in ref), None)
    if form is None:
        raise refused("not an output ref")
    if form not in policy.forms:
        raise refused(f"an output comes as {form!r}, which this backend never produces")
    if form == UPLOADED:
        raise refused("an uploaded output is kept from the object it names, never saved as a file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if form == PATH:
        if policy.root is None or not isinstance(ref[PATH], str):
            raise refused("an output names a path, and the call has no output folder")
        fd = open_output(ref[PATH], policy.root, max_bytes=limits.max_file_bytes)
        copy_output(fd, dest, max_bytes=limits.max_file_bytes)
        return dest
    data = ref[DATA]
    if not isinstance(data, bytes | bytearray) or len(data) > limits.max_inline_bytes:
        raise refused("an output's inline data is not bytes within the limit")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return dest


def status_record(
    state: str, *, result: Any = None, error: GpuError | None = None, gpu_seconds: float = 0.0,
    trace: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A call's final outcome as plain data: the local runner's status file, a Modal function's return.
    `trace`: its phases for the job's trace (gpu_tasks.call_trace), where it recorded them."""
    record = {
        "state": state,
        "result": result,
        "error": error.to_dict() if error is not None else None,
        "gpu_seconds": round(gpu_seconds, 3),
        "finished_at": time.time(),
    }
    if trace:
        record["trace"] = dict(trace)
    return record


@dataclass
class EngineContext:
    """What an engine gets besides its payload: a scratch dir, progress, input and output plumbing."""

    workdir: Path
    payload: Mapping[str, Any]
    progress: ProgressFn = _no_progress
    http_timeout: tuple[float, float] = HTTP_TIMEOUT
    allow_paths: bool = True
    deadline: float | None = None  # time.monotonic() value after which the engine should give up
    _outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _source_sizes: dict[Path, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def input_path(self, ref: Any, name: str, *, span: tuple[int, int] | None = None,
                   streams: tuple[str, ...] = ("video", "audio")) -> Path:
        """A local path to input `name`. With `span` (a piece of a long file), a URL input is read
        by range: only the span's packets of its first stream of each kind in `streams` are
        fetched, into a file the engine reads as it would the source at that span
        (gpu_tasks.ranged); a server that serves no ranges is downloaded whole."""
        kind = input_ref_kind(ref)
        if not self.allow_paths and kind == "path":
            raise PermanentGpuError("invalid_input", f"{name}: this backend needs URL inputs, not local paths")
        if span is not None and kind == "url":
            from gpu_tasks.ranged import NotRanged, fetch_span

            dest = self.workdir / "inputs" / f"{name}-span.nut"
            try:
                fetched = fetch_span(ref["url"], span, dest, streams=streams, timeout=self.http_timeout,
                                     max_bytes=MAX_INPUT_BYTES)
            except NotRanged:
                pass
            else:
                self._source_sizes[fetched.path] = fetched.source_size
                return fetched.path
        return resolve_input(ref, self.workdir / "inputs", name=name, timeout=self.http_timeout)

    def source_size(self, path: Path) -> int:
        """The size of the source `path` stands for: the whole file's, where it holds a span of it."""
        from gpu_tasks.engines.media import input_size

        return self._source_sizes.get(path) or input_size(path)

    def output_path(self, name: str, suffix: str) -> Path:
        """Where an engine writes output `name` while working (in the scratch dir, so a failed run
        leaves nothing half-written in `output_dir`); `deliver` then moves or uploads it."""
        base = self.workdir / "outputs"
        base.mkdir(parents=True, exist_ok=True)
        return base / f"{name}-{uuid.uuid4().hex[:8]}{suffix}"

    def deliver(self, name: str, path: Path, content_type: str) -> dict[str, Any]:
        """Hand output `name` (written at `path`) to the caller in the payload's chosen form."""
        size = path.stat().st_size
        ref: dict[str, Any] = {"content_type": content_type, "size_bytes": size, "filename": path.name}
        targets = self.payload.get("output_targets") or {}
        out_dir = self.payload.get("output_dir")
        if name in targets:
            with open(path, "rb") as fh:
                ref.update(upload_output(fh, size, targets[name], content_type, timeout=self.http_timeout))
        elif out_dir:
            target = Path(out_dir) / path.name
            if path.resolve() != target.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(os.fspath(path), target)
            ref["path"] = str(target.resolve())
        else:
            if size > MAX_INLINE_OUTPUT_BYTES:
                raise PermanentGpuError("invalid_input", f"output {name} too large to return inline: give it a target")
            ref["data"] = path.read_bytes()
        self._outputs[name] = ref
        return ref

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return dict(self._outputs)
