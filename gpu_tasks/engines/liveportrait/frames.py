"""The LivePortrait engines' media: reading a portrait, a video's frames (whole or cropped to the
face), and writing the animated frames as an H.264 MP4 carrying the input's audio."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import encode
from gpu_tasks.engines.liveportrait import crop
from gpu_tasks.engines.media import decoded_frames
from gpu_tasks.errors import PermanentGpuError

if TYPE_CHECKING:
    import numpy as np


AUDIO_RATE = 44100


def _even_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size at most `max_side` on the long side, both sides even (H.264 in yuv420p needs them)."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


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
    width, height = _even_size(*image.size, max_side)
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def read_frames(path: Path, *, max_side: int, max_frames: int, max_s: float | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB: every frame of the first `max_s` seconds, scaled like `read_image`."""
    import numpy as np

    frames: list[np.ndarray] = []
    for frame in decoded_frames(path, "the video", max_s=max_s):
        if len(frames) == max_frames:
            raise PermanentGpuError("invalid_input", f"the video is longer than {max_frames} frames")
        width, height = _even_size(frame.width, frame.height, max_side)
        frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
    if not frames:
        raise PermanentGpuError("invalid_media", "no frame could be decoded")
    return np.stack(frames)


def face_crops(path: Path, *, size: int, max_frames: int, max_s: float | None = None) -> np.ndarray:
    """(T, size, size, 3) uint8: every frame cropped to one square around the face the first frame
    shows (one box for the whole clip, so the crop does not jitter), or to the centre square when
    no face is found there, as the reference does with driving videos it does not crop."""
    import numpy as np

    crops: list[np.ndarray] = []
    box: crop.Box | None = None
    for frame in decoded_frames(path, "the driving video", max_s=max_s):
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
    return decode_audio(path, sample_rate, max_s=seconds)


def deliver_video(
    ctx: EngineContext, frames: np.ndarray, fps: float, *, audio_from: Path, metadata: Mapping[str, Any]
) -> dict[str, Any]:
    """Encode `frames`, with the audio of `audio_from` when it has some, hand the file over as output
    `video`, and return the engine's result: the output and the video's facts."""
    count, height, width = frames.shape[:3]
    seconds = count / fps
    audio = audio_track(audio_from, seconds, AUDIO_RATE)
    out = ctx.output_path("video", ".mp4")
    encode.write_mp4(frames, fps, out, audio=audio, sample_rate=AUDIO_RATE if audio is not None else 0)
    ref = ctx.deliver("video", out, "video/mp4")
    facts = {"width": width, "height": height, "fps": fps, "frames": count}
    ref["metadata"] = {**metadata, **facts, "audio": audio is not None}
    return {"outputs": {"video": ref}, "duration_ms": round(seconds * 1000), **facts, "model": metadata["model"]}
