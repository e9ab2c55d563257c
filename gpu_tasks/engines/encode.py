"""Writing what model engines produce in standard formats: PNG, MP4 (H.264 + AAC), WAV."""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# H.264 in yuv420p needs even sizes; the CRF keeps generated frames visually lossless.
X264_CRF = 18


def write_png(pixels: np.ndarray, path: Path) -> None:
    """An (H, W, 3) uint8 RGB array as a PNG."""
    from PIL import Image

    Image.fromarray(pixels, "RGB").save(path, format="PNG")


def write_mp4(
    frames: np.ndarray, fps: float, path: Path, *, audio: np.ndarray | None = None, sample_rate: int = 0
) -> None:
    """(T, H, W, 3) uint8 RGB frames as H.264 (yuv420p), with mono float32 `audio` as AAC when given.

    Odd sizes are cropped by one pixel (yuv420p needs even ones).
    """
    import av
    import numpy as np

    count, height, width = frames.shape[0], frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": str(X264_CRF), "preset": "medium"}
        sound = container.add_stream("aac", rate=sample_rate, layout="mono") if audio is not None else None
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[index, :height, :width]), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None and audio is not None:
            samples = np.ascontiguousarray(audio.astype(np.float32).reshape(1, -1))
            chunk = 1024 * 16
            for start in range(0, samples.shape[1], chunk):
                piece = av.AudioFrame.from_ndarray(samples[:, start:start + chunk], format="fltp", layout="mono")
                piece.sample_rate = sample_rate
                container.mux(sound.encode(piece))
            container.mux(sound.encode())


def write_wav(samples: np.ndarray, sample_rate: int, path: Path) -> None:
    """Float samples in [-1, 1], shaped (n,) or (channels, n), as 16-bit PCM WAV."""
    import numpy as np

    data = samples if samples.ndim == 2 else samples.reshape(1, -1)
    pcm = (np.clip(data, -1.0, 1.0) * 32767.0).round().astype("<i2").T.copy()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(data.shape[0])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
