"""Face crops: finding a face with OpenCV's Haar cascade, the square crop around it that the
networks take, and pasting an animated crop back into the full frame.

The reference pipeline crops with InsightFace's detector and a 203-point landmark model, which
align the crop on the eyes and mouth. InsightFace's models are for non-commercial research only
(LivePortrait's own licence says to replace them for commercial use), neither ships in a pip
package, and their weights would be two more models on the Volume. A Haar box (the cascade ships
inside opencv-python-headless) is rougher: it is not rotation-aware and its size varies more from
face to face, so the crop is widened to leave the networks margin around the face, as the
reference's crop does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpu_tasks.engines.faces import largest_face

if TYPE_CHECKING:
    import numpy as np

CROP_SCALE = 2.0  # crop side over the Haar box's side
CROP_LIFT = 0.125  # move the crop up by this share of the box: the box sits low on the forehead
MIN_FACE_SHARE = 0.05  # smallest face searched for, as a share of the image's short side
FEATHER_SHARE = 0.1  # width of the blend at the crop's edge, as a share of its side


@dataclass(frozen=True)
class Box:
    """A square in pixels: left, top, side."""

    x: int
    y: int
    side: int


def detect_face(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest frontal face as (x, y, w, h), or None."""
    face = largest_face(rgb, min_share=MIN_FACE_SHARE)
    if face is None:
        return None
    x, y, w, h = face
    return int(x), int(y), int(w), int(h)


def crop_box(face: tuple[int, int, int, int], width: int, height: int) -> Box:
    """The square crop around a face box, shrunk and shifted as needed to stay inside the image."""
    x, y, w, h = face
    side = min(round(max(w, h) * CROP_SCALE), width, height)
    centre_x, centre_y = x + w / 2, y + h / 2 - CROP_LIFT * h
    left = round(min(max(centre_x - side / 2, 0), width - side))
    top = round(min(max(centre_y - side / 2, 0), height - side))
    return Box(left, top, side)


def centre_box(width: int, height: int) -> Box:
    side = min(width, height)
    return Box((width - side) // 2, (height - side) // 2, side)


def cut(rgb: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The box's pixels resized to `size` x `size`."""
    import cv2

    region = rgb[box.y : box.y + box.side, box.x : box.x + box.side]
    interpolation = cv2.INTER_AREA if box.side > size else cv2.INTER_LINEAR
    resized: np.ndarray = cv2.resize(region, (size, size), interpolation=interpolation)
    return resized


def feather(side: int) -> np.ndarray:
    """(side, side, 1) weights: 1 inside, fading linearly to 0 at the border, so the pasted crop
    blends into the frame instead of showing its edge."""
    import numpy as np

    ramp = max(1.0, side * FEATHER_SHARE)
    distance = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32)
    edge = np.clip((distance + 0.5) / ramp, 0.0, 1.0)
    return np.minimum(edge[:, None], edge[None, :])[:, :, None]


def paste(frame: np.ndarray, crop: np.ndarray, box: Box, weights: np.ndarray) -> np.ndarray:
    """`frame` with `crop` (any square size) blended into `box`."""
    import cv2
    import numpy as np

    interpolation = cv2.INTER_AREA if crop.shape[0] > box.side else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (box.side, box.side), interpolation=interpolation).astype(np.float32)
    out = frame.copy()
    region = out[box.y : box.y + box.side, box.x : box.x + box.side].astype(np.float32)
    blended = resized * weights + region * (1.0 - weights)
    out[box.y : box.y + box.side, box.x : box.x + box.side] = np.clip(blended.round(), 0, 255).astype(np.uint8)
    return out


def paste_batch(
    out: np.ndarray, start: int, crops: np.ndarray, frames: np.ndarray, box: Box, weights: np.ndarray
) -> None:
    """Write into `out[start:]` each of `frames` with the matching one of `crops` blended into `box`."""
    for offset, (image, frame) in enumerate(zip(crops, frames, strict=True)):
        out[start + offset] = paste(frame, image, box, weights)
