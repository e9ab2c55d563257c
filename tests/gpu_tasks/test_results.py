"""gpu_tasks.results: the rules a GPU call's result is held to, one by one (the attacks through the
store path are in tests/jobs/test_untrusted_results.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.results import (
    DATA,
    FORMS,
    OutputPolicy,
    ResultLimits,
    check_json,
    check_result,
    copy_output,
    open_output,
    safe_filename,
)

LIMITS = ResultLimits()


@pytest.mark.parametrize(("given", "kept"), [
    ("voice.wav", "voice.wav"),
    ("/etc/cron.d/pwned", "pwned"),
    ("..\\..\\windows\\evil.exe", "evil.exe"),
    ("../..", "audio.wav"),
    ("..", "audio.wav"),
    (".bashrc", "bashrc"),
    ("a\x00b\n.wav", "ab.wav"),
    ("", "audio.wav"),
    (None, "audio.wav"),
    (12, "audio.wav"),
    ("x" * 300 + ".wav", "x" * 96 + ".wav"),
])
def test_a_filename_is_reduced_to_a_plain_base_name(given: object, kept: str) -> None:
    assert safe_filename(given, fallback="audio.wav") == kept


def refused(call: object) -> str:
    with pytest.raises(PermanentGpuError) as info:
        call()  # type: ignore[operator]
    assert info.value.code == "invalid_result"
    return info.value.message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**70, b"bytes", {1: "x"}])
def test_plain_json_only(value: object) -> None:
    refused(lambda: check_json({"v": value}, max_bytes=1000))


def test_size_is_bounded() -> None:
    value = [[[]], {"k": "x" * 50}]
    assert check_json(value, max_bytes=1000) > 0
    assert "larger" in refused(lambda: check_json(value, max_bytes=40))


def test_depth_is_bounded_without_recursion() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert "nested" in refused(lambda: check_json(deep, max_bytes=10**9))


def audio(**ref: object) -> dict[str, object]:
    return {"outputs": {"audio": {"content_type": "audio/wav", "filename": "a.wav", **ref}}}


def test_forms_names_and_content_types() -> None:
    remote = OutputPolicy(frozenset({DATA}))
    assert check_result("tts", audio(data=b"RIFF"), policy=remote, limits=LIMITS)["outputs"]["audio"]["size_bytes"] == 4
    assert "never produces" in refused(lambda: check_result("tts", audio(path="/x"), policy=remote, limits=LIMITS))
    every = OutputPolicy(frozenset(FORMS), Path("/"))
    assert "exactly one" in refused(lambda: check_result("tts", audio(data=b"", uploaded=True), policy=every,
                                                         limits=LIMITS))
    assert "content type" in refused(lambda: check_result("tts", audio(data=b"x", content_type="text/html"),
                                                          policy=remote, limits=LIMITS))
    bad_name = {"outputs": {"../x": {"data": b"", "content_type": "audio/wav"}}}
    assert "name" in refused(lambda: check_result("tts", bad_name, policy=remote, limits=LIMITS))
    many = {"outputs": {f"o{i}": {"data": b"", "content_type": "audio/wav"} for i in range(17)}}
    assert "outputs" in refused(lambda: check_result("tts", many, policy=remote, limits=LIMITS))
    assert "inline" in refused(lambda: check_result("tts", audio(data=b"x" * 11), policy=remote,
                                                    limits=ResultLimits(max_inline_bytes=10)))


@pytest.mark.parametrize(("fields", "why"), [
    ({"key": None}, "no object key"),
    ({"key": ""}, "no object key"),
    ({"key": "k" * 501}, "no object key"),
    ({"key": 7}, "no object key"),
    ({"key": "k", "size_bytes": None}, "no size"),
    ({"key": "k", "size_bytes": 2**40}, "larger than"),
    ({"key": "k", "sha256": "ABC"}, "SHA-256"),
    ({"key": "k", "sha256": "0" * 63}, "SHA-256"),
    ({"key": "k", "sha256": "g" * 64}, "SHA-256"),
    ({"key": "k", "uploaded": 1}, "not true"),
])
def test_an_uploaded_output_names_its_key_size_and_sha256(fields: dict[str, object], why: str) -> None:
    remote = OutputPolicy(frozenset({"uploaded"}))
    good = {"uploaded": True, "key": "k", "size_bytes": 10, "sha256": "a" * 64}
    kept = check_result("tts", audio(**good), policy=remote, limits=LIMITS)["outputs"]["audio"]
    assert (kept["key"], kept["size_bytes"], kept["sha256"]) == ("k", 10, "a" * 64)
    ref = {k: v for k, v in {**good, **fields}.items() if v is not None}
    assert why in refused(lambda: check_result("tts", audio(**ref), policy=remote,
                                               limits=ResultLimits(max_file_bytes=2**30)))


def test_an_answer_and_a_transcript_are_bounded() -> None:
    remote = OutputPolicy(frozenset({DATA}))
    refused(lambda: check_result("video-query", {"answer": "x" * 20_001}, policy=remote, limits=LIMITS))
    refused(lambda: check_result("video-query", {"answer": "ok", "timestamps_ms": [-1]}, policy=remote, limits=LIMITS))
    word = {"word": "w", "start_ms": 0, "end_ms": 1, "confidence": 0.5}
    segment = {"id": "s", "speaker": None, "start_ms": 0, "end_ms": 1, "text": "w", "words": [word]}
    ok = {"language": "en", "duration_ms": 1, "text": "w", "segments": [segment]}
    assert check_result("transcription", ok, policy=remote, limits=LIMITS) == ok
    for broken in ({**word, "confidence": 2.0}, {**word, "word": "w" * 256}, {**word, "start_ms": 2**31}):
        refused(lambda broken=broken: check_result(
            "transcription", {**ok, "segments": [{**segment, "words": [broken]}]}, policy=remote, limits=LIMITS))


def test_an_output_file_is_opened_only_inside_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    good = root / "a.wav"
    good.write_bytes(b"RIFF")
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    (root / "sym").symlink_to(outside)
    linked = tmp_path / "linked"
    linked.write_bytes(b"secret")
    os.link(linked, root / "hard")
    (root / "dir").mkdir()
    (root / "sub").symlink_to(tmp_path)  # a symlinked folder on the way
    os.mkfifo(root / "fifo")
    fd = open_output(str(good), root, max_bytes=10)
    assert copy_output(fd, tmp_path / "copy", max_bytes=10) == 4 and (tmp_path / "copy").read_bytes() == b"RIFF"
    for path, why in ((root / "sym", "symlink"), (root / "hard", "other links"), (root / "dir", "regular"),
                      (root / "sub" / "secret", "outside"), (root / "fifo", "regular"),
                      (Path("/proc/self/environ"), "outside"), (root / ".." / "secret", "outside"),
                      (good, "larger")):
        assert why in refused(lambda path=path: open_output(str(path), root, max_bytes=3 if path == good else 10)), path
