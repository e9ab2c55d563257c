"""Text-to-image: FLUX.1-schnell (Black Forest Labs) through diffusers' `FluxPipeline`.

The model: a 12B rectified-flow transformer, timestep-distilled to make an image in 1 to 4
steps with no classifier-free guidance, with CLIP ViT-L and T5-XXL text encoders and a 16-channel
VAE. Licence: Apache-2.0 (weights and code), so generated images may be used commercially.

Payload:
- `prompt`: str, 1 to 2000 characters (required). CLIP reads its first 77 tokens, T5 its first
  256 (the longest text schnell was trained on); the rest is cut off.
- `negative_prompt`: str up to 2000 characters, optional. FLUX applies one only through true
  classifier-free guidance, which the distilled schnell was not trained for, so it is recorded
  in the metadata, ignored, and the result's `notes` say so.
- `width`, `height`: multiples of 64 from 256 to 1536 (default 1024 each).
- `num_images`: 1 to 4 (default 1).
- `seed`: int 0..2**31-1, optional (a fresh one is drawn and recorded otherwise).
- `steps`: int 1 to 50 (default 4, what schnell was distilled for).
- `guidance`: float 0 to 20 (default 0). Schnell has no guidance embedding, so any other value is
  ignored with a note and the guidance recorded is the one applied: 0.

Outputs: `image_1` .. `image_<num_images>`, PNG (`image/png`), each with metadata {model, prompt,
negative_prompt, seed, steps, guidance, width, height}. Image i (from 1) uses seed + i - 1 and is
generated on its own, so its recorded seed alone reproduces it.
Result: {"outputs", "width", "height", "num_images", "model", "seed", "steps", "guidance", "notes"}.

GPU memory: the bf16 weights take about 31 GiB (transformer 22.2, T5-XXL 8.8, CLIP and VAE under
0.5), plus a few GiB of activations at 1536x1536. On a GPU with that much free (L40S, A100-80GB,
H100) everything stays on the GPU; with less, components move to the GPU one at a time (model
offload, about 22 GiB peak: not enough for an A10G's 22.5 GiB), and below that layer by layer
(sequential offload: fits anywhere, several times slower). The container needs about 35 GiB of RAM
to load the weights before they move to the GPU.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import encode, weights
from gpu_tasks.engines.weights import Repo
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Bound
from gpu_tasks.types import get_spec

JOB_TYPE = "image-generation"
MODEL = get_spec(JOB_TYPE).model
# Of the repository, what diffusers loads (not its 24 GB of single-file checkpoints).
REPOS = {
    "flux.1-schnell": Repo("black-forest-labs/FLUX.1-schnell", files=(
        "model_index.json", "scheduler/*", "text_encoder/*", "text_encoder_2/*", "tokenizer/*", "tokenizer_2/*",
        "transformer/*", "vae/*",
    )),
}

MAX_PROMPT_CHARS = 2000
SIDE_MULTIPLE = 64
MIN_SIDE, MAX_SIDE, DEFAULT_SIDE = 256, 1536, 1024
MAX_IMAGES = 4
MAX_STEPS, DEFAULT_STEPS = 50, 4
MAX_GUIDANCE, DEFAULT_GUIDANCE = 20, 0.0
# What the API's input reads (gpu_tasks.input_bounds): validate() checks the same constants.
INPUT_BOUNDS = {
    "prompt": Bound("text", 1, MAX_PROMPT_CHARS),
    "negative_prompt": Bound("text", 0, MAX_PROMPT_CHARS),
    "width": Bound("integer", MIN_SIDE, MAX_SIDE, DEFAULT_SIDE, multiple_of=SIDE_MULTIPLE),
    "height": Bound("integer", MIN_SIDE, MAX_SIDE, DEFAULT_SIDE, multiple_of=SIDE_MULTIPLE),
    "num_images": Bound("integer", 1, MAX_IMAGES, 1),
    "seed": weights.SEED_BOUND,
    "steps": Bound("integer", 1, MAX_STEPS, DEFAULT_STEPS),
    "guidance": Bound("number", 0, MAX_GUIDANCE, DEFAULT_GUIDANCE),
}
# The longest T5 prompt schnell was trained on; longer ones degrade images rather than help.
MAX_SEQUENCE_LENGTH = 256
# GPU memory kept free beyond the weights for activations and the VAE decode at the largest size.
ACTIVATION_HEADROOM_BYTES = 8 * 1024**3

Placement = Literal["resident", "model_offload", "sequential_offload"]

# A pipeline's scheduler keeps per-run state (its step index), so two jobs sharing the cached
# pipeline in one container must take turns; the lock also stops two threads loading 31 GiB twice.
_pipeline_lock = threading.Lock()


@dataclass(frozen=True)
class Request:
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    num_images: int
    seed: int
    steps: int
    guidance: float


def _int_in(payload: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PermanentGpuError("invalid_input", f"{name} must be an integer from {low} to {high}")
    return value


def _side(payload: Mapping[str, Any], name: str) -> int:
    value = _int_in(payload, name, MIN_SIDE, MAX_SIDE, DEFAULT_SIDE)
    if value % SIDE_MULTIPLE:
        raise PermanentGpuError("invalid_input", f"{name} must be a multiple of {SIDE_MULTIPLE}")
    return value


def _text(payload: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > MAX_PROMPT_CHARS or (required and not value.strip()):
        raise PermanentGpuError("invalid_input", f"{name} must be text of 1 to {MAX_PROMPT_CHARS} characters")
    return value


def validate(payload: Mapping[str, Any]) -> Request:
    """The request a payload asks for, with defaults filled in; anything else is `invalid_input`."""
    prompt = _text(payload, "prompt", required=True)
    assert prompt is not None  # a required text is never None
    guidance = payload.get("guidance")
    if guidance is None:
        guidance = DEFAULT_GUIDANCE
    if (
        isinstance(guidance, bool)
        or not isinstance(guidance, int | float)
        or not math.isfinite(guidance)
        or not 0.0 <= guidance <= MAX_GUIDANCE
    ):
        raise PermanentGpuError("invalid_input", f"guidance must be a number from 0 to {MAX_GUIDANCE:g}")
    return Request(
        prompt=prompt,
        negative_prompt=_text(payload, "negative_prompt", required=False),
        width=_side(payload, "width"),
        height=_side(payload, "height"),
        num_images=_int_in(payload, "num_images", 1, MAX_IMAGES, 1),
        seed=weights.seed_of(payload),
        steps=_int_in(payload, "steps", 1, MAX_STEPS, DEFAULT_STEPS),
        guidance=float(guidance),
    )


def placement(component_bytes: Mapping[str, int], free_bytes: int) -> Placement:
    """How to fit the pipeline on a GPU with `free_bytes` free, given each component's weight size."""
    if sum(component_bytes.values()) + ACTIVATION_HEADROOM_BYTES <= free_bytes:
        return "resident"
    if max(component_bytes.values(), default=0) + ACTIVATION_HEADROOM_BYTES <= free_bytes:
        return "model_offload"
    return "sequential_offload"


@functools.lru_cache(maxsize=1)
def load(path: str) -> Any:
    """The FluxPipeline from a local folder (never the hub), placed on this machine's device."""
    import torch
    from diffusers import FluxPipeline

    device = weights.device()
    pipe = FluxPipeline.from_pretrained(path, dtype=weights.dtype_for(device), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if device != "cuda":
        return pipe.to(device)
    sizes = {
        name: sum(p.numel() * p.element_size() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
    free_bytes, _total = torch.cuda.mem_get_info()
    where = placement(sizes, free_bytes)
    if where == "resident":
        return pipe.to(device)
    if where == "model_offload":
        pipe.enable_model_cpu_offload()
    else:
        pipe.enable_sequential_cpu_offload()
    return pipe


def _notes(request: Request, guidance_applied: float) -> list[str]:
    notes = []
    if request.negative_prompt:
        notes.append(f"negative_prompt ignored: {MODEL} is distilled without classifier-free guidance")
    if guidance_applied != request.guidance:
        notes.append(f"guidance {request.guidance:g} ignored: {MODEL} has no guidance embedding")
    return notes


def run(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    import numpy as np
    import torch

    request = validate(payload)
    path = weights.weights_of(JOB_TYPE)
    ctx.progress(2.0)
    with _pipeline_lock:
        pipe = load(str(path))
        ctx.progress(15.0)
        device = pipe._execution_device
        guidance = request.guidance if pipe.transformer.config.guidance_embeds else 0.0
        with torch.inference_mode():
            prompt_embeds, pooled_embeds, _text_ids = pipe.encode_prompt(
                prompt=request.prompt, prompt_2=None, device=device, max_sequence_length=MAX_SEQUENCE_LENGTH
            )
        ctx.progress(20.0)
        total_steps = request.num_images * request.steps
        images = []
        for index in range(request.num_images):
            done_before = index * request.steps

            def on_step(
                _pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any], done_before: int = done_before
            ) -> dict[str, Any]:
                ctx.progress(20.0 + 75.0 * (done_before + step + 1) / total_steps)
                return tensors

            out = pipe(
                prompt_embeds=prompt_embeds,
                pooled_prompt_embeds=pooled_embeds,
                width=request.width,
                height=request.height,
                num_inference_steps=request.steps,
                guidance_scale=guidance,
                generator=weights.generator(_image_seed(request.seed, index), device.type),
                max_sequence_length=MAX_SEQUENCE_LENGTH,
                output_type="np",
                callback_on_step_end=on_step,
            )
            images.append(out.images[0])
    outputs: dict[str, Any] = {}
    for index, image in enumerate(images):
        name = f"image_{index + 1}"
        file = ctx.output_path(name, ".png")
        # The same rounding as diffusers' own numpy-to-PIL conversion.
        encode.write_png((np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8), file)
        ref = ctx.deliver(name, file, "image/png")
        ref["metadata"] = {
            "model": MODEL,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": _image_seed(request.seed, index),
            "steps": request.steps,
            "guidance": guidance,
            "width": request.width,
            "height": request.height,
        }
        outputs[name] = ref
    ctx.progress(100.0)
    return {
        "outputs": outputs,
        "width": request.width,
        "height": request.height,
        "num_images": request.num_images,
        "model": MODEL,
        "seed": request.seed,
        "steps": request.steps,
        "guidance": guidance,
        "notes": _notes(request, guidance),
    }


def _image_seed(seed: int, index: int) -> int:
    """Image `index`'s seed: seed + index, wrapped so that every recorded seed is a valid payload seed."""
    return (seed + index) % (weights.MAX_SEED + 1)
