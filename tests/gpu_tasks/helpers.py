from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np

from gpu_tasks.engines.ffmpeg import ffmpeg_exe

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def heard_most_of(text: str, sentence: str = SENTENCE) -> bool:
    """At least 60 % of the sentence's words were recognised: Whisper tiny mishears a word or two
    of synthetic speech ("brown fox" as "round fock"), and by how much varies between machines and
    runs (its float sums follow the thread count): a clean run of make test heard "The quick round
    -foc stump, silver malaisey dog near the river bank." (8 of 13). Speech it did not hear at all
    matches none."""
    heard = set(words_of(text))
    expected = words_of(sentence)
    return sum(w in heard for w in expected) >= 0.6 * len(expected)


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def streams(path: Path) -> dict[str, Any]:
    """Container duration and per-stream facts, read with PyAV."""
    with av.open(str(path)) as c:
        assert c.duration is not None, f"{path} has no duration"
        out: dict[str, Any] = {"duration_s": c.duration / 1e6, "video": None, "audio": None}
        if c.streams.video:
            v = c.streams.video[0]
            assert v.average_rate is not None and v.duration is not None and v.time_base is not None
            out["video"] = {
                "codec": v.codec_context.name, "width": v.codec_context.width, "height": v.codec_context.height,
                "fps": float(v.average_rate), "frames": v.frames, "duration_s": float(v.duration * v.time_base),
            }  # fmt: skip
        if c.streams.audio:
            a = c.streams.audio[0]
            assert a.duration is not None and a.time_base is not None
            out["audio"] = {
                "codec": a.codec_context.name, "rate": a.codec_context.sample_rate,
                "channels": a.codec_context.channels, "duration_s": float(a.duration * a.time_base),
            }  # fmt: skip
        return out


def frame_at(path: Path, seconds: float) -> np.ndarray:
    """The first frame at or after `seconds`, as RGB (height x width x 3, float)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for frame in c.decode(stream):
            if frame.time is not None and frame.time + 1e-6 >= seconds:
                return frame.to_ndarray(format="rgb24").astype(float)
    raise AssertionError(f"no frame at {seconds}s")


def frame_rgb_at(path: Path, seconds: float) -> tuple[float, float, float]:
    """Mean (R, G, B) of the first frame at or after `seconds`."""
    rgb = frame_at(path, seconds).reshape(-1, 3).mean(axis=0)
    return float(rgb[0]), float(rgb[1]), float(rgb[2])


def audio_pcm(path: Path) -> tuple[np.ndarray, int]:
    """The audio, mixed to mono, and its sample rate."""
    with av.open(str(path)) as c:
        samples = []
        rate = c.streams.audio[0].codec_context.sample_rate
        for frame in c.decode(audio=0):
            data = frame.to_ndarray()
            samples.append(data.mean(axis=0) if data.ndim == 2 and data.shape[0] <= 8 else data.reshape(-1))
    return np.concatenate(samples), rate


def audio_rms(path: Path, start_s: float, end_s: float) -> float:
    """RMS of the (mono-mixed) audio between two times."""
    pcm, rate = audio_pcm(path)
    chunk = pcm[int(start_s * rate) : int(end_s * rate)]
    return float(np.sqrt(np.mean(np.square(chunk)))) if len(chunk) else 0.0


def declared_folder(job_type: str) -> str:
    """The weights folder gpu_tasks/types.py declares for `job_type` (tests build tiny models there)."""
    from gpu_tasks.types import get_spec

    declared = get_spec(job_type).weights
    assert declared is not None
    return declared.folder
