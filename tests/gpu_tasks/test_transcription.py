from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import av
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import transcription
from gpu_tasks.engines.tts import synthesize, write_wav
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.languages import AUTO, LANGUAGE_CHOICES, WHISPER_LANGUAGES
from tests.gpu_tasks.helpers import SENTENCE, heard_most_of, words_of


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.duration is not None and stream.time_base is not None
        return float(stream.duration * stream.time_base)


def ctx(tmp_path: Path, payload: Mapping[str, Any]) -> EngineContext:
    return EngineContext(workdir=tmp_path / "work", payload=payload)


def test_local_transcription_of_generated_speech_has_timed_words(tmp_path: Path, speech_wav: Path) -> None:
    progress: list[float] = []
    payload = {"media": {"path": str(speech_wav)}}
    context = EngineContext(workdir=tmp_path, payload=payload, progress=progress.append)
    result = transcription.run_local(payload, context)

    duration_ms = audio_seconds(speech_wav) * 1000
    assert result["language"] == "en"
    assert abs(result["duration_ms"] - duration_ms) < 50
    expected = words_of(SENTENCE)
    assert heard_most_of(result["text"]), result["text"]
    all_words = [w for s in result["segments"] for w in s["words"]]
    assert len(all_words) >= 0.7 * len(expected)
    previous_start = 0
    for w in all_words:
        assert 0 <= w["start_ms"] <= w["end_ms"] <= duration_ms + 1
        assert w["start_ms"] >= previous_start
        assert 0.0 <= w["confidence"] <= 1.0
        previous_start = w["start_ms"]
    for s in result["segments"]:
        assert s["speaker"] == "Speaker 1"
        assert s["start_ms"] <= s["words"][0]["start_ms"]
    assert result["diarization"]["performed"] is False
    assert progress and progress[-1] > 90


def test_alignment_mode_returns_the_script_with_every_word_timed(tmp_path: Path, speech_wav: Path) -> None:
    payload = {"media": {"path": str(speech_wav)}, "script": SENTENCE}
    result = transcription.run_local(payload, ctx(tmp_path, payload))
    assert result["text"] == SENTENCE
    words = [w for s in result["segments"] for w in s["words"]]
    assert [w["word"] for w in words] == SENTENCE.split()
    assert result["alignment"]["mode"] == "script"
    assert result["alignment"]["matched"] >= 0.7 * len(words)
    assert all(a["end_ms"] <= b["start_ms"] + 1 for a, b in itertools.pairwise(words))
    assert words[-1]["end_ms"] <= result["duration_ms"]


SPANISH = "Buenos días, hoy vamos a hablar de la historia de la ciudad."


@pytest.fixture(scope="module")
def spanish_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SPANISH spoken by eSpeak NG's Spanish voice, about 4 s."""
    path = tmp_path_factory.mktemp("spanish") / "es.wav"
    pcm, rate = synthesize(SPANISH, speed=0.9, voice="es")
    write_wav(path, pcm, rate)
    return path


def test_the_language_table_is_whispers() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert set(WHISPER_LANGUAGES) == set(_LANGUAGE_CODES)
    assert LANGUAGE_CHOICES[0] == AUTO and len(LANGUAGE_CHOICES) == len(WHISPER_LANGUAGES) + 1


def test_the_local_engine_takes_its_models_languages() -> None:
    supported = transcription.languages()
    # tiny.en's English and the multilingual base model's 99 languages (not large-v3's Cantonese).
    assert {"en", "es", "de", "ja", AUTO} <= supported
    assert "yue" not in supported
    assert len(supported) == len(WHISPER_LANGUAGES)  # 99 codes + auto


@pytest.mark.parametrize("language", ["auto", "es"])
def test_spanish_speech_is_transcribed_with_its_language(tmp_path: Path, spanish_wav: Path, language: str) -> None:
    payload = {"media": {"path": str(spanish_wav)}, "language": language}
    result = transcription.run_local(payload, ctx(tmp_path, payload))
    assert result["language"] == "es"  # detected for auto
    assert result["model"] == transcription.MULTILINGUAL_MODEL_NAME
    heard = set(words_of(result["text"]))
    assert len(heard & set(words_of(SPANISH))) >= 6, result["text"]
    words = [w for s in result["segments"] for w in s["words"]]
    assert words and all(0 <= w["start_ms"] <= w["end_ms"] <= result["duration_ms"] + 1 for w in words)


def test_english_still_runs_on_tiny_en(tmp_path: Path, speech_wav: Path) -> None:
    payload = {"media": {"path": str(speech_wav)}, "language": "en"}
    result = transcription.run_local(payload, ctx(tmp_path, payload))
    assert result["model"] == transcription.MODEL_NAME and result["language"] == "en"


def test_a_language_the_local_models_lack_is_unavailable(tmp_path: Path, speech_wav: Path) -> None:
    payload = {"media": {"path": str(speech_wav)}, "language": "yue"}
    with pytest.raises(PermanentGpuError) as info:
        transcription.run_local(payload, ctx(tmp_path, payload))
    assert info.value.code == "feature_unavailable"


def test_undecodable_media_is_invalid_media(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 10)
    payload = {"media": {"path": str(junk)}}
    with pytest.raises(PermanentGpuError) as info:
        transcription.run_local(payload, ctx(tmp_path, payload))
    assert info.value.code == "invalid_media"


def test_missing_input_file_is_invalid_input(tmp_path: Path) -> None:
    payload = {"media": {"path": str(tmp_path / "nope.wav")}}
    with pytest.raises(PermanentGpuError) as info:
        transcription.run_local(payload, ctx(tmp_path, payload))
    assert info.value.code == "invalid_input"
