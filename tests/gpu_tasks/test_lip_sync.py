"""The lip-sync engine end to end on a tiny random-weight MuseTalk built here.

The three networks have the production classes at toy sizes and are saved in the published
layouts: MuseTalk's UNet as `musetalkV15/musetalk.json` plus a bare `unet.pth` state dict, the VAE
as a diffusers `AutoencoderKL` folder, Whisper as a transformers `WhisperForConditionalGeneration`
folder with its feature extractor. The face video is drawn here: a cartoon face (skin oval, dark
brows and eyes, nose, mouth) that OpenCV's Haar cascade does find, in some frames, and a plain
background in others. The generated mouths are noise: these tests check the path (detection,
features, generation, pasting, muxing), not the lips.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import encode, lip_sync, weights
from gpu_tasks.errors import PermanentGpuError, classify_exception
from tests.gpu_tasks.helpers import streams

FPS, WIDTH, HEIGHT = 10, 320, 240
FACELESS = 3  # the first frames show no face; the rest of the VIDEO_FRAMES do
VIDEO_FRAMES = 10
WHISPER_WIDTH = 32  # the UNet's cross-attention width follows the Whisper encoder's (384 in production)


def build_tiny_model(root: Path) -> None:
    """Random-weight MuseTalk parts of tiny size, saved in the published layouts under `root`."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(0)
    unet: Any = UNet2DConditionModel(
        sample_size=32, in_channels=8, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=WHISPER_WIDTH, attention_head_dim=4, norm_num_groups=8,
    )  # fmt: skip
    unet_dir = root / lip_sync.UNET_FOLDER
    (unet_dir / lip_sync.UNET_CONFIG).parent.mkdir(parents=True)
    (unet_dir / lip_sync.UNET_CONFIG).write_text(unet.to_json_string())
    torch.save(unet.state_dict(), unet_dir / lip_sync.UNET_WEIGHTS)
    vae: Any = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=4, sample_size=lip_sync.FACE_SIZE,
    )  # fmt: skip
    vae.save_pretrained(root / lip_sync.VAE_FOLDER)
    whisper = WhisperForConditionalGeneration(
        WhisperConfig(
            vocab_size=64, num_mel_bins=80, d_model=WHISPER_WIDTH, encoder_layers=1, encoder_attention_heads=2,
            decoder_layers=1, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
            max_source_positions=1500, max_target_positions=16, decoder_start_token_id=1, pad_token_id=0,
            bos_token_id=1, eos_token_id=2,
        )
    )  # fmt: skip
    whisper.save_pretrained(root / lip_sync.WHISPER_FOLDER)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(root / lip_sync.WHISPER_FOLDER)


def draw_face(frame: np.ndarray, cx: int, cy: int, size: int) -> None:
    """A frontal cartoon face on an RGB frame, drawn in place."""
    import cv2

    cv2.ellipse(frame, (cx, cy), (size, int(size * 1.3)), 0, 0, 360, (220, 180, 150), -1)
    for side in (-1, 1):
        eye_x = cx + side * int(size * 0.4)
        cv2.ellipse(
            frame, (eye_x, cy - int(size * 0.45)), (int(size * 0.25), int(size * 0.08)), 0, 0, 360, (40, 40, 40), -1
        )
        cv2.ellipse(
            frame, (eye_x, cy - int(size * 0.25)), (int(size * 0.18), int(size * 0.1)), 0, 0, 360, (30, 30, 30), -1
        )
    cv2.line(frame, (cx, cy - int(size * 0.2)), (cx, cy + int(size * 0.3)), (170, 130, 110), max(2, size // 10))
    cv2.ellipse(frame, (cx, cy + int(size * 0.6)), (int(size * 0.35), int(size * 0.1)), 0, 0, 360, (140, 60, 60), -1)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny model, built once; the engine's load cache is emptied around the module so that
    this model never serves another test module."""
    lip_sync.load.cache_clear()
    build_tiny_model(root := tmp_path_factory.mktemp("models"))
    yield root
    lip_sync.load.cache_clear()


@pytest.fixture(autouse=True)
def weights_env(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(models_dir))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1 s face video (no face in its first FACELESS frames) and speech-like audio of 0.8 s and 1.5 s."""
    folder = tmp_path_factory.mktemp("media")
    frames = np.zeros((VIDEO_FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames[:] = (90, 120, 160)
    for index in range(FACELESS, VIDEO_FRAMES):
        draw_face(frames[index], WIDTH // 2 + index, HEIGHT // 2, 60)
    encode.write_mp4(frames, FPS, folder / "face.mp4")
    for name, seconds in (("short", 0.8), ("long", 1.5)):
        t = np.arange(int(seconds * 16000)) / 16000
        tone = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        encode.write_wav(tone.astype(np.float32), 16000, folder / f"{name}.wav")
    return {"video": folder / "face.mp4", "short": folder / "short.wav", "long": folder / "long.wav"}


def run(video: Path, audio: Path, tmp_path: Path, **fields: Any) -> tuple[dict[str, Any], list[float]]:
    payload: dict[str, Any] = {
        "video_media": {"path": str(video)}, "audio_media": {"path": str(audio)}, "output_dir": str(tmp_path / "out"),
        **fields,
    }  # fmt: skip
    seen: list[float] = []
    ctx = EngineContext(workdir=tmp_path / "work", payload=payload, progress=seen.append)
    return lip_sync.run(payload, ctx), seen


def error_of(video: Path, audio: Path, tmp_path: Path, **fields: Any) -> str:
    with pytest.raises(PermanentGpuError) as info:
        run(video, audio, tmp_path, **fields)
    return info.value.code


def _capture_written(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    seen: list[np.ndarray] = []
    original = encode.write_mp4

    def capture(frames: np.ndarray, fps: float, path: Path, **kwargs: Any) -> None:
        seen.append(frames.copy())
        original(frames, fps, path, **kwargs)

    monkeypatch.setattr(lip_sync.encode, "write_mp4", capture)
    return seen


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The frames each run hands to the MP4 writer (compared before lossy encoding)."""
    return _capture_written(monkeypatch)


@pytest.fixture(scope="module")
def short_run(
    models_dir: Path, media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], list[float], np.ndarray]:
    """One run on the 1 s video and the 0.8 s audio: its result, its progress and the frames it
    handed to the MP4 writer. The tests that only read such a run share it (each run is seconds
    of CPU); the determinism test runs the same inputs again and compares with these frames."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("AUTEUR_MODELS_DIR", str(models_dir))
        seen = _capture_written(patch)
        result, progress = run(media["video"], media["short"], tmp_path_factory.mktemp("short-run"))
    (frames,) = seen
    return result, progress, frames


def test_the_video_is_cut_to_the_audio_and_carries_it(
    short_run: tuple[dict[str, Any], list[float], np.ndarray],
) -> None:
    result, progress, _ = short_run
    assert (result["frames"], result["fps"], result["width"], result["height"]) == (8, FPS, WIDTH, HEIGHT)
    assert result["duration_ms"] == 800
    assert result["faces_found"] == 8 - FACELESS
    assert result["model"] == lip_sync.MODEL == "MuseTalk 1.5"
    assert "seed" not in result  # nothing random to record
    ref = result["outputs"]["video"]
    assert ref["content_type"] == "video/mp4"
    assert ref["metadata"]["faces_found"] == 8 - FACELESS and ref["metadata"]["model"] == lip_sync.MODEL
    facts = streams(Path(ref["path"]))
    assert facts["video"]["codec"] == "h264" and facts["video"]["frames"] == 8
    assert (facts["video"]["width"], facts["video"]["height"], facts["video"]["fps"]) == (WIDTH, HEIGHT, FPS)
    assert facts["audio"]["codec"] == "aac" and abs(facts["audio"]["duration_s"] - 0.8) < 0.05
    assert progress == sorted(progress) and progress[-1] == 100.0


def test_only_the_lower_face_of_frames_with_a_face_changes(
    media: dict[str, Path], short_run: tuple[dict[str, Any], list[float], np.ndarray]
) -> None:
    output = short_run[2]
    source = lip_sync.read_frames(media["video"], VIDEO_FRAMES)
    faces, _detector = lip_sync.find_faces(source)  # the boxes the engine blends in: smoothed over time
    for index in range(8):
        if index < FACELESS:
            assert lip_sync.detect_face(source[index]) is None and faces[index] is None
            assert np.array_equal(output[index], source[index])
            continue
        found = faces[index]
        assert found is not None  # the drawn face is found, around where it was drawn
        box = found.box
        assert box.x1 < WIDTH // 2 + index < box.x2 and box.y1 < HEIGHT // 2 < box.y2
        changed = np.any(output[index] != source[index], axis=-1)
        rows, cols = np.nonzero(changed)
        assert len(rows) > 0
        mouth_top = box.y1 + round((box.y2 - box.y1) * lip_sync.MOUTH_FROM)
        assert rows.min() >= mouth_top and rows.max() < box.y2
        assert cols.min() >= box.x1 and cols.max() < box.x2


def test_longer_audio_holds_the_last_frame_and_keeps_it_talking(
    media: dict[str, Path], tmp_path: Path, written: list[np.ndarray]
) -> None:
    result, _ = run(media["video"], media["long"], tmp_path)
    assert result["frames"] == 15 and result["duration_ms"] == 1500
    assert result["faces_found"] == 15 - FACELESS
    frames = written[0]
    last = lip_sync.read_frames(media["video"], VIDEO_FRAMES)[-1]
    held = frames[VIDEO_FRAMES:]
    assert all(np.any(frame != last) for frame in held)  # each held frame gets its own mouth
    facts = streams(Path(result["outputs"]["video"]["path"]))
    assert facts["video"]["frames"] == 15 and abs(facts["audio"]["duration_s"] - 1.5) < 0.05


def test_the_same_inputs_give_the_same_frames(
    media: dict[str, Path], tmp_path: Path, written: list[np.ndarray],
    short_run: tuple[dict[str, Any], list[float], np.ndarray],
) -> None:
    run(media["video"], media["short"], tmp_path)  # again, in the same process, after other runs of the module
    assert np.array_equal(written[0], short_run[2])


def test_the_published_unet_layout_loads_every_weight(models_dir: Path) -> None:
    loaded = lip_sync.load(*(str(models_dir / folder) for folder, _ in lip_sync.COMPONENTS))
    tensors = [*loaded.unet.parameters(), *loaded.unet.buffers()]
    # On the engines' device (cuda wherever torch sees a GPU), none left on "meta".
    assert tensors and all(tensor.device.type == weights.device() for tensor in tensors)
    saved = json.loads((models_dir / lip_sync.UNET_FOLDER / lip_sync.UNET_CONFIG).read_text())
    assert saved["_class_name"] == "UNet2DConditionModel" and loaded.unet.config.in_channels == 8


def test_audio_windows_give_each_frame_its_tokens(models_dir: Path) -> None:
    loaded = lip_sync.load(*(str(models_dir / folder) for folder, _ in lip_sync.COMPONENTS))
    tokens = lip_sync.audio_windows(loaded, np.zeros(16000, dtype=np.float32), 25.0, 25)
    layers = 2  # the embeddings' output and the one encoder layer's
    assert tuple(tokens.shape) == (25, lip_sync.WINDOW * layers, WHISPER_WIDTH)


@pytest.mark.parametrize(("fps", "before"), [(25, 4), (24, 6), (24000 / 1001, 6), (30, 4), (30000 / 1001, 4),
                                            (50, 2), (60, 2), (25.0000001, 4)])
def test_a_frames_window_starts_two_frames_of_positions_before_it(fps: float, before: int) -> None:
    assert lip_sync.window_before(fps) == before


def test_each_frames_window_is_sliced_where_musetalk_puts_it() -> None:
    import torch

    stacked = torch.arange(1, 201, dtype=torch.float32)[:, None, None]  # position p holds p + 1; padding 0
    at_24 = lip_sync.slice_windows(stacked, 24.0, 11)[..., 0, 0]
    assert at_24[0].tolist() == [0] * 6 + [1, 2, 3, 4]  # from 6 positions (120 ms) before the first frame
    assert at_24[10].tolist() == list(range(15, 25))  # frame 10 is at position 20: from 14
    at_25 = lip_sync.slice_windows(stacked, 25.0, 11)[..., 0, 0]
    assert at_25[0].tolist() == [0] * 4 + list(range(1, 7)) and at_25[10][0] == 17  # from position 16
    # The exact rate places frame 1000 of 29.97 fps at position 1668 (not 1724, as a whole 29 would).
    long = torch.arange(1, 2001, dtype=torch.float32)[:, None, None]
    assert lip_sync.slice_windows(long, 30000 / 1001, 1001)[1000, 0, 0, 0] == 1668 - 4 + 1


@pytest.mark.parametrize(
    "fields",
    [{"video_media": None}, {"audio_media": None}, {"audio_media": {"url": "ftp://host/a.wav"}}, {"video_media": "x"}],
)
def test_bad_input_is_refused(media: dict[str, Path], tmp_path: Path, fields: dict[str, Any]) -> None:
    assert error_of(media["video"], media["short"], tmp_path, **fields) == "invalid_input"


def test_too_long_audio_is_refused(media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lip_sync, "MAX_AUDIO_S", 1.0)
    assert error_of(media["video"], media["long"], tmp_path) == "invalid_input"


def test_media_without_the_needed_stream_is_invalid_media(media: dict[str, Path], tmp_path: Path) -> None:
    assert error_of(media["short"], media["short"], tmp_path) == "invalid_media"  # no video stream
    silent = tmp_path / "silent.mp4"
    encode.write_mp4(np.zeros((4, 32, 32, 3), dtype=np.uint8), FPS, silent)
    assert error_of(media["video"], silent, tmp_path) == "invalid_media"  # no audio stream


@pytest.mark.parametrize("kept", [(), (lip_sync.UNET_FOLDER, lip_sync.VAE_FOLDER)])
def test_missing_weights_are_model_unavailable(
    media: dict[str, Path], tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch, kept: tuple[str, ...]
) -> None:
    partial = tmp_path / "models"
    partial.mkdir()
    for folder in kept:
        (partial / folder).symlink_to(models_dir / folder)
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(partial))
    assert error_of(media["video"], media["short"], tmp_path) == "model_unavailable"


def test_cuda_out_of_memory_ends_as_gpu_oom(
    media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(lip_sync, "generate_faces", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        run(media["video"], media["short"], tmp_path)
    assert classify_exception(info.value).code == "gpu_oom"


def test_faces_are_smoothed_over_time_and_short_gaps_filled() -> None:
    box = lip_sync.Box

    def face(x: int) -> lip_sync.FoundFace:
        return lip_sync.FoundFace(box(x, 10, x + 40, 60), ((x + 10.0, 20.0), (x + 30.0, 20.0), (x + 20.0, 30.0),
                                                            (x + 12.0, 45.0), (x + 28.0, 45.0)))

    # None at the start, two detections 4 apart (a gap of 3: filled), then a gap of 4 (not filled).
    found = [None, face(0), None, None, None, face(40), None, None, None, None, face(40)]
    smooth = lip_sync.smooth_faces(found)
    assert smooth[0] is None, "nothing before the first detection"
    assert all(smooth[i] is not None for i in range(1, 6)), "a gap of MAX_GAP frames is filled"
    assert all(smooth[i] is None for i in range(6, 10)) and smooth[10] is not None
    # Frame 3 lies halfway: the filled boxes 1..5 run 0, 10, 20, 30, 40, and frame 3 is their
    # mean over frames 1..5.
    assert smooth[3] is not None and smooth[3].box == box(20, 10, 60, 60)
    assert smooth[3].landmarks is not None and smooth[3].landmarks[0] == pytest.approx((30.0, 20.0))
    # A jittery detection is pulled towards its neighbours.
    jitter = lip_sync.smooth_faces([face(0), face(0), face(10), face(0), face(0)])
    assert jitter[2] is not None and jitter[2].box.x1 == 2
    # Haar boxes carry no landmarks, and smoothing keeps it so.
    plain = lip_sync.smooth_faces([lip_sync.FoundFace(box(0, 0, 10, 10)), None, lip_sync.FoundFace(box(2, 0, 12, 10))])
    assert plain[1] is not None and plain[1].landmarks is None and plain[1].box == box(1, 0, 11, 10)


def test_a_clip_where_too_few_frames_show_a_face_fails_face_not_found(tmp_path: Path, media: dict[str, Path]) -> None:
    frames = np.zeros((VIDEO_FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames[:] = (90, 120, 160)
    for index in range(VIDEO_FRAMES - 3, VIDEO_FRAMES):  # a face in the last 3 of 10: 1 of the 8 synced
        draw_face(frames[index], WIDTH // 2, HEIGHT // 2, 60)
    encode.write_mp4(frames, FPS, tmp_path / "mostly_empty.mp4")
    with pytest.raises(PermanentGpuError) as info:
        run(tmp_path / "mostly_empty.mp4", media["short"], tmp_path)
    assert info.value.code == "face_not_found" and not info.value.retryable
    assert "a face was found in 1 of the 8 frames to sync; at least 50%" in info.value.message


def _tiny_restorer(folder: Path) -> Any:
    """GFPGAN's network at a 64-pixel face size with random weights, saved and loaded as the published file is."""
    import torch

    from gpu_tasks.engines import gfpgan

    torch.manual_seed(0)
    network = gfpgan.GFPGANv1Clean(64, 32, 1, 0.125, 2)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": network.state_dict()}, folder / lip_sync.RESTORER_FILE)
    return gfpgan.load(str(folder / lip_sync.RESTORER_FILE), "cpu", out_size=64, num_style_feat=32,
                       channel_multiplier=1, narrow=0.125, num_mlp=2)


def test_a_turned_face_found_by_retinaface_is_synced_and_its_mouth_restored(
    media: dict[str, Path], tmp_path: Path, written: list[np.ndarray], models_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the detector's weights in the models folder the engine asks RetinaFace (its network is
    tested in test_retinaface.py; here it answers a box and landmarks where the face was drawn, as
    it would for a turned face the Haar cascade misses), and with GFPGAN's it restores each
    re-drawn face over the lower-face mask only."""
    from gpu_tasks.engines import retinaface

    detector = tmp_path / "models" / lip_sync.DETECTOR_FOLDER
    detector.mkdir(parents=True)
    (detector / lip_sync.DETECTOR_FILE).write_bytes(b"stand-in")
    models = tmp_path / "models"
    for folder in (lip_sync.UNET_FOLDER, lip_sync.VAE_FOLDER, lip_sync.WHISPER_FOLDER):
        (models / folder).symlink_to(models_dir / folder)
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(models))
    monkeypatch.setattr(lip_sync, "_detector", lambda path: "retinaface")
    asked: list[int] = []

    def detect(model: Any, frame: np.ndarray, **kwargs: Any) -> list[retinaface.Face]:
        asked.append(1)
        index = len(asked) - 1
        if index < FACELESS:
            return []
        cx, cy, size = WIDTH // 2 + index, HEIGHT // 2, 60
        box = (cx - size, cy - 1.3 * size, cx + size, cy + 1.3 * size)
        marks = ((cx - 0.4 * size, cy - 0.25 * size), (cx + 0.4 * size, cy - 0.25 * size), (cx, cy + 0.1 * size),
                 (cx - 0.3 * size, cy + 0.6 * size), (cx + 0.3 * size, cy + 0.6 * size))
        return [retinaface.Face(box, 0.99, marks)]

    monkeypatch.setattr(retinaface, "detect", detect)
    restorer = _tiny_restorer(tmp_path / "gfpgan")
    monkeypatch.setattr(lip_sync, "_restorer", lambda: None)
    plain, _ = run(media["video"], media["short"], tmp_path / "plain")
    asked.clear()
    monkeypatch.setattr(lip_sync, "_restorer", lambda: restorer)
    restored, _ = run(media["video"], media["short"], tmp_path / "restored")
    assert (plain["face_detector"], plain["restoration"]) == (lip_sync.RETINAFACE, "none")
    assert (restored["face_detector"], restored["restoration"]) == (lip_sync.RETINAFACE, lip_sync.GFPGAN)
    assert restored["faces_found"] == 8 - FACELESS
    assert restored["outputs"]["video"]["metadata"]["restoration"] == lip_sync.GFPGAN
    before, after = written[0], written[1]
    for index in range(FACELESS, 8):
        changed = np.any(before[index] != after[index], axis=-1)
        rows, cols = np.nonzero(changed)
        assert len(rows) > 0, "the restored face differs"
        cx, cy, size = WIDTH // 2 + index, HEIGHT // 2, 60
        mouth_top = round(cy - 1.3 * size + 2.6 * size * lip_sync.MOUTH_FROM)
        assert rows.min() >= mouth_top - 3 and cols.min() >= cx - size - 3 and cols.max() <= cx + size + 3
    for index in range(FACELESS):
        assert np.array_equal(before[index], after[index]), "a frame without a face is untouched"
