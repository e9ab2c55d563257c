"""Reading the engines' media: a portrait image, a video's frames cropped to the face, its audio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_tasks.engines.liveportrait import crop
from gpu_tasks.errors import PermanentGpuError

if TYPE_CHECKING:
    import numpy as np


def read_image(path: Path, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright (EXIF orientation applied), at most `max_side` on its long side,
    with even sides (H.264 in yuv420p needs them)."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise PermanentGpuError("invalid_media", f"cannot read the image: {type(exc).__name__}") from exc
    scale = min(1.0, max_side / max(image.size))
    width, height = (max(2, int(side * scale) // 2 * 2) for side in image.size)
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def _decoded(path: Path) -> Iterator[Any]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise PermanentGpuError("invalid_media", "the media has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from container.decode(stream)
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise PermanentGpuError("invalid_media", f"cannot decode the video: {type(exc).__name__}") from exc


def face_crops(path: Path, *, size: int, max_frames: int) -> np.ndarray:
    """(T, size, size, 3) uint8: every frame cropped to one square around the face the first frame
    shows (one box for the whole clip, so the crop does not jitter), or to the centre square when
    no face is found there, as the reference does with driving videos it does not crop."""
    import numpy as np

    crops: list[np.ndarray] = []
    box: crop.Box | None = None
    for frame in _decoded(path):
        if len(crops) == max_frames:
            raise PermanentGpuError("invalid_input", f"the video is longer than {max_frames} frames")
        rgb = frame.to_ndarray(format="rgb24")
        if box is None:
            face = crop.detect_face(rgb)
            height, width = rgb.shape[:2]
            box = crop.crop_box(face, width, height) if face is not None else crop.centre_box(width, height)
        crops.append(crop.cut(rgb, box, size))
    if not crops:
        raise PermanentGpuError("invalid_media", "no frame could be decoded")
    return np.stack(crops)


def audio_track(path: Path, seconds: float, sample_rate: int) -> np.ndarray | None:
    """The media's audio as mono float32, cut to `seconds`; None when it has none."""
    from gpu_tasks.engines.media import decode_audio, probe

    if not probe(path).has_audio:
        return None
    samples = decode_audio(path, sample_rate)
    return samples[: round(seconds * sample_rate)]
