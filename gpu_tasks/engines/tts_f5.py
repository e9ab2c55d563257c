"""Modal text-to-speech: F5-TTS (flow matching, zero-shot voice cloning) on an L4.

Payload: `{"text": str, "speed"?: 0.5..2.0, "voice_sample"?: {"url": ...}, "voice_sample_text"?: str,
"seed"?: int}`. Result: `{"outputs": {"audio": ref}, "duration_ms", "sample_rate",
"voice_cloned": bool, "engine": "f5-tts"}`.

The voice sample is the reference audio F5-TTS imitates; `voice_sample_text` is what is said in
it (stored with the voice clone). Without it F5-TTS transcribes the reference itself with
Whisper large-v3-turbo, whose weights `download_models` also puts on the Volume. Without a voice
sample the package's own English reference voice is used and `voice_cloned` is false.

Weights: the F5TTS_v1_Base checkpoint and the Vocos vocoder, read from the `auteur-models` Volume
(/models). This module only runs inside the Modal container: it is not exercised by the test
suite (no weights or GPU there); its payload validation is shared with the local engine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines.tts import validate
from gpu_tasks.engines.weights import Repo
from gpu_tasks.errors import PermanentGpuError

MODELS_ROOT = os.environ.get("AUTEUR_MODELS_DIR", "/models")
F5_MODEL = "F5TTS_v1_Base"
F5_REPO = "SWivid/F5-TTS"
F5_CKPT = f"{MODELS_ROOT}/f5-tts/{F5_MODEL}/model_1250000.safetensors"
VOCOS_REPO = "charactr/vocos-mel-24khz"
VOCOS_DIR = f"{MODELS_ROOT}/vocos-mel-24khz"
DEFAULT_REF_TEXT = "Some call me nature, others call me mother nature."
# What download_models fetches (of F5-TTS's repository, only the checkpoint this engine loads).
REPOS = {"f5-tts": Repo(F5_REPO, files=(f"{F5_MODEL}/model_1250000.safetensors",)), "vocos-mel-24khz": VOCOS_REPO}

_lock = threading.Lock()
_cache: dict[str, Any] = {}


def load_f5() -> Any:
    with _lock:
        if "f5" not in _cache:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from f5_tts.api import F5TTS

            if not os.path.isfile(F5_CKPT) or not os.path.isdir(VOCOS_DIR):
                raise PermanentGpuError("model_unavailable", "F5-TTS weights missing from the models volume")
            _cache["f5"] = F5TTS(model=F5_MODEL, ckpt_file=F5_CKPT, vocoder_local_path=VOCOS_DIR)
        return _cache["f5"]


def run_modal(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    text, speed = validate(payload)
    sample = payload.get("voice_sample")
    ref_text = payload.get("voice_sample_text")
    if sample:
        ref_path = str(ctx.input_path(sample, "voice_sample"))
        ref_text = ref_text if isinstance(ref_text, str) else ""  # "" makes F5-TTS transcribe the sample
        cloned = True
    else:
        from importlib.resources import files

        ref_path = str(files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav"))
        ref_text, cloned = DEFAULT_REF_TEXT, False
    ctx.progress(5.0)
    tts = load_f5()
    ctx.progress(20.0)
    out = ctx.output_path("audio", ".wav")
    seed = payload.get("seed")
    wav, sample_rate, _ = tts.infer(
        ref_file=ref_path,
        ref_text=ref_text,
        gen_text=text,
        speed=speed,
        file_wave=str(out),
        seed=seed if isinstance(seed, int) else None,
        show_info=lambda *_args, **_kw: None,
    )
    ref = ctx.deliver("audio", out, "audio/wav")
    return {
        "outputs": {"audio": ref},
        "duration_ms": round(len(wav) / sample_rate * 1000),
        "sample_rate": int(sample_rate),
        "voice_cloned": cloned,
        "engine": "f5-tts",
    }
