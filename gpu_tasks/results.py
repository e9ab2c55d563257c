"""What a GPU call may hand back: a result is input from a container, checked like a request body.

A container that a crafted input took over can write anything into its result: an output ref
naming `/proc/self/environ` (the worker would copy its own secrets into the user's project), a
`filename` that is an absolute path (a write wherever the worker may write), gigabytes of inline
bytes, a transcript of a billion words, NaN. So a result is kept only as far as it is what the
backend itself produces (`OutputPolicy`):

- output refs of the forms the backend makes: Modal and the noop backend upload objects or
  return bytes inline; the local backend leaves files inside the call's own output folder (or
  uploads them, where it is given targets). An uploaded object is named by its key, its size and
  its SHA-256, all three the container's word: the worker uses none of them before it has
  checked them against the target it gave the call and the bytes it finds there. A
  path is opened without following a final symlink, must be a regular file with no other link,
  and must lie inside that folder once opened (the kernel's own name for the open file is what
  is compared, so a symlink anywhere on the way, or a link inside the folder that points out, is
  refused);
- a `filename` reduced to a base name (no separator, no `..`, no control character, bounded);
  a content type from the allow-list of the output's kind; sizes under the limits (inline bytes,
  files, `ResultLimits`);
- the rest of the result plain JSON (finite numbers, bounded depth and size), and a transcript or
  an answer of the shape the engines produce, within bounds.

Anything else raises `PermanentGpuError("invalid_result")`, whose message names the rule that was
broken and never the result's content (it is logged for operators).
"""

from __future__ import annotations

import math
import os
import re
import stat
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.types import OutputKind, get_spec

# The forms an output ref comes in (gpu_tasks.contract).
PATH, DATA, UPLOADED = "path", "data", "uploaded"
FORMS = (PATH, DATA, UPLOADED)

MAX_OUTPUTS = 16
OUTPUT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}\Z")
FILENAME_MAX_CHARS = 100
MAX_DEPTH = 32
MAX_KEY_CHARS = 200
MAX_INT = 2**63 - 1
# A transcript as the engines build it (gpu_tasks.engines.transcript), within what a day of
# speech needs, and what the timeline's transcript fields take (projects/edl/documents.py).
MAX_SEGMENTS = 50_000
MAX_WORDS = 500_000
MAX_WORD_CHARS = 255
MAX_SEGMENT_TEXT_CHARS = 100_000
MAX_ID_CHARS = 64
MAX_SPEAKER_CHARS = 255
MAX_LANGUAGE_CHARS = 16
MAX_MS = 2**31 - 1
MAX_ANSWER_CHARS = 20_000
MAX_TIMESTAMPS = 1_000
MAX_OBJECT_KEY_CHARS = 500
SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")

# What each kind of media output may claim to be: the formats the engines write, and their
# usual aliases. The store step probes the file anyway; this keeps a ref from labelling an
# output as, say, text/html for whoever downloads it.
CONTENT_TYPES: Mapping[OutputKind, frozenset[str]] = {
    OutputKind.VIDEO: frozenset({"video/mp4", "video/webm", "video/quicktime", "video/x-matroska"}),
    OutputKind.AUDIO: frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/mpeg", "audio/mp4", "audio/aac",
                                 "audio/flac", "audio/ogg", "audio/webm"}),
    OutputKind.IMAGE: frozenset({"image/png", "image/jpeg", "image/webp"}),
    OutputKind.CAPTIONS: frozenset({"application/x-subrip", "text/vtt"}),
}
_SUFFIX = {"video": ".mp4", "audio": ".wav", "image": ".png", "captions": ".srt"}


@dataclass(frozen=True)
class ResultLimits:
    """The largest output file, inline output and result JSON accepted (settings give them)."""

    max_file_bytes: int = 8 * 1024**3
    max_inline_bytes: int = 256 * 1024**2
    max_json_bytes: int = 16 * 1024**2

    def to_dict(self) -> dict[str, int]:
        return {"max_file_bytes": self.max_file_bytes, "max_inline_bytes": self.max_inline_bytes,
                "max_json_bytes": self.max_json_bytes}

    @staticmethod
    def from_dict(data: object) -> ResultLimits:
        if not isinstance(data, dict):
            return ResultLimits()
        defaults = ResultLimits()
        values = {}
        for name in ("max_file_bytes", "max_inline_bytes", "max_json_bytes"):
            value = data.get(name)
            values[name] = value if isinstance(value, int) and value > 0 else getattr(defaults, name)
        return ResultLimits(**values)


@dataclass(frozen=True)
class OutputPolicy:
    """The output refs a backend produces for a call: their forms, and where its files may be."""

    forms: frozenset[str]
    root: Path | None = None  # the call's own output folder, for the `path` form


# Modal's containers and the noop backend never hand back a path on the worker's disk.
REMOTE_OUTPUTS = OutputPolicy(frozenset({DATA, UPLOADED}))


def refused(why: str) -> PermanentGpuError:
    return PermanentGpuError("invalid_result", f"the GPU call's result was refused: {why}")


# -- the whole result --------------------------------------------------------------------------------


def check_result(job_type: str, result: Any, *, policy: OutputPolicy, limits: ResultLimits) -> dict[str, Any]:
    """`result` as it may be kept: each output ref checked (files are checked again when opened,
    `open_output`), filenames reduced to base names. Raises `invalid_result`."""
    if not isinstance(result, dict):
        raise refused("it is not an object")
    spec = get_spec(job_type)
    outputs = result.get("outputs", {})
    if outputs is None:
        outputs = {}
    if not isinstance(outputs, dict):
        raise refused("its outputs are not an object")
    if len(outputs) > MAX_OUTPUTS:
        raise refused(f"more than {MAX_OUTPUTS} outputs")
    checked_outputs: dict[str, dict[str, Any]] = {}
    for name, ref in outputs.items():
        if not isinstance(name, str) or not OUTPUT_NAME.match(name):
            raise refused("an output's name is not a plain name")
        checked_outputs[name] = check_output_ref(name, ref, kind=spec.output_kind(name), policy=policy, limits=limits)
    rest = {k: v for k, v in result.items() if k != "outputs"}
    check_json(rest, max_bytes=limits.max_json_bytes)
    check_json({name: ref.get("metadata") for name, ref in checked_outputs.items()}, max_bytes=limits.max_json_bytes)
    # What a speech engine heard of the speech it made, screened before the speech is kept
    # (jobs.life.moderation): at most a segment's text, or absent.
    _text(rest.get("output_transcript"), MAX_SEGMENT_TEXT_CHARS, "the output transcript", optional=True)
    if spec.output is OutputKind.TRANSCRIPT:
        check_transcript(rest)
    elif spec.output is OutputKind.ANSWER:
        check_answer(rest)
    elif spec.output is OutputKind.VERIFICATION:
        check_verification(rest, of="face" if spec.job_type == "likeness-consent" else "speaker")
    return {**rest, "outputs": checked_outputs} if "outputs" in result else rest


def check_output_ref(
    name: str, ref: Any, *, kind: OutputKind, policy: OutputPolicy, limits: ResultLimits
) -> dict[str, Any]:
    if not isinstance(ref, dict):
        raise refused(f"output {name} is not an object")
    forms = [form for form in FORMS if form in ref]
    if len(forms) != 1:
        raise refused(f"output {name} is not exactly one of {', '.join(FORMS)}")
    (form,) = forms
    if form not in policy.forms:
        raise refused(f"output {name} comes as {form!r}, which this backend never produces")
    allowed = CONTENT_TYPES.get(kind)
    content_type = ref.get("content_type")
    if allowed is None:
        raise refused(f"output {name} is a {kind.value}, which is not a file")
    if not isinstance(content_type, str) or content_type.split(";")[0].strip().lower() not in allowed:
        raise refused(f"output {name} has a content type that a {kind.value} may not have")
    size = ref.get("size_bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_INT):
        raise refused(f"output {name} has an invalid size")
    checked: dict[str, Any] = {
        "content_type": content_type.split(";")[0].strip().lower(),
        "filename": safe_filename(ref.get("filename"), fallback=f"{name}{_SUFFIX[kind.value]}"),
    }
    if size is not None:
        checked["size_bytes"] = size
    if form == PATH:
        path = ref[PATH]
        if policy.root is None:
            raise refused(f"output {name} names a path, and the call has no output folder")
        if not isinstance(path, str) or not path or "\x00" in path or len(path) > 4096 or not os.path.isabs(path):
            raise refused(f"output {name}'s path is not an absolute path")
        if size is not None and size > limits.max_file_bytes:
            raise refused(f"output {name} is larger than {limits.max_file_bytes} bytes")
        checked[PATH] = path
    elif form == DATA:
        data = ref[DATA]
        if not isinstance(data, bytes | bytearray):
            raise refused(f"output {name}'s inline data is not bytes")
        if len(data) > limits.max_inline_bytes:
            raise refused(f"output {name}'s inline data is larger than {limits.max_inline_bytes} bytes")
        checked[DATA] = bytes(data)
        checked["size_bytes"] = len(data)
    else:
        if ref[UPLOADED] is not True:
            raise refused(f"output {name}'s 'uploaded' is not true")
        key, sha256 = ref.get("key"), ref.get("sha256")
        if not isinstance(key, str) or not 0 < len(key) <= MAX_OBJECT_KEY_CHARS:
            raise refused(f"output {name} names no object key")
        if size is None or size > limits.max_file_bytes:
            raise refused(f"output {name} has no size, or one larger than {limits.max_file_bytes} bytes")
        if not isinstance(sha256, str) or not SHA256_HEX.match(sha256):
            raise refused(f"output {name} has no SHA-256 (64 lowercase hexadecimal digits)")
        checked.update({UPLOADED: True, "key": key, "sha256": sha256})
        if "upload_id" in ref:  # a target in parts: the upload the worker completes
            upload_id = ref["upload_id"]
            if not isinstance(upload_id, str) or not 0 < len(upload_id) <= MAX_OBJECT_KEY_CHARS:
                raise refused(f"output {name} names an upload that is not one")
            checked["upload_id"] = upload_id
    if "metadata" in ref:
        if not isinstance(ref["metadata"], dict):
            raise refused(f"output {name}'s metadata is not an object")
        checked["metadata"] = ref["metadata"]
    return checked


def safe_filename(value: Any, *, fallback: str) -> str:
    """A name to store a file under: the last component of `value` without control characters or
    leading dots, at most FILENAME_MAX_CHARS long (its extension kept); `fallback` if none is left."""
    if not isinstance(value, str):
        return fallback
    base = re.split(r"[/\\]", value)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip().lstrip(".").strip()
    if not base:
        return fallback
    if len(base) > FILENAME_MAX_CHARS:
        stem, dot, suffix = base.rpartition(".")
        suffix = suffix[:16] if dot and stem else ""
        base = base[: FILENAME_MAX_CHARS - len(suffix) - 1].rstrip(".") + (f".{suffix}" if suffix else "")
    return base


# -- plain JSON ------------------------------------------------------------------------------------


def check_json(value: Any, *, max_bytes: int) -> int:
    """Raise unless `value` is plain JSON (str keys, finite numbers) of bounded depth, about
    `max_bytes` when serialized at most; returns that estimate. Iterative: no recursion limit to hit."""
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise refused(f"it is nested more than {MAX_DEPTH} deep")
        if isinstance(item, str):
            total += len(item) + 2
        elif item is None or isinstance(item, bool):
            total += 5
        elif isinstance(item, int):
            if not -MAX_INT <= item <= MAX_INT:
                raise refused("it holds an integer out of range")
            total += 20
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise refused("it holds a number that is not finite")
            total += 24
        elif isinstance(item, dict):
            total += 2
            for key, child in item.items():
                if not isinstance(key, str) or len(key) > MAX_KEY_CHARS:
                    raise refused("it holds a key that is not a short string")
                total += len(key) + 4
                stack.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend((child, depth + 1) for child in item)
        else:
            raise refused(f"it holds a value of type {type(item).__name__}, which is not JSON")
        if total > max_bytes:
            raise refused(f"it is larger than {max_bytes} bytes")
    return total


# -- result data of the kinds kept beyond the job ----------------------------------------------------------


def _text(value: Any, max_chars: int, what: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or len(value) > max_chars:
        raise refused(f"{what} is not text of at most {max_chars} characters")


def _ms(value: Any, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_MS:
        raise refused(f"{what} is not a time in milliseconds")


def check_transcript(result: Mapping[str, Any]) -> None:
    """The transcript shape (gpu_tasks.engines.transcript) that captions and the timeline keep."""
    _text(result.get("language"), MAX_LANGUAGE_CHARS, "the transcript's language", optional=True)
    _ms(result.get("duration_ms", 0), "the transcript's duration")
    _text(result.get("text", ""), MAX_SEGMENT_TEXT_CHARS * 100, "the transcript's text")
    segments = result.get("segments")
    if not isinstance(segments, list) or len(segments) > MAX_SEGMENTS:
        raise refused(f"the transcript's segments are not a list of at most {MAX_SEGMENTS}")
    words_seen = 0
    for segment in segments:
        if not isinstance(segment, dict):
            raise refused("a transcript segment is not an object")
        _text(segment.get("id", ""), MAX_ID_CHARS, "a segment's id")
        _text(segment.get("speaker"), MAX_SPEAKER_CHARS, "a segment's speaker", optional=True)
        _ms(segment.get("start_ms"), "a segment's start")
        _ms(segment.get("end_ms"), "a segment's end")
        _text(segment.get("text", ""), MAX_SEGMENT_TEXT_CHARS, "a segment's text")
        words = segment.get("words", [])
        if not isinstance(words, list):
            raise refused("a segment's words are not a list")
        words_seen += len(words)
        if words_seen > MAX_WORDS:
            raise refused(f"the transcript has more than {MAX_WORDS} words")
        for word in words:
            if not isinstance(word, dict):
                raise refused("a transcript word is not an object")
            _text(word.get("word"), MAX_WORD_CHARS, "a word")
            _ms(word.get("start_ms"), "a word's start")
            _ms(word.get("end_ms"), "a word's end")
            confidence = word.get("confidence")
            if confidence is not None and (not isinstance(confidence, int | float) or isinstance(confidence, bool)
                                           or not 0.0 <= confidence <= 1.0):
                raise refused("a word's confidence is not between 0 and 1")


def check_answer(result: Mapping[str, Any]) -> None:
    _text(result.get("answer"), MAX_ANSWER_CHARS, "the answer")
    stamps = result.get("timestamps_ms", [])
    if not isinstance(stamps, list) or len(stamps) > MAX_TIMESTAMPS:
        raise refused(f"the answer's timestamps are not a list of at most {MAX_TIMESTAMPS}")
    for stamp in stamps:
        _ms(stamp, "an answer's timestamp")


def _figure(value: Any, what: str, low: float, high: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise refused(f"{what} is not a number from {low:g} to {high:g}")


def check_verification(result: Mapping[str, Any], of: str = "speaker") -> None:
    """A consent check's figures, which the worker judges against its own bounds: word error rates
    (0 and up: a reading may add words) and a cosine similarity, of the speakers (a voice) or of the
    faces (`of="face"`, a likeness: None when either side showed no face; with the speaking check's
    `liveness`: a correlation, None when unmeasured, an amount of mouth motion and a frame count)."""
    phrase, other = result.get("phrase"), result.get(of)
    if not isinstance(phrase, dict) or not isinstance(other, dict):
        raise refused(f"a verification has no phrase or {of} figures")
    _figure(phrase.get("challenge_wer"), "the challenge words' error rate", 0.0, 1e6)
    _figure(phrase.get("phrase_wer"), "the phrase's error rate", 0.0, 1e6)
    if of == "face":
        if other.get("similarity") is not None:
            _figure(other.get("similarity"), "the faces' similarity", -1.0, 1.0)
        for count in ("recording_faces", "subject_faces"):
            value = other.get(count)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000:
                raise refused(f"the verification's {count} is not a frame count")
        liveness = result.get("liveness")
        if not isinstance(liveness, dict):
            raise refused("a likeness verification has no liveness figures")
        if liveness.get("sync") is not None:
            _figure(liveness.get("sync"), "the mouth's sync with the sound", -1.0, 1.0)
        _figure(liveness.get("mouth_motion"), "the mouth's motion", 0.0, 1.0)
        frames = liveness.get("frames")
        if not isinstance(frames, int) or isinstance(frames, bool) or not 0 <= frames <= 10_000:
            raise refused("the verification's liveness frames is not a frame count")
        return
    _figure(other.get("similarity"), "the speakers' similarity", -1.0, 1.0)
    _figure(other.get("stretch_similarity"), "the speakers' least similar stretch", -1.0, 1.0)


# -- output files ------------------------------------------------------------------------------------


def open_output(path: str, root: Path, *, max_bytes: int, name: str = "an output") -> int:
    """A read-only descriptor of the output file `path`, which must lie inside `root`.

    The final component is not followed if it is a symlink (O_NOFOLLOW), a FIFO or device never
    blocks the open (O_NONBLOCK), and once open, the file must be a regular file with a single
    link, no larger than `max_bytes`, whose real path (the kernel's name for the open file, so
    a symlink anywhere on the way counts) is inside `root`'s real path."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        raise refused(f"{name}'s file cannot be opened (missing, or a symlink)") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refused(f"{name} is not a regular file")
        if info.st_nlink != 1:
            raise refused(f"{name} is a file with other links")
        if info.st_size > max_bytes:
            raise refused(f"{name} is larger than {max_bytes} bytes")
        real = _real_path(fd, path)
        top = os.path.realpath(root)
        if real == top or os.path.commonpath([real, top]) != top:
            raise refused(f"{name} is outside the call's output folder")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _real_path(fd: int, path: str) -> str:
    if sys.platform == "linux":
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return os.path.realpath(path)


def copy_output(fd: int, dest: Path, *, max_bytes: int, name: str = "an output") -> int:
    """Copy the open file `fd` to `dest`, a new file (never through a symlink); at most
    `max_bytes` (a file that grows while it is copied is refused). Closes `fd`."""
    try:
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        written = 0
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            while chunk := os.read(fd, 1 << 20):
                written += len(chunk)
                if written > max_bytes:
                    raise refused(f"{name} is larger than {max_bytes} bytes")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
        except BaseException:
            os.close(out)
            os.unlink(dest)
            raise
        os.close(out)
        return written
    finally:
        os.close(fd)
