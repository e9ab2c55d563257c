"""Local text-to-speech: eSpeak NG through the library and data that the `espeakng-loader` wheel ships.

Payload: `{"text": str, "speed"?: 0.5..2.0 (1.0), "language"?: espeak voice ("en-us"),
"voice_sample"?: input_ref}`.
Result: `{"outputs": {"audio": ref}, "duration_ms", "sample_rate", "voice": str,
"voice_cloned": false, "engine": "espeak-ng"}`.

eSpeak NG is a formant synthesiser: it cannot clone a voice. A `voice_sample` in the payload is
ignored (not even downloaded) and the result says `"voice_cloned": false`, so the jobs app can
show it; voice cloning runs only on Modal (F5-TTS, `gpu_tasks.engines.tts_f5`).
"""

from __future__ import annotations

import ctypes
import threading
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpu_tasks.contract import EngineContext
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Bound

MAX_TEXT_CHARS = 5000
MIN_SPEED, MAX_SPEED, DEFAULT_SPEED = 0.5, 2.0, 1.0
# What the API's input reads (gpu_tasks.input_bounds); F5-TTS (tts_f5.py) validates with this module too.
INPUT_BOUNDS = {
    "text": Bound("text", 1, MAX_TEXT_CHARS),
    "speed": Bound("number", MIN_SPEED, MAX_SPEED, DEFAULT_SPEED),
}
DEFAULT_RATE_WPM = 175  # eSpeak's own default speaking rate: speed 1.0
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
# eSpeak keeps global state (voice, rate, callback): one synthesis at a time per process.
_lock = threading.Lock()
_state: dict[str, Any] = {}


def _library() -> tuple[Any, int]:
    if "lib" not in _state:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        # The path is the directory that *contains* espeak-ng-data.
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, 0)
        if sample_rate <= 0:
            raise PermanentGpuError("model_unavailable", "eSpeak NG failed to initialise")
        _state["lib"], _state["rate"] = lib, sample_rate
    return _state["lib"], _state["rate"]


def synthesize(text: str, *, speed: float = 1.0, voice: str = "en-us") -> tuple[bytes, int]:
    """16-bit mono PCM of `text` and its sample rate."""
    lib, sample_rate = _library()
    chunks: list[bytes] = []

    def on_audio(wav: Any, num_samples: int, _events: Any) -> int:
        if wav and num_samples > 0:
            chunks.append(ctypes.string_at(wav, num_samples * 2))
        return 0

    callback = _CALLBACK(on_audio)  # kept referenced until synthesis ends
    encoded = text.encode("utf-8")
    with _lock:
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise PermanentGpuError("invalid_input", f"unknown voice/language {voice!r}")
        rate = max(80, min(450, round(DEFAULT_RATE_WPM * speed)))
        lib.espeak_SetParameter(_ESPEAK_RATE, rate, 0)
        status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if status != 0:
            raise PermanentGpuError("internal", f"eSpeak NG synthesis failed ({status})")
    return b"".join(chunks), sample_rate


def write_wav(path: Path, pcm: bytes, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)


def validate(payload: Mapping[str, Any]) -> tuple[str, float]:
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        raise PermanentGpuError("invalid_input", "text is required")
    if len(text) > MAX_TEXT_CHARS:
        raise PermanentGpuError("invalid_input", f"text longer than {MAX_TEXT_CHARS} characters")
    speed = payload.get("speed", DEFAULT_SPEED)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise PermanentGpuError("invalid_input", f"speed must be between {MIN_SPEED} and {MAX_SPEED}")
    return text, float(speed)


def run_local(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    text, speed = validate(payload)
    voice = str(payload.get("language") or "en-us")
    ctx.progress(5.0)
    pcm, sample_rate = synthesize(text, speed=speed, voice=voice)
    if not pcm:
        raise PermanentGpuError("invalid_input", "nothing to say: the text produced no audio")
    out = ctx.output_path("audio", ".wav")
    write_wav(out, pcm, sample_rate)
    ref = ctx.deliver("audio", out, "audio/wav")
    return {
        "outputs": {"audio": ref},
        "duration_ms": round(len(pcm) / 2 / sample_rate * 1000),
        "sample_rate": sample_rate,
        "voice": voice,
        "voice_cloned": False,
        "engine": "espeak-ng",
    }
