"""Questions about a video: Qwen2.5-VL-7B-Instruct (Alibaba's Qwen team, Apache-2.0) through transformers.

Qwen2.5-VL is a vision-language model: a ViT over 14-pixel patches (each 2x2 group of patches
merged into one token) feeding a Qwen2.5 decoder that places every visual token at a 3D
(time, row, column) rotary position. The engine samples up to MAX_FRAMES frames evenly over the
video (or over `[start_ms, end_ms)`), downscales each to at most MAX_SIDE pixels on its long
side, and asks the question about them, with the media's transcript in the prompt when the
payload carries one. Decoding is greedy unless a seed is given, so the same input gives the same
answer; with a seed it samples (Qwen's recommended temperature and nucleus settings), and the
same seed gives the same answer.

Frames go to the model as images, each labelled with its time, rather than as one video input:
transformers' video processor for Qwen2-VL needs torchvision, which the GPU image does not carry.
The labels give the model the times explicitly; the cost is about twice the visual tokens (an
image repeats each frame over the two-frame temporal patch that a video shares between frames).

Payload: `{"video_media": input_ref, "question": str (1-1000 chars), "start_ms"?: int >= 0 (0),
"end_ms"?: int > start_ms (the end of the video; clamped to it), "transcript"?: str (the first
MAX_TRANSCRIPT_CHARS are used), "seed"?: int 0..2**31-1 (none: greedy), "max_new_tokens"?: int
1..512 (256)}`.
Result: `{"outputs": {}, "answer": str, "timestamps_ms": [int, rising, inside the range],
"frames": int, "range_ms": [start, end], "transcript_truncated": bool, "model": MODEL,
"seed"?: int (only when sampled)}`. No media output.

GPU memory: the 7B model in bf16 takes about 16.6 GB; 16 frames at 448 px on the long side
(about 144 tokens each at 16:9) plus a capped transcript keep the prompt near 5k tokens, which fits
an A10G (24 GB) with room for the KV cache.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_tasks.contract import EngineContext, input_limit_s
from gpu_tasks.engines import weights
from gpu_tasks.engines.media import open_input, probe
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Bound
from gpu_tasks.types import get_spec

JOB_TYPE = "video-query"
MODEL = get_spec(JOB_TYPE).model
REPOS = {"qwen2.5-vl-7b-instruct": "Qwen/Qwen2.5-VL-7B-Instruct"}

MAX_FRAMES = 16
MAX_SIDE = 448  # frame long side in pixels: enough to read a scene, cheap in visual tokens
MAX_QUESTION_CHARS = 1000
MAX_TRANSCRIPT_CHARS = 8000  # about 2k tokens: keeps the prompt inside an A10G's memory
MAX_NEW_TOKENS, DEFAULT_NEW_TOKENS = 512, 256
# What the API's input reads (gpu_tasks.input_bounds): validate() checks the same constants.
INPUT_BOUNDS = {
    "question": Bound("text", 1, MAX_QUESTION_CHARS),
    "start_ms": Bound("integer", 0, None),
    "end_ms": Bound("integer", 1, None),
}
# Qwen's recommended sampling settings for its instruction-tuned models.
SAMPLING = {"temperature": 0.7, "top_p": 0.8, "top_k": 20}
# Decoding forward is cheaper than a seek (which restarts at the previous keyframe) when the
# next wanted frame is this close ahead of the last decoded one.
SEEK_GAP_S = 3.0
SYSTEM_PROMPT = "You are a helpful assistant."
PROGRESS_FRAMES, PROGRESS_LOADED, PROGRESS_ENCODED = 30.0, 40.0, 50.0


@dataclass(frozen=True)
class Query:
    question: str
    start_ms: int
    end_ms: int | None
    transcript: str
    transcript_truncated: bool
    max_new_tokens: int
    seed: int | None  # None: greedy decoding


@dataclass(frozen=True)
class Frames:
    images: list[Any]  # PIL RGB images
    times_ms: list[int]
    range_ms: tuple[int, int]


@dataclass(frozen=True)
class Loaded:
    model: Any
    tokenizer: Any
    image_processor: Any
    device: str


def _optional_int(payload: Mapping[str, Any], name: str, low: int, high: int | None) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise PermanentGpuError("invalid_input", f"{name} must be an integer {bound}")
    return value


def validate(payload: Mapping[str, Any]) -> Query:
    question = payload.get("question")
    if not isinstance(question, str) or not question.strip():
        raise PermanentGpuError("invalid_input", "question is required")
    if len(question) > MAX_QUESTION_CHARS:
        raise PermanentGpuError("invalid_input", f"question longer than {MAX_QUESTION_CHARS} characters")
    start_ms = _optional_int(payload, "start_ms", 0, None) or 0
    end_ms = _optional_int(payload, "end_ms", 1, None)
    if end_ms is not None and end_ms <= start_ms:
        raise PermanentGpuError("invalid_input", "end_ms must be greater than start_ms")
    transcript = payload.get("transcript")
    if transcript is not None and not isinstance(transcript, str):
        raise PermanentGpuError("invalid_input", "transcript must be text")
    transcript = " ".join((transcript or "").split())
    max_new_tokens = _optional_int(payload, "max_new_tokens", 1, MAX_NEW_TOKENS) or DEFAULT_NEW_TOKENS
    seed = weights.seed_of(payload) if payload.get("seed") is not None else None
    return Query(
        question=question.strip(),
        start_ms=start_ms,
        end_ms=end_ms,
        transcript=transcript[:MAX_TRANSCRIPT_CHARS],
        transcript_truncated=len(transcript) > MAX_TRANSCRIPT_CHARS,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )


def _timed(frames: Iterator[Any], origin_s: float) -> Iterator[tuple[float, Any]]:
    for frame in frames:
        if frame.time is not None:
            yield float(frame.time) - origin_s, frame


def _downscaled(frame: Any, max_side: int) -> Any:
    scale = min(1.0, max_side / max(frame.width, frame.height))
    return frame.to_image(width=max(2, round(frame.width * scale)), height=max(2, round(frame.height * scale)))


def _pick_frames(container: Any, targets: Sequence[float], low_s: float, high_s: float) -> list[tuple[float, Any]]:
    """For each target time, the frame on screen then (or the first one after it when that one lies
    before `low_s`), as (seconds from the stream's start, downscaled image); never a frame twice."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    time_base = stream.time_base
    origin_s = float(stream.start_time * time_base) if stream.start_time is not None and time_base else 0.0
    picked: list[tuple[float, Any]] = []
    decoded: Iterator[tuple[float, Any]] | None = None
    shown: tuple[float, Any] | None = None  # the last decoded frame at or before the target
    ahead: tuple[float, Any] | None = None  # the first decoded frame after it
    for target in targets:
        last = ahead or shown
        far = last is not None and target - last[0] > SEEK_GAP_S
        if decoded is None or (far and time_base):
            if time_base:  # a stream without a time base can only be decoded from its start
                container.seek(int((origin_s + target) / time_base), stream=stream)
            decoded, shown, ahead = _timed(container.decode(stream), origin_s), None, None
        if ahead is not None and ahead[0] <= target:
            shown, ahead = ahead, None
        while ahead is None:
            following = next(decoded, None)
            if following is None:
                break
            if following[0] <= target:
                shown = following
            else:
                ahead = following
        choice = shown if shown is not None and shown[0] >= low_s else ahead
        if choice is not None and low_s <= choice[0] < high_s and (not picked or choice[0] > picked[-1][0]):
            picked.append((choice[0], _downscaled(choice[1], MAX_SIDE)))
    return picked


def sample_frames(
    path: Path, *, start_ms: int, end_ms: int | None, max_frames: int = MAX_FRAMES, max_s: float | None = None
) -> Frames:
    """Up to `max_frames` frames spread evenly over `[start_ms, end_ms)` (the whole video, or its
    first `max_s` seconds, by default): one at the middle of each of `max_frames` equal slices,
    fewer when the range holds fewer frames."""
    import av

    info = probe(path)
    if not info.has_video:
        raise PermanentGpuError("invalid_media", "the media has no video stream")
    duration_ms = int(min(info.duration_s, max_s if max_s is not None else info.duration_s) * 1000)
    if duration_ms <= 0:
        raise PermanentGpuError("invalid_media", "the video's duration is unknown")
    end_ms = duration_ms if end_ms is None else min(end_ms, duration_ms)
    if start_ms >= end_ms:
        raise PermanentGpuError("invalid_input", f"start_ms lies at or past the end of the video ({duration_ms} ms)")
    count = max_frames
    if info.fps:
        count = max(1, min(max_frames, int((end_ms - start_ms) / 1000 * info.fps)))
    step_ms = (end_ms - start_ms) / count
    targets = [(start_ms + (index + 0.5) * step_ms) / 1000 for index in range(count)]
    try:
        with open_input(path) as container:
            picked = _pick_frames(container, targets, start_ms / 1000, end_ms / 1000)
    except av.FFmpegError as exc:
        raise PermanentGpuError("invalid_media", f"cannot decode video: {type(exc).__name__}") from exc
    if not picked:
        raise PermanentGpuError("invalid_media", "no frame could be decoded in the requested range")
    return Frames(
        images=[image for _, image in picked],
        times_ms=[round(seconds * 1000) for seconds, _ in picked],
        range_ms=(start_ms, end_ms),
    )


@functools.lru_cache(maxsize=1)
def load(path: str) -> Loaded:
    """The model, tokenizer and image processor from `path`, once per process (the hub stays off)."""
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    device = weights.device()
    model: Any = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        path, dtype=weights.dtype_for(device), local_files_only=True
    )
    model = model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    # The PIL image processor reads the same preprocessor_config.json as the torchvision one.
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, local_files_only=True)
    return Loaded(model=model, tokenizer=tokenizer, image_processor=image_processor, device=device)


def prompt_text(query: Query, frames: Frames, vision: Sequence[str]) -> str:
    """The chat prompt in Qwen's ChatML format: each frame's vision tokens after its time label,
    then the transcript (when given) and the question."""
    start_s, end_s = (ms / 1000 for ms in frames.range_ms)
    lines = [f"These are {len(vision)} frames from a video between {start_s:.1f} s and {end_s:.1f} s."]
    lines += [f"Frame at {ms / 1000:.1f} s: {tokens}" for ms, tokens in zip(frames.times_ms, vision, strict=True)]
    if query.transcript:
        lines.append(f"Transcript of the video's audio: {query.transcript}")
    lines.append(f"Question: {query.question}")
    user = "\n".join(lines)
    return f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def encode_inputs(loaded: Loaded, query: Query, frames: Frames) -> dict[str, Any]:
    """Token ids with each frame's placeholder tokens expanded to its number of visual tokens, the
    frames' pixel patches, and the token types the model's 3D positions are computed from."""
    config = loaded.model.config
    tokenizer = loaded.tokenizer
    vision = loaded.image_processor(images=frames.images, return_tensors="pt")
    merged = loaded.image_processor.merge_size**2
    start, pad, end = tokenizer.convert_ids_to_tokens(
        [config.vision_start_token_id, config.image_token_id, config.vision_end_token_id]
    )
    placeholders = [start + pad * (int(grid.prod()) // merged) + end for grid in vision["image_grid_thw"]]
    inputs = dict(tokenizer(prompt_text(query, frames, placeholders), return_tensors="pt"))
    # Token type 1 marks image tokens; without it the model falls back to plain 1D positions.
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == config.image_token_id).int()
    inputs["pixel_values"] = vision["pixel_values"].to(dtype=loaded.model.dtype)
    inputs["image_grid_thw"] = vision["image_grid_thw"]
    return {name: tensor.to(loaded.device) for name, tensor in inputs.items()}


def answer(loaded: Loaded, inputs: Mapping[str, Any], query: Query) -> str:
    import torch

    options: dict[str, Any] = {"do_sample": False}
    if query.seed is not None:
        torch.manual_seed(query.seed)  # generate() samples from the global generators
        options = {"do_sample": True, **SAMPLING}
    with torch.inference_mode():
        output = loaded.model.generate(**inputs, max_new_tokens=query.max_new_tokens, **options)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return str(loaded.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)[0]).strip()


def run(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    query = validate(payload)
    path = weights.weights_of(JOB_TYPE)
    video = ctx.input_path(payload.get("video_media"), "video")
    frames = sample_frames(
        video, start_ms=query.start_ms, end_ms=query.end_ms, max_s=input_limit_s(payload.get("video_media"))
    )
    ctx.progress(PROGRESS_FRAMES)
    loaded = load(str(path))
    ctx.progress(PROGRESS_LOADED)
    inputs = encode_inputs(loaded, query, frames)
    ctx.progress(PROGRESS_ENCODED)
    text = answer(loaded, inputs, query)
    ctx.progress(100.0)
    result: dict[str, Any] = {
        "outputs": {},
        "answer": text,
        "timestamps_ms": frames.times_ms,
        "frames": len(frames.times_ms),
        "range_ms": list(frames.range_ms),
        "transcript_truncated": query.transcript_truncated,
        "model": MODEL,
    }
    if query.seed is not None:
        result["seed"] = query.seed
    return result
