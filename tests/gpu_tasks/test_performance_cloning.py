"""The performance-cloning engine end to end, on tiny random-weight LivePortrait networks.

The test builds every LivePortrait network from the engine's own classes with tiny
hyper-parameters (a few channels, one block per stage, the published 21 keypoints), saves their state dicts
in the published file layout with a `models.json` naming those hyper-parameters, and runs the
real `run()`: reading the image and the video, the Haar face crops, loading by key, motion
transfer, stitching, warping, decoding, pasting back and the H.264 + AAC encode. The faces are
drawn cartoons that OpenCV's frontal-face cascade detects; the animated pixels are noise.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import encode, performance_cloning
from gpu_tasks.engines.liveportrait import CHECKPOINTS, PUBLISHED, RETARGETING_KEYS, crop, loader
from gpu_tasks.errors import PermanentGpuError, classify_exception
from tests.gpu_tasks.helpers import streams


def tiny_config() -> dict[str, Any]:
    """The published hyper-parameters with every width, depth and count shrunk, keeping the 21
    keypoints (gaze redirection moves keypoints by their published index) and the 66 pose bins."""
    config = copy.deepcopy(PUBLISHED)
    config["input_size"] = 64
    config["appearance_feature_extractor"].update(block_expansion=4, max_features=8, reshape_channel=4,
                                                  reshape_depth=2, num_resblocks=1)  # fmt: skip
    config["motion_extractor"].update(depths=[1, 1, 1, 1], dims=[8, 8, 8, 8])
    config["warping_module"].update(block_expansion=2, max_features=8, reshape_channel=4)
    config["warping_module"]["dense_motion_params"].update(block_expansion=4, max_features=8, num_blocks=2,
                                                           reshape_depth=2, compress=1)  # fmt: skip
    config["spade_generator"].update(block_expansion=2, max_features=8, out_channels=4, spade_hidden=4)
    for mlp in config["stitching_retargeting_module"].values():
        mlp["hidden_sizes"] = [8]
    return config


SOURCE_SIZE = (320, 256)  # width, height
FPS, DRIVING_FRAMES = 12, 10
AUDIO_RATE = 16000


def build_tiny_model(root: Path) -> None:
    """Tiny random-weight LivePortrait networks in the published layout under `root`."""
    import torch

    from gpu_tasks.engines.liveportrait import networks

    folder = root / loader.FOLDER
    torch.manual_seed(0)
    modules = networks.build(tiny_config())
    for module in modules.values():
        # Random batch-norm statistics, so the eval-mode networks do not start from identity norms.
        for norm in module.modules():
            if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                assert norm.running_mean is not None and norm.running_var is not None
                norm.running_mean.uniform_(-0.1, 0.1)
                norm.running_var.uniform_(0.5, 1.5)
    networks.save(modules, folder)
    # The published retargeting checkpoint was saved from DistributedDataParallel: keys start "module.".
    retargeting = folder / CHECKPOINTS["stitching_retargeting_module"]
    state = torch.load(retargeting, weights_only=True)
    torch.save({key: {f"module.{k}": v for k, v in part.items()} for key, part in state.items()}, retargeting)
    (folder / loader.CONFIG_FILE).write_text(json.dumps(tiny_config()))


def draw_face(width: int, height: int, *, dx: int = 0, mouth: int = 8) -> np.ndarray:
    """A cartoon face (skin oval, brows, eyes, nose, mouth) that the Haar cascade detects."""
    import cv2

    image = np.full((height, width, 3), 90, np.uint8)
    cx, cy = width // 2 + dx, height // 2
    cv2.ellipse(image, (cx, cy + 10), (70, 92), 0, 0, 360, (200, 170, 150), -1)
    for side in (-30, 30):
        cv2.ellipse(image, (cx + side, cy - 30), (22, 6), 0, 0, 360, (60, 40, 30), -1)
        cv2.ellipse(image, (cx + side, cy - 10), (14, 8), 0, 0, 360, (40, 30, 30), -1)
    cv2.line(image, (cx, cy - 5), (cx, cy + 30), (170, 140, 120), 4)
    cv2.ellipse(image, (cx, cy + 48), (26, mouth), 0, 0, 360, (120, 50, 60), -1)
    blurred: np.ndarray = cv2.GaussianBlur(image, (5, 5), 0)
    return blurred


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root)
    performance_cloning.load.cache_clear()
    yield root
    performance_cloning.load.cache_clear()


@pytest.fixture(autouse=True)
def weights_env(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(models_dir))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A portrait, and a driving clip (with a tone, and without) whose face moves and talks."""
    folder = tmp_path_factory.mktemp("media")
    from PIL import Image

    Image.fromarray(draw_face(*SOURCE_SIZE)).save(folder / "source.png")
    Image.fromarray(np.full((SOURCE_SIZE[1], SOURCE_SIZE[0], 3), 128, np.uint8)).save(folder / "blank.png")
    frames = np.stack([draw_face(256, 256, dx=index % 4, mouth=4 + index) for index in range(DRIVING_FRAMES)])
    seconds = DRIVING_FRAMES / FPS
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE)).astype(np.float32)
    encode.write_mp4(frames, FPS, folder / "driving.mp4", audio=tone, sample_rate=AUDIO_RATE)
    encode.write_mp4(frames, FPS, folder / "silent.mp4")
    return {name: folder / f"{name}.{'png' if name in ('source', 'blank') else 'mp4'}"
            for name in ("source", "blank", "driving", "silent")}  # fmt: skip


def run(tmp_path: Path, source: Path, driving: Path, **fields: Any) -> tuple[dict[str, Any], list[float]]:
    payload: dict[str, Any] = {
        "source_image_media": {"path": str(source)}, "driving_video_media": {"path": str(driving)},
        "output_dir": str(tmp_path / "out"), **fields,
    }  # fmt: skip
    seen: list[float] = []
    ctx = EngineContext(workdir=tmp_path / "work", payload=payload, progress=seen.append)
    return performance_cloning.run(payload, ctx), seen


def error_of(tmp_path: Path, source: Path, driving: Path, **fields: Any) -> PermanentGpuError:
    with pytest.raises(PermanentGpuError) as info:
        run(tmp_path, source, driving, **fields)
    return info.value


def pixels(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_the_faces_drawn_here_are_found_by_the_haar_cascade() -> None:
    face = crop.detect_face(draw_face(*SOURCE_SIZE))
    assert face is not None
    box = crop.crop_box(face, *SOURCE_SIZE)
    assert box.x >= 0 and box.y >= 0
    assert box.x + box.side <= SOURCE_SIZE[0] and box.y + box.side <= SOURCE_SIZE[1]
    assert crop.detect_face(np.full((256, 256, 3), 128, np.uint8)) is None


def test_video_has_a_frame_per_driving_frame_at_its_fps_with_its_audio(media: dict[str, Path], tmp_path: Path) -> None:
    result, progress = run(tmp_path, media["source"], media["driving"])
    video = Path(result["outputs"]["video"]["path"])
    facts = streams(video)
    assert facts["video"]["codec"] == "h264"
    assert (facts["video"]["width"], facts["video"]["height"]) == SOURCE_SIZE
    assert facts["video"]["frames"] == DRIVING_FRAMES
    assert facts["video"]["fps"] == pytest.approx(FPS)
    assert facts["video"]["duration_s"] == pytest.approx(DRIVING_FRAMES / FPS, abs=0.01)
    assert facts["audio"] is not None and facts["audio"]["codec"] == "aac"
    assert facts["audio"]["duration_s"] == pytest.approx(DRIVING_FRAMES / FPS, abs=0.05)
    assert result["duration_ms"] == round(DRIVING_FRAMES / FPS * 1000)
    assert (result["width"], result["height"], result["frames"]) == (*SOURCE_SIZE, DRIVING_FRAMES)
    assert result["fps"] == pytest.approx(FPS)
    assert result["model"] == performance_cloning.MODEL == "LivePortrait"
    assert result["outputs"]["video"]["content_type"] == "video/mp4"
    assert result["outputs"]["video"]["metadata"] == {
        "model": "LivePortrait", "width": SOURCE_SIZE[0], "height": SOURCE_SIZE[1], "fps": result["fps"],
        "frames": DRIVING_FRAMES, "relative": True, "stitching": True, "audio": True,
    }  # fmt: skip
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert len(progress) >= 4  # loaded, each batch of frames, done


def test_same_inputs_give_the_same_video_and_options_change_it(media: dict[str, Path], tmp_path: Path) -> None:
    first, _ = run(tmp_path / "a", media["source"], media["silent"])
    again, _ = run(tmp_path / "b", media["source"], media["silent"])
    absolute, _ = run(tmp_path / "c", media["source"], media["silent"], relative=False, stitching=False)
    frames = pixels(Path(first["outputs"]["video"]["path"]))
    assert np.array_equal(frames, pixels(Path(again["outputs"]["video"]["path"])))
    assert not np.array_equal(frames, pixels(Path(absolute["outputs"]["video"]["path"])))
    assert streams(Path(first["outputs"]["video"]["path"]))["audio"] is None
    assert first["outputs"]["video"]["metadata"]["audio"] is False
    assert absolute["outputs"]["video"]["metadata"]["relative"] is False


def test_pixels_outside_the_face_crop_stay_the_source(media: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    result, _ = run(tmp_path, media["source"], media["silent"])
    source = np.asarray(Image.open(media["source"]).convert("RGB")).astype(int)
    face = crop.detect_face(source.astype(np.uint8))
    assert face is not None
    box = crop.crop_box(face, *SOURCE_SIZE)
    frames = pixels(Path(result["outputs"]["video"]["path"])).astype(int)
    outside = np.ones(source.shape[:2], bool)
    outside[box.y : box.y + box.side, box.x : box.x + box.side] = False
    assert outside.any()
    # H.264 at CRF 18 moves flat pixels by a few levels at most.
    assert np.abs(frames[:, outside] - source[outside]).mean() < 3
    # Inside, the random networks' output replaced the face.
    assert np.abs(frames[:, ~outside] - source[~outside]).mean() > 10


def test_missing_weights_are_model_unavailable(
    media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(tmp_path / "empty"))
    assert error_of(tmp_path, media["source"], media["driving"]).code == "model_unavailable"
    assert not (tmp_path / "out").exists()


def test_incomplete_weights_are_model_unavailable(
    media: dict[str, Path], models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(models_dir, partial)
    (partial / loader.FOLDER / CHECKPOINTS["warping_module"]).unlink()
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(partial))
    performance_cloning.load.cache_clear()
    try:
        assert error_of(tmp_path, media["source"], media["driving"]).code == "model_unavailable"
    finally:
        performance_cloning.load.cache_clear()


def test_retargeting_checkpoint_loads_by_its_published_keys(models_dir: Path) -> None:
    import torch

    state = torch.load(models_dir / loader.FOLDER / CHECKPOINTS["stitching_retargeting_module"], weights_only=True)
    assert set(state) == set(RETARGETING_KEYS.values())
    assert all(key.startswith("module.mlp.") for key in state["retarget_eye"])
    nets = performance_cloning.load(str(models_dir / loader.FOLDER))
    first_layer = nets.eye.mlp[0]
    assert isinstance(first_layer, torch.nn.Linear)
    published = state["retarget_eye"]["module.mlp.0.weight"]  # as loaded: on the engines' device, in their dtype
    assert torch.equal(first_layer.weight, published.to(first_layer.weight.device, first_layer.weight.dtype))


def test_a_portrait_without_a_face_is_refused(media: dict[str, Path], tmp_path: Path) -> None:
    error = error_of(tmp_path, media["blank"], media["driving"])
    assert (error.code, error.message) == ("invalid_input", "no face found in the source image")


def test_unreadable_media_is_invalid_media(media: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    not_image = tmp_path / "not-an-image.png"
    not_image.write_bytes(b"hello")
    assert error_of(tmp_path, media["source"], broken).code == "invalid_media"
    assert error_of(tmp_path, not_image, media["driving"]).code == "invalid_media"
    sound = tmp_path / "tone.wav"
    encode.write_wav(np.zeros(8000, dtype=np.float32), 8000, sound)
    assert error_of(tmp_path, media["source"], sound).code == "invalid_media"  # no video stream


@pytest.mark.parametrize(
    "fields",
    [{"relative": "yes"}, {"stitching": 1}, {"source_image_media": None}, {"driving_video_media": {"path": ""}},
     {"driving_video_media": {"path": "/no/such/file.mp4"}}],
)  # fmt: skip
def test_bad_input_is_invalid_input(media: dict[str, Path], tmp_path: Path, fields: dict[str, Any]) -> None:
    assert error_of(tmp_path, media["source"], media["driving"], **fields).code == "invalid_input"


def test_too_long_driving_video_is_refused(
    media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(performance_cloning, "MAX_FRAMES", DRIVING_FRAMES - 1)
    assert error_of(tmp_path, media["source"], media["driving"]).code == "invalid_input"


def check_render_out_of_memory_is_gpu_oom(
    monkeypatch: pytest.MonkeyPatch, call: Callable[[], object], out: Path
) -> None:
    """A CUDA OOM inside the networks ends as `gpu_oom` and leaves no output behind."""
    import torch

    from gpu_tasks.engines.liveportrait.networks import Networks

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Networks, "render", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        call()
    assert classify_exception(info.value).code == "gpu_oom"
    assert not out.exists()


def test_cuda_out_of_memory_ends_as_gpu_oom(
    media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_render_out_of_memory_is_gpu_oom(
        monkeypatch, lambda: run(tmp_path, media["source"], media["driving"]), tmp_path / "out"
    )
