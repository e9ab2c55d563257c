"""media.probing.facts.probe_pcm_wav: a PCM WAV read without FFmpeg gives what the sandboxed probe gives,
and anything it does not account for entirely is left to the sandbox (None)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from media.probing.facts import probe_file, probe_pcm_wav


def _chunk(chunk_id: bytes, body: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def _fmt(tag: int, channels: int, rate: int, bits: int, *, extra: bytes = b"") -> bytes:
    align = channels * bits // 8
    return _chunk(b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits) + extra)


def wav(path: Path, *, tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16, frames: int = 8000,
        before: bytes = b"", after: bytes = b"", fmt: bytes | None = None, data: bytes | None = None) -> Path:
    if data is None:
        floats = b"\x00\x00\x80\x3f" if bits == 32 else b"\x00" * 7 + b"\x3f"  # 1.0
        sample = floats if tag == 3 else bytes(range(1, bits // 8 + 1))
        data = sample * channels * frames
    fmt_chunk = fmt if fmt is not None else _fmt(tag, channels, rate, bits)
    body = b"WAVE" + before + fmt_chunk + _chunk(b"data", data) + after
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize("kind", [
    dict(),
    dict(channels=2, rate=44100, frames=44100 * 3 + 17),
    dict(bits=8, rate=8000, frames=12345),
    dict(bits=24, channels=2, rate=48000, frames=4800),
    dict(bits=32, rate=22050, frames=999),
    dict(tag=3, bits=32, rate=24000, frames=24000),
    dict(tag=3, bits=64, channels=2, rate=16000, frames=1600),
    dict(frames=1),
    dict(before=_chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 5) + b"test\x00")),
    dict(after=_chunk(b"LIST", b"INFO")),
    dict(fmt=_fmt(3, 1, 16000, 32, extra=b"\x00\x00")),  # the 18-byte format chunk of float WAVs
], ids=lambda k: ",".join(f"{a}={b if not isinstance(b, bytes) else len(b)}" for a, b in k.items()) or "mono-16")
def test_a_pcm_wav_reads_as_the_sandboxed_probe_reads_it(tmp_path, kind):
    path = wav(tmp_path / "a.wav", **kind)
    ours = probe_pcm_wav(path)
    assert ours is not None and ours.ok
    assert ours == probe_file(path, "audio")


def test_a_wav_the_engines_write_reads_as_the_sandboxed_probe_reads_it(tmp_path):
    import wave

    path = tmp_path / "tts.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(24000)
        out.writeframes(b"\x01\x02" * 36_000)
    assert probe_pcm_wav(path) == probe_file(path, "audio")
    assert probe_pcm_wav(path).duration_ms == 1500  # type: ignore[union-attr]


@pytest.mark.parametrize("case", [
    "not riff", "riff of another form", "empty", "no data chunk", "data before fmt", "data past the end",
    "partial frame", "no frames", "extensible format", "mp3 format tag", "12-bit samples", "zero channels",
    "zero rate", "wrong block align", "wrong byte rate", "two fmt chunks", "too many chunks", "short fmt",
])
def test_anything_else_is_left_to_the_sandbox(tmp_path, case):
    path = tmp_path / "x.wav"
    filler = _chunk(b"junk", b"x")
    build = {
        "not riff": lambda: path.write_bytes(b"ID3\x04" + b"\x00" * 200) and path,
        "riff of another form": lambda: path.write_bytes(b"RIFF\x10\x00\x00\x00AVI LIST\x00\x00\x00\x00") and path,
        "empty": lambda: path.write_bytes(b"") or path,
        "no data chunk": lambda: path.write_bytes(b"RIFF\x1c\x00\x00\x00WAVE" + _fmt(1, 1, 16000, 16)) and path,
        "data before fmt": lambda: path.write_bytes(
            b"RIFF\x00\x00\x00\x00WAVE" + _chunk(b"data", b"\x00\x00" * 10) + _fmt(1, 1, 16000, 16)) and path,
        "data past the end": lambda: _truncated(wav(path), 10),
        "partial frame": lambda: wav(path, channels=2, data=b"\x00" * 6),
        "no frames": lambda: wav(path, data=b""),
        "extensible format": lambda: wav(path, fmt=_chunk(b"fmt ", struct.pack(
            "<HHIIHH", 0xFFFE, 1, 16000, 32000, 2, 16) + b"\x16\x00" + b"\x00" * 22)),
        "mp3 format tag": lambda: wav(path, tag=0x55, bits=16),
        "12-bit samples": lambda: wav(path, fmt=_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 12))),
        "zero channels": lambda: wav(path, fmt=_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 0, 16000, 0, 0, 16))),
        "zero rate": lambda: wav(path, fmt=_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, 0, 0, 2, 16))),
        "wrong block align": lambda: wav(path, fmt=_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, 16000, 64000, 4, 16))),
        "wrong byte rate": lambda: wav(path, fmt=_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, 16000, 16000, 2, 16))),
        "two fmt chunks": lambda: wav(path, before=_fmt(1, 1, 16000, 16)),
        "too many chunks": lambda: wav(path, before=filler * 16),
        "short fmt": lambda: wav(path, fmt=_chunk(b"fmt ", struct.pack("<HHII", 1, 1, 16000, 32000))),
    }[case]
    assert probe_pcm_wav(build()) is None


def _truncated(path: Path, by: int) -> Path:
    path.write_bytes(path.read_bytes()[:-by])
    return path


def test_a_missing_file_is_left_to_the_sandbox(tmp_path):
    assert probe_pcm_wav(tmp_path / "gone.wav") is None
