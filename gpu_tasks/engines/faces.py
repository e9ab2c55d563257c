"""Finding faces with OpenCV's frontal-face Haar cascade, the detector shipped inside
opencv-python-headless 4.x (cv2/data): the engines that need a face box (lip sync, LivePortrait)
use it instead of landmark models whose weights no package ships."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

CASCADE = "haarcascade_frontalface_default.xml"
MIN_FACE_PIXELS = 24  # the cascade's own window: nothing smaller is found anyway


@functools.lru_cache(maxsize=1)
def _cascade() -> Any:
    import cv2

    return cv2.CascadeClassifier(str(Path(cv2.__file__).parent / "data" / CASCADE))


def largest_face(
    rgb: np.ndarray, *, min_share: float, max_side: int | None = None
) -> tuple[float, float, float, float] | None:
    """The largest frontal face in an RGB image as (x, y, w, h) in its pixels, or None.

    `min_share`: the smallest face looked for, as a share of the searched image's short side.
    `max_side`: search a copy at most this long on its long side (the cost grows with the area).
    """
    import cv2

    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width)) if max_side else 1.0
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    smallest = max(MIN_FACE_PIXELS, round(min(gray.shape) * min_share))
    found = _cascade().detectMultiScale(
        cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest)
    )
    if len(found) == 0:
        return None
    x, y, w, h = max(found, key=lambda face: int(face[2]) * int(face[3]))
    return x / scale, y / scale, w / scale, h / scale
