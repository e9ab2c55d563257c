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
    layers: int  # transformer blocks (the cost model's attention term)
    dim: int  # their width
    params: float  # the transformer's parameters (the cost model's linear term)


VARIANTS: dict[str, WanVariant] = {
    "wan2.1-t2v-14b": WanVariant(
        "Wan2.1-T2V-14B", "Wan-AI/Wan2.1-T2V-14B-Diffusers", ("832x480", "480x832", "1280x720", "720x1280"),
        layers=40, dim=5120, params=14.0e9,
    ),
    "wan2.1-t2v-1.3b": WanVariant("Wan2.1-T2V-1.3B", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", ("832x480", "480x832"),
                                  layers=30, dim=1536, params=1.3e9),
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
# The cost model (`estimated_seconds`): bf16 throughput a GPU sustains on a video transformer
# (its dense peak times the utilisation such models reach: 45% on an A100, 40% on an H100), and
# what a call spends besides denoising (the text encoder, the VAE decode of up to 161 frames, the
# MP4 encode). Estimates from it run somewhat above published timings (a 720p clip at 40 steps on
# an A100 is estimated at 3,874 s against 2,736 s reported), so a request it admits finishes.
SUSTAINED_FLOPS = {"A100-80GB": 312e12 * 0.45, "H100": 989e12 * 0.40, "L40S": 362e12 * 0.40, "A10G": 125e12 * 0.40}
OVERHEAD_S = 90.0
# The latent video: the VAE shrinks 4x in time (plus the first frame) and 8x in space, and the
# transformer's patches are 1x2x2 of it.
VAE_TIME, VAE_SPACE, PATCH = 4, 8, 2
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


def tokens(width: int, height: int, num_frames: int) -> int:
    """The transformer's sequence length for a clip: its latent frames times its patches."""
    side = VAE_SPACE * PATCH
    return ((num_frames - 1) // VAE_TIME + 1) * (height // side) * (width // side)


def estimated_seconds(width: int, height: int, duration_s: int, steps: int, guidance: float) -> float:
    """What a call takes on the type's GPU, by the cost model: each denoising step is one pass of
    the transformer (two with classifier-free guidance, guidance > 1), and a pass costs 2 x params
    FLOPs per token for its linear layers plus 4 x layers x tokens^2 x dim for self-attention."""
    variant = VARIANTS[FOLDER]
    n = tokens(width, height, 4 * math.ceil(duration_s * FPS / 4) + 1)
    per_pass = 2 * variant.params * n + 4 * variant.layers * n * n * variant.dim
    passes = steps * (2 if guidance > 1.0 else 1)
    return per_pass * passes / SUSTAINED_FLOPS[get_spec(JOB_TYPE).gpu.value] + OVERHEAD_S


def most_steps(width: int, height: int, duration_s: int, guidance: float) -> int:
    """The most denoising steps that fit in the type's time limit at this size and length (0: none)."""
    limit = get_spec(JOB_TYPE).time_limit_s
    one = estimated_seconds(width, height, duration_s, 1, guidance) - OVERHEAD_S
    return max(0, min(MAX_STEPS, math.floor((limit - OVERHEAD_S) / one)))


def too_costly(width: int, height: int, duration_s: int, steps: int, guidance: float) -> str | None:
    """Why the request cannot finish within the type's time limit, naming what fits; None when it can."""
    fits = most_steps(width, height, duration_s, guidance)
    if steps <= fits:
        return None
    spec = get_spec(JOB_TYPE)
    seconds = estimated_seconds(width, height, duration_s, steps, guidance)
    advice = (f"at most {fits} steps fit at this size and length" if fits else
              "no number of steps fits at this size and length: choose a shorter duration or a smaller resolution")
    return (f"{width}x{height} for {duration_s} s at {steps} steps takes about {seconds:,.0f} s on an "
            f"{spec.gpu.value}, past the {spec.time_limit_s} s limit; {advice}")


def request_cost(params: Mapping[str, Any]) -> tuple[float, str | None]:
    """A request's estimated seconds and why it cannot finish in time (None when it can), the
    fields it leaves out at their defaults: what the API prices and refuses by."""
    width, height = (int(side) for side in str(params.get("resolution") or DEFAULT_RESOLUTION).split("x"))
    duration = int(params.get("duration_sec") or DEFAULT_DURATION_S)
    steps = int(params.get("steps") or DEFAULT_STEPS)
    guidance = float(params.get("guidance") or DEFAULT_GUIDANCE)
    return (estimated_seconds(width, height, duration, steps, guidance),
            too_costly(width, height, duration, steps, guidance))


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
    request = VideoRequest(
        prompt=prompt,
        negative_prompt=_text_field(payload, "negative_prompt"),
        duration_s=_int_field(payload, "duration_sec", MIN_DURATION_S, MAX_DURATION_S, DEFAULT_DURATION_S),
        width=width,
        height=height,
        steps=_int_field(payload, "steps", MIN_STEPS, MAX_STEPS, DEFAULT_STEPS),
        guidance=float(guidance),
    )
    reason = too_costly(width, height, request.duration_s, request.steps, request.guidance)
    if reason is not None:
        raise _invalid(reason)
    return request


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


def flow_scheduler(flow_shift: float) -> Any:
    """Wan's sampler: UniPC over flow-matching sigmas, every setting named. Built from no config:
    a repository revision that ships FlowMatchEuler's config would otherwise leave UniPC predicting
    noise (`epsilon`) on variance-preserving sigmas, which turns Wan's output to noise. A fresh one
    each call: the shift depends on the size, and the cached pipeline outlives the call."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=flow_shift,
        solver_order=2, solver_type="bh2", predict_x0=True, lower_order_final=True, final_sigmas_type="zero",
        timestep_spacing="linspace",
    )


def generate(pipe: Any, request: VideoRequest, seed: int, ctx: EngineContext) -> Any:
    """(T, H, W, 3) uint8 RGB frames, `request.num_frames` of them, reporting each denoising step."""
    import numpy as np

    pipe.scheduler = flow_scheduler(request.flow_shift)

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
