from __future__ import annotations

import wave
from pathlib import Path

import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import tts
from gpu_tasks.errors import PermanentGpuError

TEXT = "Welcome to Auteur. This voice was generated on the worker's CPU."


def run(tmp_path: Path, **payload: object) -> dict[str, object]:
    payload.setdefault("output_dir", str(tmp_path / "out"))
    return tts.run_local(payload, EngineContext(workdir=tmp_path / "work", payload=payload))


def wav_seconds(path: str) -> float:
    with wave.open(path) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getnframes() / w.getframerate()


def test_tts_writes_a_decodable_wav_of_plausible_length(tmp_path: Path) -> None:
    result = run(tmp_path, text=TEXT, voice_sample={"url": "https://example.invalid/never-fetched.wav"})
    audio = result["outputs"]["audio"]  # type: ignore[index]
    seconds = wav_seconds(audio["path"])
    # ~10 words at eSpeak's 175 wpm: a few seconds, certainly not silence or a minute.
    assert 2.0 < seconds < 8.0
    assert Path(audio["path"]).parent == tmp_path / "out"
    assert audio["content_type"] == "audio/wav" and audio["size_bytes"] == Path(audio["path"]).stat().st_size
    assert abs(result["duration_ms"] - seconds * 1000) < 2  # type: ignore[operator]
    assert result["voice_cloned"] is False  # eSpeak cannot clone; the sample was ignored


def test_speed_changes_the_duration(tmp_path: Path) -> None:
    slow = run(tmp_path / "slow", text=TEXT, speed=0.75)
    fast = run(tmp_path / "fast", text=TEXT, speed=1.5)
    assert fast["duration_ms"] < 0.75 * slow["duration_ms"]  # type: ignore[operator]


@pytest.mark.parametrize(
    "payload",
    [{"text": ""}, {"text": "   "}, {"text": "x" * 5001}, {"text": "hi", "speed": 3}, {"text": "hi", "speed": True},
     {"text": "hi", "language": "no-such-voice"}],
)  # fmt: skip
def test_invalid_requests_are_invalid_input(tmp_path: Path, payload: dict[str, object]) -> None:
    with pytest.raises(PermanentGpuError) as info:
        run(tmp_path, **payload)
    assert info.value.code == "invalid_input"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
