"""Text-to-audio generation: Stable Audio Open 1.0 through diffusers' `StableAudioPipeline`.

The model is a latent diffusion transformer (DiT, about 1.06 B parameters) denoising the latents
of an Oobleck audio autoencoder, conditioned on T5-base text embeddings and on the start and end
seconds of the clip. It makes 44.1 kHz stereo sound effects, ambiences and short music of up to
47 s (its window is 47.55 s). Licence: the Stability AI Community Licence (free below the
licence's revenue threshold, an enterprise licence above it); the Hugging Face repository is
gated, so `download_models` needs a token whose account accepted the terms.

Payload: `{"prompt": str (1-1000 characters; T5 reads it up to its tokenizer's length limit),
"negative_prompt"?: str, "duration_sec"?: int 1..47 (10), "seed"?: int, "steps"?: int 1..200 (100),
"guidance"?: float 0..20 (7.0)}`.
Result: `{"outputs": {"audio": ref}, "duration_ms", "sample_rate", "channels", "model", "seed",
"steps", "guidance"}`; `audio` is a 16-bit PCM WAV (`audio/wav`) at the model's sample rate and
channel count, exactly `duration_sec` long, whose ref carries the parameters that shaped it.

GPU memory: about 1.3 B parameters in all (DiT 1.06 B, T5-base encoder 0.11 B, autoencoder 0.16 B),
so about 2.7 GB of weights in bfloat16; the activations of a 47 s clip (1024 latent frames, doubled
for classifier-free guidance) are small beside them, so a 24 GB L4 or A10G should have ample room
(an estimate from the sizes, not a measurement). The model's scheduler (cosine DPM-Solver SDE)
draws its noise through `torchsde`, which the GPU image must install.

That scheduler's noise comes from a Brownian tree over [sigma_min, sigma_max] that it queries
between consecutive sigmas. Its last sigma before 0 lands on sigma_min give or take a float32
rounding: just below (as on this machine's CPU), torchsde clamps both ends and answers zeros;
just above (as on some GPUs), the interval is shorter than torchsde's tolerance and it recurses
until Python's limit. `load` swaps in `guarded_scheduler`: the same
sampler, with each query clamped into the tree and an interval below the tolerance answered with
no noise, which is what the stock one answers where it works (the step to sigma 0 multiplies the
noise by 0), so a seed gives the same audio.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from gpu_tasks.contract import EngineContext, ProgressFn
from gpu_tasks.engines import encode, weights
from gpu_tasks.engines.weights import Repo
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Bound
from gpu_tasks.types import get_spec

if TYPE_CHECKING:
    import numpy as np

JOB_TYPE = "audio-generation"
MODEL = get_spec(JOB_TYPE).model
# Of the (gated) repository, what diffusers loads, not the original single-file checkpoint.
REPOS = {
    "stable-audio-open-1.0": Repo("stabilityai/stable-audio-open-1.0", files=(
        "model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*", "transformer/*", "vae/*",
        "projection_model/*",
    )),
}

MAX_PROMPT_CHARS = 1000
MAX_DURATION_S = 47
DEFAULT_DURATION_S = 10
MAX_STEPS = 200
DEFAULT_STEPS = 100
MAX_GUIDANCE = 20
DEFAULT_GUIDANCE = 7.0
# What the API's input reads (gpu_tasks.input_bounds): validate() checks the same constants.
INPUT_BOUNDS = {
    "prompt": Bound("text", 1, MAX_PROMPT_CHARS),
    "negative_prompt": Bound("text", 0, MAX_PROMPT_CHARS),
    "duration_sec": Bound("integer", 1, MAX_DURATION_S, DEFAULT_DURATION_S),
    "seed": weights.SEED_BOUND,
    "steps": Bound("integer", 1, MAX_STEPS, DEFAULT_STEPS),
    "guidance": Bound("number", 0, MAX_GUIDANCE, DEFAULT_GUIDANCE),
}
# Share of the progress bar reached once the model is loaded, and once every step is denoised;
# decoding, writing and delivering the WAV take the rest.
LOADED_PERCENT = 10.0
DENOISED_PERCENT = 95.0

# The scheduler keeps per-call state (timesteps, its noise sampler): one generation at a time on
# the cached pipeline, whatever the container's concurrency.
_generate_lock = threading.Lock()


@dataclass(frozen=True)
class Request:
    """A validated payload: everything that shapes the generated audio."""

    prompt: str
    negative_prompt: str | None
    duration_sec: int
    seed: int
    steps: int
    guidance: float


def _text(payload: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > MAX_PROMPT_CHARS:
        raise PermanentGpuError("invalid_input", f"{name} must be a string of at most {MAX_PROMPT_CHARS} characters")
    value = value.strip()
    if required and not value:
        raise PermanentGpuError("invalid_input", f"{name} must not be empty")
    # A blank negative prompt is no negative prompt: encoding "" would steer away from T5's
    # embedding of nothing, which is not what an empty field means.
    return value or None


def _number(payload: Mapping[str, Any], name: str, low: float, high: float, default: float, *, integer: bool) -> Any:
    value = payload.get(name)
    if value is None:
        return default
    allowed = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise PermanentGpuError("invalid_input", f"{name} must be {kind} from {low:g} to {high:g}")
    return value if integer else float(value)


def validate(payload: Mapping[str, Any]) -> Request:
    """The payload's fields, checked; a bad one is `invalid_input` before any weights load."""
    prompt = _text(payload, "prompt", required=True)
    assert prompt is not None
    return Request(
        prompt=prompt,
        negative_prompt=_text(payload, "negative_prompt", required=False),
        duration_sec=_number(payload, "duration_sec", 1, MAX_DURATION_S, DEFAULT_DURATION_S, integer=True),
        seed=weights.seed_of(payload),
        steps=_number(payload, "steps", 1, MAX_STEPS, DEFAULT_STEPS, integer=True),
        guidance=_number(payload, "guidance", 0, MAX_GUIDANCE, DEFAULT_GUIDANCE, integer=False),
    )


@functools.lru_cache(maxsize=1)
def load(path: str) -> Any:
    """The pipeline from `path`, on this process's device; loaded once per process."""
    from diffusers import StableAudioPipeline

    device = weights.device()
    pipe = StableAudioPipeline.from_pretrained(path, dtype=weights.dtype_for(device), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = guarded_scheduler(pipe.scheduler)
    return pipe.to(device)


# Intervals shorter than this are not drawn: torchsde rounds query times to 1e-6 and cannot split them.
MIN_NOISE_INTERVAL = 1e-5


def guarded_scheduler(scheduler: Any) -> Any:
    """The cosine DPM-Solver SDE scheduler with its Brownian noise queried only inside its tree and
    never on an interval torchsde cannot split; any other scheduler as it is."""
    from diffusers import CosineDPMSolverMultistepScheduler

    if not isinstance(scheduler, CosineDPMSolverMultistepScheduler):
        return scheduler
    return _guarded_class().from_config(cast(Any, scheduler).config)


@functools.lru_cache(maxsize=1)
def _guarded_class() -> Any:
    import torch
    from diffusers import CosineDPMSolverMultistepScheduler
    from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler

    stock: Any = CosineDPMSolverMultistepScheduler  # diffusers' classes are untyped

    class InRangeBrownianNoise:
        def __init__(self, like: torch.Tensor, sigma_min: float, sigma_max: float, seed: Any) -> None:
            self.sampler = BrownianTreeNoiseSampler(like, sigma_min=sigma_min, sigma_max=sigma_max, seed=seed)
            self.low, self.high, self.like = float(sigma_min), float(sigma_max), like

        def __call__(self, sigma: Any, sigma_next: Any) -> torch.Tensor:
            a = min(max(float(sigma), self.low), self.high)
            b = min(max(float(sigma_next), self.low), self.high)
            if abs(a - b) < MIN_NOISE_INTERVAL:
                return torch.zeros_like(self.like)
            t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
            return self.sampler.tree(a, b) / (t1 - t0).abs().sqrt()  # diffusers' own scaling

    class GuardedCosineDPMSolverMultistepScheduler(stock):
        noise_sampler: Any
        def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, generator: Any = None,
                 return_dict: bool = True) -> Any:
            if self.noise_sampler is None:  # set_timesteps() resets it: the stock step would build its own
                seed = None
                if generator is not None:
                    seed = ([g.initial_seed() for g in generator] if isinstance(generator, list)
                            else generator.initial_seed())
                self.noise_sampler = InRangeBrownianNoise(model_output, self.config.sigma_min,
                                                          self.config.sigma_max, seed)
            return super().step(model_output, timestep, sample, generator=generator, return_dict=return_dict)

    return GuardedCosineDPMSolverMultistepScheduler


def max_duration_s(pipe: Any) -> int:
    """The longest clip, in whole seconds, that the model's latent window holds."""
    window = pipe.transformer.config.sample_size * pipe.vae.hop_length / pipe.vae.config.sampling_rate
    return min(MAX_DURATION_S, math.floor(window))


def generate(pipe: Any, request: Request, progress: ProgressFn) -> np.ndarray:
    """(channels, duration_sec * sample_rate) float32 samples in [-1, 1]."""
    limit = max_duration_s(pipe)
    if request.duration_sec > limit:
        raise PermanentGpuError("invalid_input", f"duration_sec must be at most {limit} for {MODEL}")

    def on_step(step: int, _timestep: Any, _latents: Any) -> None:
        progress(LOADED_PERCENT + (DENOISED_PERCENT - LOADED_PERCENT) * (step + 1) / request.steps)

    with _generate_lock:
        audios = pipe(
            request.prompt,
            negative_prompt=request.negative_prompt,
            audio_start_in_s=0.0,
            audio_end_in_s=float(request.duration_sec),
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=weights.generator(request.seed, weights.device()),
            callback=on_step,
            callback_steps=1,
            output_type="np",
        ).audios
    # The pipeline cuts the decoded window at int(seconds * rate); cutting again here keeps the
    # length exact even if a future pipeline rounds the other way.
    return audios[0][:, : request.duration_sec * int(pipe.vae.config.sampling_rate)]


def run(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    request = validate(payload)
    path = weights.weights_of(JOB_TYPE)
    pipe = load(str(path))
    ctx.progress(LOADED_PERCENT)
    samples = generate(pipe, request, ctx.progress)
    sample_rate = int(pipe.vae.config.sampling_rate)
    out = ctx.output_path("audio", ".wav")
    encode.write_wav(samples, sample_rate, out)
    ref = ctx.deliver("audio", out, "audio/wav")
    ref["metadata"] = {
        "model": MODEL,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "steps": request.steps,
        "guidance": request.guidance,
        "duration_sec": request.duration_sec,
        "sample_rate": sample_rate,
    }
    ctx.progress(100.0)
    return {
        "outputs": {"audio": ref},
        "duration_ms": round(samples.shape[1] * 1000 / sample_rate),
        "sample_rate": sample_rate,
        "channels": int(samples.shape[0]),
        "model": MODEL,
        "seed": request.seed,
        "steps": request.steps,
        "guidance": request.guidance,
    }
