"""Modal transcription: Whisper large-v3 through `transformers`, plus pyannote speaker diarization.

Runs inside the Modal container (A10G). Weights are read from the `auteur-models` Volume mounted
at /models (put there once by `modal run gpu_tasks/modal_app.py::download_models`); the hub is
switched off at run time.

Payload: `{"media": {"url": ...}, "language"?: code | "auto" | null (both detect), "script"?: str,
"diarization"?: true}`; large-v3 is multilingual: every language of `gpu_tasks.languages`.
Result: the transcript shape of `gpu_tasks.engines.transcript` (its `language` the one
transcribed, the detected one when none was named), plus `"model"`, `"diarization"`,
`"alignment"`.

A long file runs in pieces (gpu_tasks.pieces): each piece's call names its `span` and
`"diarization": false` and transcribes that span alone, timed from its start; one more call with
`"speakers_only": true` diarizes the whole file and answers its speaker turns alone
(`transcript.speaker_turns`: one segment a turn, no words), so the speakers are the same across
the pieces when they are stitched.

Word timings come from the ASR pipeline's `return_timestamps="word"` (cross-attention DTW over
the model's alignment heads). The pipeline exposes no per-word probability, so `confidence` is
null here rather than an invented number. Audio longer than 30 s is transcribed in 30 s chunks
batched on the GPU (the pipeline stitches the chunks), which keeps an hour of audio inside the
type's 600 s limit.

What runs where: `transcribe_audio` and everything it calls is exercised in the test suite with
a tiny randomly initialised Whisper built in the test; `load_asr_pipeline`, `load_diarization`
and `diarize` need the real weights and a GPU and only run on Modal.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from gpu_tasks.contract import EngineContext, ProgressFn, input_limit_s
from gpu_tasks.engines.media import decode_audio
from gpu_tasks.engines.transcript import (
    Turn,
    Word,
    align_to_script,
    assign_speakers,
    build_transcript,
    clamp_words,
    group_words,
    speaker_turns,
)
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.languages import AUTO, WHISPER_LANGUAGES, with_auto
from gpu_tasks.pieces import span_of

SAMPLE_RATE = 16000
CHUNK_S = 30
MODELS_ROOT = os.environ.get("AUTEUR_MODELS_DIR", "/models")
WHISPER_REPO = "openai/whisper-large-v3"
DIARIZATION_REPO = "pyannote/speaker-diarization-community-1"
WHISPER_DIR = f"{MODELS_ROOT}/whisper-large-v3"
DIARIZATION_DIR = f"{MODELS_ROOT}/pyannote-speaker-diarization-community-1"
MODEL_NAME = "whisper-large-v3 (transformers)"
# What download_models fetches: {folder under the models directory: hub repository}.
REPOS = {"whisper-large-v3": WHISPER_REPO, "pyannote-speaker-diarization-community-1": DIARIZATION_REPO}

_lock = threading.Lock()
_cache: dict[str, Any] = {}


def languages() -> frozenset[str]:
    """What large-v3 transcribes: every Whisper language, and `auto`."""
    return with_auto(WHISPER_LANGUAGES)


def load_asr_pipeline(model_dir: str = WHISPER_DIR, device: str | None = None) -> Any:
    """The ASR pipeline over local weights, fp16 on GPU (loaded once per container)."""
    with _lock:
        if "asr" not in _cache:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor, pipeline

            if not os.path.isdir(model_dir):
                raise PermanentGpuError("model_unavailable", f"Whisper weights missing at {model_dir}")
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
            model = AutoModelForSpeechSeq2Seq.from_pretrained(
                model_dir, dtype=dtype, low_cpu_mem_usage=True, use_safetensors=True, local_files_only=True
            ).to(device)
            processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
            _cache["asr"] = pipeline(
                "automatic-speech-recognition",
                model=model,
                tokenizer=processor.tokenizer,
                feature_extractor=processor.feature_extractor,
                dtype=dtype,
                device=device,
                ignore_warning=True,  # chunked batching is how we keep long audio inside the time limit
            )
        return _cache["asr"]


def load_diarization(model_dir: str = DIARIZATION_DIR, device: str | None = None) -> Any:
    """pyannote's diarization pipeline over local weights (loaded once per container)."""
    with _lock:
        if "diarization" not in _cache:
            import torch
            from pyannote.audio import Pipeline

            if not os.path.isdir(model_dir):
                raise PermanentGpuError("model_unavailable", f"diarization weights missing at {model_dir}")
            pipe = Pipeline.from_pretrained(model_dir)
            if pipe is None:
                raise PermanentGpuError("model_unavailable", "pyannote could not load the diarization pipeline")
            pipe.to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
            _cache["diarization"] = pipe
        return _cache["diarization"]


def diarize(pipeline: Any, audio: Any, sample_rate: int = SAMPLE_RATE) -> list[Turn]:
    import torch

    waveform = torch.from_numpy(audio).unsqueeze(0)
    output = pipeline({"waveform": waveform, "sample_rate": sample_rate})
    # pyannote 4 returns a DiarizeOutput; its exclusive annotation (no overlapping turns) is the
    # one meant for attributing words. pyannote 3 returned the Annotation itself.
    annotation = getattr(output, "exclusive_speaker_diarization", None) or getattr(
        output, "speaker_diarization", output
    )
    return [
        Turn(float(seg.start), float(seg.end), str(label)) for seg, _, label in annotation.itertracks(yield_label=True)
    ]


def words_from_chunks(chunks: Sequence[Mapping[str, Any]], duration_s: float) -> list[Word]:
    """The pipeline's word chunks ({"text", "timestamp": (start, end|None)}) as clamped Words."""
    words = []
    for chunk in chunks:
        start, end = ((*tuple(chunk.get("timestamp") or (None, None)), None, None))[:2]
        if start is None:
            continue
        end = duration_s if end is None else end
        words.append(Word(str(chunk.get("text") or ""), float(start), float(end), None))
    return clamp_words(words, duration_s)


def detect_language(pipe: Any, audio: Any) -> str:
    """The language Whisper hears in the first 30 s ("und" if the model cannot tell)."""
    model = pipe.model
    if not getattr(model.generation_config, "is_multilingual", False):
        return "en"
    import torch

    features = pipe.feature_extractor(audio[: CHUNK_S * SAMPLE_RATE], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    input_features = features.input_features.to(model.device, dtype=model.dtype)
    with torch.no_grad():
        token_id = int(model.detect_language(input_features)[0])
    token = pipe.tokenizer.convert_ids_to_tokens(token_id)
    return token.strip("<|>") if isinstance(token, str) else "und"


def transcribe_audio(
    pipe: Any,
    audio: Any,
    *,
    language: str | None = None,
    script: str | None = None,
    turns: Sequence[Turn] | None = None,
    progress: ProgressFn | None = None,
    batch_size: int = 16,
    generate_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Transcribe mono 16 kHz float32 `audio` with an ASR pipeline into the transcript shape."""
    duration_s = len(audio) / SAMPLE_RATE
    if duration_s <= 0:
        raise PermanentGpuError("invalid_media", "the audio is empty")
    language = language or detect_language(pipe, audio)
    kwargs: dict[str, Any] = dict(generate_kwargs or {})
    if getattr(pipe.model.generation_config, "is_multilingual", False):
        # English-only checkpoints refuse task/language; multilingual ones must not translate.
        kwargs.update(task="transcribe", language=language)
    if script:
        # Like the local engine: the script's opening words as the decoder prompt.
        kwargs["prompt_ids"] = pipe.tokenizer.get_prompt_ids(" ".join(script.split()[:120]), return_tensors="pt").to(
            pipe.model.device
        )
    call: dict[str, Any] = {"return_timestamps": "word", "generate_kwargs": kwargs}
    if duration_s > CHUNK_S:
        if pipe.tokenizer.pad_token_id is None:  # batching pads the chunks' token sequences
            pipe.tokenizer.pad_token = pipe.tokenizer.eos_token
        call.update(chunk_length_s=CHUNK_S, batch_size=batch_size)
    out = pipe({"raw": audio, "sampling_rate": SAMPLE_RATE}, **call)
    if progress is not None:
        progress(70.0)
    words = words_from_chunks(out.get("chunks") or [], duration_s)
    if script:
        words, alignment = align_to_script(words, script)
        words = clamp_words(words, duration_s)
    else:
        alignment = {"mode": "none"}
    words = assign_speakers(words, turns or [])
    transcript = build_transcript(group_words(words), language=language, duration_s=duration_s)
    transcript.update(
        model=MODEL_NAME,
        diarization={"performed": bool(turns), "speakers": len({t.speaker for t in turns or []})},
        alignment=alignment,
    )
    return transcript


def run_modal(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    script = payload.get("script")
    if script is not None and not isinstance(script, str):
        raise PermanentGpuError("invalid_input", "script must be text")
    language = payload.get("language") or AUTO
    if language not in languages():
        raise PermanentGpuError("invalid_input", f"unknown language {language!r}")
    span = span_of(payload)
    speakers_only = payload.get("speakers_only") is True
    if speakers_only and (span is not None or payload.get("diarization") is False):
        raise PermanentGpuError("invalid_input", "speakers_only diarizes a whole file")
    path = ctx.input_path(payload.get("media"), "media", span=span, streams=("audio",))
    max_s = input_limit_s(payload.get("media"))
    if span is None:
        audio = decode_audio(path, SAMPLE_RATE, max_s=max_s)
    else:
        end_s = span[1] / 1000 if max_s is None else min(max_s, span[1] / 1000)
        audio = decode_audio(path, SAMPLE_RATE, max_s=end_s, start_s=span[0] / 1000)
    ctx.progress(5.0)
    if speakers_only:
        return speaker_turns(diarize(load_diarization(), audio), duration_s=len(audio) / SAMPLE_RATE)
    pipe = load_asr_pipeline()
    ctx.progress(10.0)
    turns: list[Turn] = []
    if payload.get("diarization", True):
        turns = diarize(load_diarization(), audio)
        ctx.progress(30.0)
    return transcribe_audio(
        pipe, audio, language=None if language == AUTO else language, script=script or None, turns=turns,
        progress=ctx.progress,
    )
