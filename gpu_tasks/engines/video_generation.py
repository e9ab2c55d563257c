"""Text-to-video: Wan2.1 T2V (Alibaba's Wan team, Apache-2.0) through diffusers' `WanPipeline`.

Wan2.1 is a flow-matching diffusion transformer over the latents of a causal 3D VAE, conditioned
on UMT5-XXL text embeddings. Two sizes share the architecture and this code: 14B (480p and 720p;
the production model) and 1.3B (480p only). The type's declaration (gpu_tasks/types.py) picks
one by its weights folder, a key of `VARIANTS`; the model name, the repository download_models
fetches and the sizes allowed follow it, so the cheaper variant is a change of that one row.

Payload: `{"prompt": str (1-2000 chars), "negative_prompt"?: str (<= 2000 chars),
"duration_sec"?: int 1..10 (5), "resolution"?: "WxH" from ALLOWED_RESOLUTIONS ("832x480"),
"seed"?: int 0..2**31-1 (random, recorded), "steps"?: int 1..100 (50),
"guidance"?: float 1.0..20.0 (5.0; 1.0 turns classifier-free guidance off)}`.
Result: `{"outputs": {"video": ref}, "duration_ms", "width", "height", "fps", "frames", "model",
"seed", "steps"}`; `video` is an H.264 MP4 (`video/mp4`, no audio) at FPS frames per second
lasting exactly `duration_sec`, and its ref's `metadata` records every parameter that shaped it.

GPU memory (bf16 transformer and text encoder, fp32 VAE, everything resident on the GPU): the 14B
transformer takes about 28 GB, UMT5-XXL about 11 GB, the VAE 0.5 GB, plus activations that grow
with frames x pixels: an 80 GB A100/H100. The 1.3B transformer takes about 3 GB, so that variant
runs on a 24 GB card at 480p. Wan was trained on 81-frame clips (5 s at 16 fps); longer clips
cost more than linearly (attention is quadratic in frames x pixels) and leave its training range.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import encode, weights
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Bound, Choices
from gpu_tasks.types import get_spec

JOB_TYPE = "video-generation"


@dataclass(frozen=True)
class WanVariant:
    model: str  # display name, recorded with every output
    repo: str  # the diffusers-format repository download_models fetches
    resolutions: tuple[str, ...]  # "WxH" sizes the checkpoint was trained for


VARIANTS: dict[str, WanVariant] = {
    "wan2.1-t2v-14b": WanVariant(
        "Wan2.1-T2V-14B", "Wan-AI/Wan2.1-T2V-14B-Diffusers", ("832x480", "480x832", "1280x720", "720x1280")
    ),
    "wan2.1-t2v-1.3b": WanVariant("Wan2.1-T2V-1.3B", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", ("832x480", "480x832")),
}


def _declared_folder() -> str:
    declared = get_spec(JOB_TYPE).weights
    if declared is None or declared.folder not in VARIANTS:
        # A declaration naming no known variant would otherwise serve a model nobody chose.
        raise ValueError(f"{JOB_TYPE} must declare one of {sorted(VARIANTS)} as its weights folder")
    return declared.folder


FOLDER = _declared_folder()
MODEL = VARIANTS[FOLDER].model
REPOS = {FOLDER: VARIANTS[FOLDER].repo}
# validate() reads this at call time, so a test whose tiny model runs at a tiny size can widen it.
ALLOWED_RESOLUTIONS: tuple[str, ...] = VARIANTS[FOLDER].resolutions
DEFAULT_RESOLUTION = "832x480"

FPS = 16  # Wan's native frame rate: it was trained on 16 fps clips
MAX_PROMPT_CHARS = 2000
MIN_DURATION_S, MAX_DURATION_S, DEFAULT_DURATION_S = 1, 10, 5
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 1, 100, 50
MIN_GUIDANCE, MAX_GUIDANCE, DEFAULT_GUIDANCE = 1, 20, 5.0
# What the API's input reads (gpu_tasks.input_bounds): validate() checks the same constants.
INPUT_BOUNDS = {
    "prompt": Bound("text", 1, MAX_PROMPT_CHARS),
    "negative_prompt": Bound("text", 0, MAX_PROMPT_CHARS),
    "duration_sec": Bound("integer", MIN_DURATION_S, MAX_DURATION_S, DEFAULT_DURATION_S),
    "resolution": Choices(ALLOWED_RESOLUTIONS, DEFAULT_RESOLUTION),
    "seed": weights.SEED_BOUND,
    "steps": Bound("integer", MIN_STEPS, MAX_STEPS, DEFAULT_STEPS),
    "guidance": Bound("number", MIN_GUIDANCE, MAX_GUIDANCE, DEFAULT_GUIDANCE),
}
# The flow-matching shift diffusers' Wan2.1 example uses per size: more noisy steps for more pixels.
FLOW_SHIFT_480P, FLOW_SHIFT_720P = 3.0, 5.0
# Progress: denoising runs from DENOISE_START to DENOISE_END percent; the VAE decode and the
# MP4 encode take the rest.
DENOISE_START, DENOISE_END = 5.0, 90.0


@dataclass(frozen=True)
class VideoRequest:
    prompt: str
    negative_prompt: str | None
    duration_s: int
    width: int
    height: int
    steps: int
    guidance: float

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def num_frames(self) -> int:
        """Frames the model generates: its causal VAE decodes 4k+1 frames, at least a full duration's worth."""
        return 4 * math.ceil(self.duration_s * FPS / 4) + 1

    @property
    def kept_frames(self) -> int:
        """Frames written: exactly `duration_s` at FPS (the extra generated ones are dropped)."""
        return self.duration_s * FPS

    @property
    def flow_shift(self) -> float:
        return FLOW_SHIFT_720P if min(self.width, self.height) >= 720 else FLOW_SHIFT_480P


def _invalid(message: str) -> PermanentGpuError:
    return PermanentGpuError("invalid_input", message)


def _int_field(payload: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"{name} must be an integer from {low} to {high}")
    return value


def _text_field(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{name} must be a string")
    if len(value) > MAX_PROMPT_CHARS:
        raise _invalid(f"{name} longer than {MAX_PROMPT_CHARS} characters")
    return value


def validate(payload: Mapping[str, Any]) -> VideoRequest:
    prompt = _text_field(payload, "prompt")
    if prompt is None or not prompt.strip():
        raise _invalid("prompt is required")
    resolution = payload.get("resolution", DEFAULT_RESOLUTION)
    if resolution not in ALLOWED_RESOLUTIONS:
        raise _invalid(f"resolution must be one of {', '.join(ALLOWED_RESOLUTIONS)} for {MODEL}")
    width, height = (int(side) for side in str(resolution).split("x"))
    guidance = payload.get("guidance", DEFAULT_GUIDANCE)
    if (
        isinstance(guidance, bool)
        or not isinstance(guidance, int | float)
        or not MIN_GUIDANCE <= guidance <= MAX_GUIDANCE
    ):
        raise _invalid(f"guidance must be a number from {MIN_GUIDANCE:g} to {MAX_GUIDANCE:g}")
    return VideoRequest(
        prompt=prompt,
        negative_prompt=_text_field(payload, "negative_prompt"),
        duration_s=_int_field(payload, "duration_sec", MIN_DURATION_S, MAX_DURATION_S, DEFAULT_DURATION_S),
        width=width,
        height=height,
        steps=_int_field(payload, "steps", MIN_STEPS, MAX_STEPS, DEFAULT_STEPS),
        guidance=float(guidance),
    )


@functools.lru_cache(maxsize=1)
def load(path: str) -> Any:
    """The pipeline from the weights folder, on this process's device, loaded once per process."""
    import torch
    from diffusers import AutoencoderKLWan, WanPipeline

    device = weights.device()
    # Wan's recommended settings decode in float32 for quality; the VAE is small enough to afford it.
    vae = AutoencoderKLWan.from_pretrained(path, subfolder="vae", dtype=torch.float32, local_files_only=True)
    pipe = WanPipeline.from_pretrained(path, vae=vae, dtype=weights.dtype_for(device), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def generate(pipe: Any, request: VideoRequest, seed: int, ctx: EngineContext) -> Any:
    """(T, H, W, 3) uint8 RGB frames, `request.num_frames` of them, reporting each denoising step."""
    import numpy as np
    from diffusers import UniPCMultistepScheduler

    # A fresh scheduler each call: the shift depends on the size, and the cached pipeline outlives the call.
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=request.flow_shift)

    def on_step_end(_pipe: Any, step: int, _timestep: Any, _tensors: dict[str, Any]) -> dict[str, Any]:
        ctx.progress(DENOISE_START + (DENOISE_END - DENOISE_START) * (step + 1) / request.steps)
        if ctx.remaining_s() == 0.0:
            raise PermanentGpuError("timeout", "video generation ran past the job's time limit")
        return {}

    output = pipe(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        height=request.height,
        width=request.width,
        num_frames=request.num_frames,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        generator=weights.generator(seed, weights.device()),
        output_type="np",
        callback_on_step_end=on_step_end,
    )
    video = np.asarray(output.frames[0])  # (T, H, W, 3) floats in [0, 1]
    return (np.clip(video, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def run(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    request = validate(payload)
    seed = weights.seed_of(payload)
    path = weights.weights_of(JOB_TYPE)
    ctx.progress(1.0)
    pipe = load(str(path))
    ctx.progress(DENOISE_START)
    frames = generate(pipe, request, seed, ctx)[: request.kept_frames]
    out = ctx.output_path("video", ".mp4")
    encode.write_mp4(frames, FPS, out)
    ref = ctx.deliver("video", out, "video/mp4")
    ref["metadata"] = {
        "model": MODEL,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": seed,
        "steps": request.steps,
        "guidance": request.guidance,
        "flow_shift": request.flow_shift,
        "resolution": request.resolution,
        "fps": FPS,
        "num_frames": request.num_frames,
        "duration_sec": request.duration_s,
    }
    ctx.progress(100.0)
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # as write_mp4 stores them
    return {
        "outputs": {"video": ref},
        "duration_ms": round(frames.shape[0] / FPS * 1000),
        "width": width,
        "height": height,
        "fps": FPS,
        "frames": int(frames.shape[0]),
        "model": MODEL,
        "seed": seed,
        "steps": request.steps,
    }
