"""The video-query engine end to end on a tiny random-weight Qwen2.5-VL built here.

The model has the production architecture (ViT with window attention and patch merging, a
Qwen2.5 decoder with 3D rotary positions) at toy sizes; the tokenizer is a word-level one built
from a small vocabulary plus the special tokens the prompt uses; the image processor is Qwen2-VL's
with its real patch settings, saved with the class name the published checkpoint records. The
answers are random words: these tests check the path (frames, prompt, generation, result), not
the answer's sense.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import encode, video_query
from gpu_tasks.errors import PermanentGpuError, classify_exception
from tests.gpu_tasks.helpers import declared_folder, ffmpeg

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
]  # fmt: skip
WORDS = "you are a helpful assistant system user these frames from video between and frame at s transcript of the audio"
VIDEO_FPS, VIDEO_FRAMES = 8, 16  # 2 s


def build_tiny_model(root: Path) -> None:
    """A random-weight Qwen2.5-VL of tiny size with its tokenizer and image processor, saved where
    the engine looks under `root`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    folder = root / declared_folder("video-query")
    vocab = {word: index for index, word in enumerate(["<unk>", *WORDS.split(), *map(str, range(10)), ":", "."])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>", eos_token="<|im_end|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )  # fmt: skip
    tokenizer.add_special_tokens({"pad_token": "<|endoftext|>"})
    token_ids = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)
    assert isinstance(token_ids, list)  # a list of tokens gives a list of ids
    ids = dict(zip(SPECIAL_TOKENS, token_ids, strict=True))
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 1024,
            # mrope_section splits each head's 8 rotary frequencies over time, rows and columns.
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2).save_pretrained(folder)
    # The published checkpoint names the torchvision class; the engine must load it all the same.
    settings_path = folder / "preprocessor_config.json"
    settings = json.loads(settings_path.read_text())
    settings["image_processor_type"] = "Qwen2VLImageProcessor"
    settings_path.write_text(json.dumps(settings))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root)
    return root


@pytest.fixture(autouse=True)
def weights_env(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="module")
def fresh_load_cache() -> Iterator[None]:
    """The tiny model is loaded once for the module, and never leaks into other test modules."""
    video_query.load.cache_clear()
    yield
    video_query.load.cache_clear()


@pytest.fixture(scope="module")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 8 fps, 64x48, each frame a different colour."""
    frames = np.zeros((VIDEO_FRAMES, 48, 64, 3), dtype=np.uint8)
    for index in range(VIDEO_FRAMES):
        frames[index, :, :, 0] = index * 15
        frames[index, :, :, 1] = 255 - index * 15
        frames[index, : 8 + index * 2, :, 2] = 200
    path = tmp_path_factory.mktemp("video") / "small.mp4"
    encode.write_mp4(frames, VIDEO_FPS, path)
    return path


def run(video: Path, tmp_path: Path, **fields: Any) -> tuple[dict[str, Any], list[float]]:
    payload: dict[str, Any] = {"video_media": {"path": str(video)}, "question": "what is in the video", **fields}
    seen: list[float] = []
    ctx = EngineContext(workdir=tmp_path / "work", payload=payload, progress=seen.append)
    return video_query.run(payload, ctx), seen


def error_of(video: Path, tmp_path: Path, **fields: Any) -> str:
    with pytest.raises(PermanentGpuError) as info:
        run(video, tmp_path, **fields)
    return info.value.code


def test_whole_video_is_sampled_and_answered_the_same_way_twice(small_video: Path, tmp_path: Path) -> None:
    first, progress = run(small_video, tmp_path, transcript="the audio says hello", max_new_tokens=6)
    second, _ = run(small_video, tmp_path, transcript="the audio says hello", max_new_tokens=6)
    assert isinstance(first["answer"], str)
    assert first["answer"] == second["answer"]
    assert first["timestamps_ms"] == [round(index * 1000 / VIDEO_FPS) for index in range(VIDEO_FRAMES)]
    assert first["frames"] == VIDEO_FRAMES
    assert first["range_ms"] == [0, 2000]
    assert first["model"] == video_query.MODEL
    assert first["outputs"] == {}
    assert "seed" not in first  # greedy decoding: nothing random to record
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert progress[0] == video_query.PROGRESS_FRAMES


def test_time_range_limits_the_frames_to_it(small_video: Path, tmp_path: Path) -> None:
    result, _ = run(small_video, tmp_path, start_ms=500, end_ms=1500, max_new_tokens=3)
    times = result["timestamps_ms"]
    assert times == sorted(set(times))
    assert all(500 <= t < 1500 for t in times)
    assert result["frames"] == len(times) == 8  # every frame of the second in the range
    assert result["range_ms"] == [500, 1500]


def test_range_past_the_end_is_clamped_or_refused(small_video: Path, tmp_path: Path) -> None:
    result, _ = run(small_video, tmp_path, start_ms=1700, end_ms=60_000, max_new_tokens=2)
    assert result["range_ms"] == [1700, 2000]
    assert result["timestamps_ms"] and all(1700 <= t < 2000 for t in result["timestamps_ms"])
    assert error_of(small_video, tmp_path, start_ms=2000) == "invalid_input"


def test_frames_are_downscaled_and_picked_in_order(small_video: Path) -> None:
    frames = video_query.sample_frames(small_video, start_ms=0, end_ms=None, max_frames=4)
    assert frames.times_ms == [250, 750, 1250, 1750]  # the frame on screen mid-way through each slice
    assert all(image.size == (64, 48) for image in frames.images)  # already under MAX_SIDE


def test_seeking_picks_the_same_frames_as_decoding_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = tmp_path / "keyframes.mp4"  # 8 s of 640x360 at 8 fps, a keyframe every 4 frames
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=640x360:rate=8:duration=8", "-g", "4", "-c:v", "libx264",
        "-pix_fmt", "yuv420p", str(video),
    )  # fmt: skip
    through = video_query.sample_frames(video, start_ms=0, end_ms=None, max_frames=4)
    monkeypatch.setattr(video_query, "SEEK_GAP_S", 0.0)  # seek before every frame
    seeking = video_query.sample_frames(video, start_ms=0, end_ms=None, max_frames=4)
    assert through.times_ms == seeking.times_ms == [1000, 3000, 5000, 7000]
    for a, b in zip(through.images, seeking.images, strict=True):
        assert a.size == (448, 252)  # downscaled to MAX_SIDE on the long side
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_each_frame_gets_one_placeholder_per_visual_token(small_video: Path, models_dir: Path) -> None:
    loaded = video_query.load(str(models_dir / declared_folder("video-query")))
    query = video_query.validate({"question": "what is in the video"})
    frames = video_query.sample_frames(small_video, start_ms=0, end_ms=None, max_frames=3)
    inputs = video_query.encode_inputs(loaded, query, frames)
    grids = inputs["image_grid_thw"]
    assert grids.shape[0] == 3
    # The 2x2 patch merge turns each frame's patches into a quarter as many tokens.
    assert int(inputs["mm_token_type_ids"].sum()) == int(grids.prod(dim=-1).sum()) // 4
    assert inputs["pixel_values"].shape[0] == int(grids.prod(dim=-1).sum())


def test_a_seed_samples_reproducibly(small_video: Path, tmp_path: Path) -> None:
    answers = [run(small_video, tmp_path, seed=seed, max_new_tokens=8)[0] for seed in (7, 7, 8)]
    assert answers[0]["answer"] == answers[1]["answer"] != answers[2]["answer"]
    assert answers[0]["seed"] == 7


def test_long_transcript_is_capped(small_video: Path, tmp_path: Path) -> None:
    query = video_query.validate({"question": "q", "transcript": "word " * 5000})
    assert len(query.transcript) == video_query.MAX_TRANSCRIPT_CHARS and query.transcript_truncated
    result, _ = run(small_video, tmp_path, transcript="hello there", max_new_tokens=1)
    assert result["transcript_truncated"] is False


@pytest.mark.parametrize(
    "fields",
    [
        {"question": ""},
        {"question": "   "},
        {"question": "x" * 1001},
        {"question": 5},
        {"start_ms": -1},
        {"start_ms": 1000, "end_ms": 1000},
        {"end_ms": True},
        {"transcript": ["not", "text"]},
        {"max_new_tokens": 0},
        {"max_new_tokens": 513},
        {"seed": -3},
        {"video_media": None},
    ],
)
def test_bad_input_is_refused(small_video: Path, tmp_path: Path, fields: dict[str, Any]) -> None:
    assert error_of(small_video, tmp_path, **fields) == "invalid_input"


def test_undecodable_video_is_invalid_media(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    assert error_of(broken, tmp_path) == "invalid_media"


def test_audio_only_media_is_invalid_media(tmp_path: Path) -> None:
    sound = tmp_path / "tone.wav"
    encode.write_wav(np.zeros(8000, dtype=np.float32), 8000, sound)
    assert error_of(sound, tmp_path) == "invalid_media"


def test_missing_weights_are_model_unavailable(
    small_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(tmp_path / "empty"))
    assert error_of(small_video, tmp_path) == "model_unavailable"


def test_cuda_out_of_memory_ends_as_gpu_oom(
    small_video: Path, tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    loaded = video_query.load(str(models_dir / declared_folder("video-query")))
    monkeypatch.setattr(loaded.model, "generate", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        run(small_video, tmp_path)
    assert classify_exception(info.value).code == "gpu_oom"
