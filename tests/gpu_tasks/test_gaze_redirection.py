"""The gaze-redirection engine end to end, on the tiny random-weight LivePortrait networks that the
performance-cloning tests build (the same classes and file layout as the published checkpoints).

The video shows a drawn cartoon face that OpenCV's frontal-face cascade detects; the re-rendered
pixels are noise, so these tests check the path, the video's facts and the error codes, and the
eye movement itself on the keypoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import encode, gaze_redirection
from gpu_tasks.engines.liveportrait import keypoints
from gpu_tasks.errors import PermanentGpuError
from tests.gpu_tasks.helpers import streams

# The tiny networks, their fixtures (module-scoped weights under AUTEUR_MODELS_DIR, a fresh load cache:
# both engines share one loader) and the drawn face come from the performance-cloning tests.
from tests.gpu_tasks.test_performance_cloning import (  # noqa: F401
    check_render_out_of_memory_is_gpu_oom,
    draw_face,
    models_dir,
    pixels,
    weights_env,
)

FPS, FRAMES, SIZE = 10, 9, (288, 256)
AUDIO_RATE = 16000


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A talking face with a tone, and a clip with no face."""
    folder = tmp_path_factory.mktemp("media")
    faces = np.stack([draw_face(*SIZE, dx=index % 3, mouth=4 + index) for index in range(FRAMES)])
    tone = (0.3 * np.sin(2 * np.pi * 330 * np.arange(int(FRAMES / FPS * AUDIO_RATE)) / AUDIO_RATE)).astype(np.float32)
    encode.write_mp4(faces, FPS, folder / "face.mp4", audio=tone, sample_rate=AUDIO_RATE)
    encode.write_mp4(np.full((FRAMES, SIZE[1], SIZE[0], 3), 100, np.uint8), FPS, folder / "blank.mp4")
    return {"face": folder / "face.mp4", "blank": folder / "blank.mp4"}


def run(tmp_path: Path, video: Path, **fields: Any) -> tuple[dict[str, Any], list[float]]:
    payload: dict[str, Any] = {"video_media": {"path": str(video)}, "output_dir": str(tmp_path / "out"), **fields}
    seen: list[float] = []
    ctx = EngineContext(workdir=tmp_path / "work", payload=payload, progress=seen.append)
    return gaze_redirection.run(payload, ctx), seen


def error_of(tmp_path: Path, video: Path, **fields: Any) -> PermanentGpuError:
    with pytest.raises(PermanentGpuError) as info:
        run(tmp_path, video, **fields)
    return info.value


def test_video_keeps_the_input_frames_fps_size_and_audio(videos: dict[str, Path], tmp_path: Path) -> None:
    result, progress = run(tmp_path, videos["face"])
    video = Path(result["outputs"]["video"]["path"])
    facts = streams(video)
    assert facts["video"]["codec"] == "h264"
    assert (facts["video"]["width"], facts["video"]["height"]) == SIZE
    assert facts["video"]["frames"] == FRAMES
    assert facts["video"]["fps"] == pytest.approx(FPS)
    assert facts["video"]["duration_s"] == pytest.approx(FRAMES / FPS, abs=0.01)
    assert facts["audio"] is not None and facts["audio"]["duration_s"] == pytest.approx(FRAMES / FPS, abs=0.05)
    assert (result["width"], result["height"], result["frames"]) == (*SIZE, FRAMES)
    assert result["duration_ms"] == round(FRAMES / FPS * 1000)
    assert result["model"] == gaze_redirection.MODEL
    assert result["outputs"]["video"]["metadata"] == {
        "model": "LivePortrait", "target": "camera", "strength": 1.0, "width": SIZE[0], "height": SIZE[1],
        "fps": result["fps"], "frames": FRAMES, "audio": True,
    }  # fmt: skip
    assert progress == sorted(progress) and progress[-1] == 100.0 and len(progress) >= 4


def test_same_input_gives_the_same_video(videos: dict[str, Path], tmp_path: Path) -> None:
    target = {"yaw": 10, "pitch": -5.5}
    first, _ = run(tmp_path / "a", videos["face"], target=target, strength=0.5)
    again, _ = run(tmp_path / "b", videos["face"], target=target, strength=0.5)
    assert np.array_equal(
        pixels(Path(first["outputs"]["video"]["path"])), pixels(Path(again["outputs"]["video"]["path"]))
    )
    assert first["outputs"]["video"]["metadata"]["target"] == {"yaw": 10.0, "pitch": -5.5}


def test_the_target_moves_the_eye_keypoints_by_the_editor_rule(
    videos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpu_tasks.engines.liveportrait.networks import Networks

    seen: list[Any] = []
    render = Networks.render

    def recording(self: Networks, feature: Any, kp_source: Any, kp_driving: Any) -> Any:
        seen.append(kp_driving)
        return render(self, feature, kp_source, kp_driving)

    monkeypatch.setattr(Networks, "render", recording)
    run(tmp_path / "still", videos["face"], strength=0.0)
    run(tmp_path / "turned", videos["face"], target={"yaw": 30, "pitch": 30}, strength=1.0)
    still, turned = seen[0], seen[2]  # the first batch of each run
    moved = (turned - still).abs().sum(dim=-1)[0]
    # Stitching may nudge every keypoint a little; the eyes move most.
    assert int(moved.argmax()) in (keypoints.LEFT_EYE, keypoints.RIGHT_EYE)


def test_eyeball_offsets_follow_the_editor_rule() -> None:
    import torch

    offsets = keypoints.eyeball_offsets(torch.tensor([10.0, -10.0]), torch.tensor([4.0, 0.0]), 21)
    assert offsets[0, keypoints.LEFT_EYE, 0].item() == pytest.approx(0.007)
    assert offsets[0, keypoints.RIGHT_EYE, 0].item() == pytest.approx(0.01)
    assert offsets[1, keypoints.LEFT_EYE, 0].item() == pytest.approx(-0.01)
    assert offsets[1, keypoints.RIGHT_EYE, 0].item() == pytest.approx(-0.007)
    assert offsets[0, keypoints.LEFT_EYE, 1].item() == pytest.approx(-0.002)  # up is -y in the image
    assert offsets[0, keypoints.LEFT_LID, 1].item() == pytest.approx(-0.0006)
    assert offsets[1, :, 1].abs().sum().item() == 0
    assert offsets[:, :, 2].abs().sum().item() == 0


def test_a_video_without_a_face_is_refused(videos: dict[str, Path], tmp_path: Path) -> None:
    error = error_of(tmp_path, videos["blank"])
    assert (error.code, error.message) == ("invalid_input", "no face found in the video's first frame")


@pytest.mark.parametrize(
    "fields",
    [
        {"target": "left"}, {"target": {"yaw": 31, "pitch": 0}}, {"target": {"yaw": 0, "pitch": -30.5}},
        {"target": {"yaw": "up", "pitch": 0}}, {"target": {"yaw": 0}}, {"target": {"yaw": True, "pitch": 0}},
        {"target": {"yaw": float("nan"), "pitch": 0}}, {"strength": 1.5}, {"strength": -0.1}, {"strength": True},
        {"strength": "1"}, {"video_media": None},
    ],
)  # fmt: skip
def test_bad_input_is_invalid_input(videos: dict[str, Path], tmp_path: Path, fields: dict[str, Any]) -> None:
    assert error_of(tmp_path, videos["face"], **fields).code == "invalid_input"


def test_unreadable_video_is_invalid_media(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    assert error_of(tmp_path, broken).code == "invalid_media"


def test_missing_weights_are_model_unavailable(
    videos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(tmp_path / "empty"))
    assert error_of(tmp_path, videos["face"]).code == "model_unavailable"


def test_cuda_out_of_memory_ends_as_gpu_oom(
    videos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_render_out_of_memory_is_gpu_oom(monkeypatch, lambda: run(tmp_path, videos["face"]), tmp_path / "out")


def test_looking_at_the_camera_turns_the_eyes_against_the_head() -> None:
    """LivePortrait's head pose: a positive yaw turns the face to the image's left and a positive
    pitch tips it down (a nose point, nearer the camera than the face's centre, moves that way
    under `kp @ R`). To look at the camera the pupils turn the other way: to the image's right
    and up."""
    import torch

    kp = torch.zeros(1, 21, 3)
    kp[0, 0] = torch.tensor([0.0, 0.0, -0.2])  # right-down-in: nearer the camera is z < 0

    def nose(pitch: float, yaw: float) -> torch.Tensor:
        rotation = keypoints.rotation_matrix(torch.tensor([[pitch]]), torch.tensor([[yaw]]), torch.tensor([[0.0]]))
        return keypoints.posed(kp, rotation, torch.zeros_like(kp), torch.ones(1, 1), torch.zeros(1, 3))[0, 0, :2]

    assert nose(0, 20)[0] < 0 and nose(15, 0)[1] > 0  # +yaw: face to the image's left; +pitch: down

    camera = gaze_redirection.Gaze(yaw=0.0, pitch=0.0, camera=True, strength=1.0)
    turn_x, turn_y = gaze_redirection.camera_turn(camera, torch.tensor([20.0]), torch.tensor([15.0]))
    offsets = keypoints.eyeball_offsets(turn_x, turn_y, 21)
    eyes = [keypoints.LEFT_EYE, keypoints.RIGHT_EYE]
    assert (offsets[0, eyes, 0] > 0).all(), "the pupils move to the image's right, against the nose"
    assert (offsets[0, eyes, 1] < 0).all(), "and up (image y points down), against the nose's drop"
    assert (turn_x.item(), turn_y.item()) == (20.0, 15.0)

    # A face turned to the image's right (yaw -10) asked to look 10 degrees right: no turn at all.
    asked = gaze_redirection.Gaze(yaw=10.0, pitch=0.0, camera=False, strength=1.0)
    turn_x, turn_y = gaze_redirection.camera_turn(asked, torch.tensor([-10.0]), torch.tensor([0.0]))
    assert turn_x.item() == 0.0 and turn_y.item() == 0.0
    # Half strength, and the editor's range caps the turn.
    half = gaze_redirection.Gaze(yaw=0.0, pitch=0.0, camera=True, strength=0.5)
    assert gaze_redirection.camera_turn(half, torch.tensor([50.0]), torch.tensor([0.0]))[0].item() == 15.0
