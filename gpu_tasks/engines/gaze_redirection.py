"""Gaze redirection: LivePortrait (Kuaishou's KwaiVGI, MIT licence for code and weights) turns the
eyes of the face in a video towards the camera or a chosen direction, frame by frame.

Each frame is its own source: the motion extractor reads the face crop's keypoints, head pose and
expression; the eyes' expression keypoints are moved the way LivePortrait's eyeball-direction
editor moves them (`liveportrait/keypoints.py`); the stitching MLP keeps the crop's border in
place; and the warping network and generator re-render the crop, pasted back with a feathered edge.
LivePortrait has no gaze estimator, so the eyes are taken to look where the head points: the turn
applied is the target direction minus the head's direction, in the editor's units (read as
degrees), capped at its range, times `strength` (`camera_turn`). LivePortrait's head pose counts
yaw positive when the face turns to the image's left and pitch positive when it tips down (its
keypoints are right-down-in: x right, y down, z into the picture, so a nose has z < 0 and `kp @ R`
moves it left for a positive yaw and down for a positive pitch); the target counts the other way
(right, up), so the head's direction in the target's terms is (-yaw, -pitch). One face box, found
with OpenCV's Haar cascade on the first frame, serves the whole clip (see `liveportrait/crop.py`):
a face that moves far from where it starts leaves the box. Inference is deterministic: no sampling.

The retargeting module's eye MLP is not used: it sets how open the eyes are from eye-openness
ratios measured on facial landmarks (a landmark model this engine does not carry), not where
they look.

Payload: `{"video_media": input_ref (a video of a face), "target"?: "camera" | {"yaw": degrees,
"pitch": degrees} (each -MAX_TARGET_DEGREES..MAX_TARGET_DEGREES; yaw positive to the image's
right, pitch positive up; default "camera"), "strength"?: float 0..1 (1.0)}`.
Result: `{"outputs": {"video": ref}, "duration_ms", "width", "height", "fps", "frames", "model"}`;
`video` is an H.264 MP4 (`video/mp4`) with the input's frames, fps and audio (AAC, mono), at most
MAX_SIDE pixels on its long side. Refused: no face in the first frame (`invalid_input`),
unreadable media (`invalid_media`), more than MAX_FRAMES frames (`invalid_input`).

Weights and GPU memory: as performance cloning (the same checkpoints, `liveportrait/loader.py`),
plus one appearance volume per frame of a batch (8 MB each).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpu_tasks.contract import EngineContext, input_limit_s
from gpu_tasks.engines import weights
from gpu_tasks.engines.liveportrait.loader import MODEL, REPOS, WEIGHTS, load
from gpu_tasks.engines.media import video_fps
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Bound, MediaLimit

if TYPE_CHECKING:
    import numpy as np
    import torch

    from gpu_tasks.engines.liveportrait.networks import Networks

__all__ = ["MODEL", "REPOS", "WEIGHTS", "load", "run"]

JOB_TYPE = "gaze-redirection"
MAX_SIDE = 1280
MAX_FRAMES = 900  # 30 s at 30 fps: bounds host memory for the frames
# Known from the file before the call (its duration times its frame rate): the submission refuses
# a longer video_media with the same number.
MEDIA_LIMITS = {"video_media": MediaLimit(max_frames=MAX_FRAMES)}
MAX_TARGET_DEGREES = 30
MIN_STRENGTH, MAX_STRENGTH, DEFAULT_STRENGTH = 0, 1, 1.0
# What the API's input reads (gpu_tasks.input_bounds): validate() checks the same constants.
INPUT_BOUNDS = {
    "target.yaw": Bound("number", -MAX_TARGET_DEGREES, MAX_TARGET_DEGREES),
    "target.pitch": Bound("number", -MAX_TARGET_DEGREES, MAX_TARGET_DEGREES),
    "strength": Bound("number", MIN_STRENGTH, MAX_STRENGTH, DEFAULT_STRENGTH),
}
BATCH = 8
PROGRESS_LOADED, PROGRESS_DONE = 10.0, 95.0


@dataclass(frozen=True)
class Gaze:
    yaw: float  # degrees, 0 = at the camera
    pitch: float
    camera: bool
    strength: float


def _degrees(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PermanentGpuError("invalid_input", f"target {name} must be a number of degrees")
    if abs(value) > MAX_TARGET_DEGREES:
        raise PermanentGpuError("invalid_input", f"target {name} must lie within ±{MAX_TARGET_DEGREES:g} degrees")
    return float(value)


def validate(payload: Mapping[str, Any]) -> Gaze:
    target = payload.get("target", "camera")
    if target == "camera" or target is None:
        yaw, pitch, camera = 0.0, 0.0, True
    elif isinstance(target, Mapping) and set(target) == {"yaw", "pitch"}:
        yaw, pitch, camera = _degrees(target["yaw"], "yaw"), _degrees(target["pitch"], "pitch"), False
    else:
        raise PermanentGpuError("invalid_input", 'target must be "camera" or {"yaw": degrees, "pitch": degrees}')
    strength = payload.get("strength", DEFAULT_STRENGTH)
    if (
        isinstance(strength, bool)
        or not isinstance(strength, int | float)
        or not MIN_STRENGTH <= strength <= MAX_STRENGTH
    ):
        raise PermanentGpuError("invalid_input", f"strength must be a number from {MIN_STRENGTH} to {MAX_STRENGTH}")
    return Gaze(yaw=yaw, pitch=pitch, camera=camera, strength=float(strength))


def camera_turn(gaze: Gaze, yaw: torch.Tensor, pitch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How far to turn the eyes, in eyeball-direction units (x to the image's right, y up), for a
    head at LivePortrait's (B,) `yaw` (positive: face to the image's left) and `pitch` (positive:
    face down): the target less the head's direction in the target's terms, (-yaw, -pitch)."""
    from gpu_tasks.engines.liveportrait import keypoints

    limit = keypoints.EYEBALL_RANGE
    head_right, head_up = -yaw, -pitch
    return ((gaze.yaw - head_right).clamp(-limit, limit) * gaze.strength,
            (gaze.pitch - head_up).clamp(-limit, limit) * gaze.strength)


def redirect(nets: Networks, frames: np.ndarray, gaze: Gaze, ctx: EngineContext) -> np.ndarray:
    """(T, H, W, 3) frames with the face's eyes turned towards the target."""
    import numpy as np

    from gpu_tasks.engines.liveportrait import crop, keypoints
    from gpu_tasks.engines.liveportrait.networks import batches, to_pixels, to_tensor

    face = crop.detect_face(frames[0])
    if face is None:
        raise PermanentGpuError("invalid_input", "no face found in the video's first frame")
    box = crop.crop_box(face, frames.shape[2], frames.shape[1])
    blend = crop.feather(box.side)
    out = np.empty_like(frames)
    for part in batches(frames.shape[0], BATCH):
        crops = to_tensor(np.stack([crop.cut(frame, box, nets.input_size) for frame in frames[part]]))
        motion = nets.read_motion(crops)
        feature = nets.appearance_of(crops)
        kp_source = keypoints.source_keypoints(motion)
        turn_x, turn_y = camera_turn(gaze, motion.yaw[:, 0], motion.pitch[:, 0])
        exp = motion.exp + keypoints.eyeball_offsets(turn_x, turn_y, motion.kp.shape[1])
        kp_driving = keypoints.posed(motion.kp, motion.rotation(), exp, motion.scale, motion.t)
        kp_driving = nets.stitch(kp_source, kp_driving)
        rendered = to_pixels(nets.render(feature, kp_source, kp_driving))
        crop.paste_batch(out, part.start, rendered, frames[part], box, blend)
        ctx.progress(PROGRESS_LOADED + (PROGRESS_DONE - PROGRESS_LOADED) * part.stop / frames.shape[0])
    return out


def run(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    from gpu_tasks.engines.liveportrait.frames import deliver_video, read_frames

    gaze = validate(payload)
    path = weights.weights_path(*WEIGHTS, JOB_TYPE)
    video_path = ctx.input_path(payload.get("video_media"), "video")
    fps = video_fps(video_path, "video_media")
    max_s = input_limit_s(payload.get("video_media"))
    frames = read_frames(video_path, max_side=MAX_SIDE, max_frames=MAX_FRAMES, max_s=max_s)
    nets = load(str(path))
    ctx.progress(PROGRESS_LOADED)
    redirected = redirect(nets, frames, gaze, ctx)
    target: str | dict[str, float] = "camera" if gaze.camera else {"yaw": gaze.yaw, "pitch": gaze.pitch}
    metadata = {"model": MODEL, "target": target, "strength": gaze.strength}
    result = deliver_video(ctx, redirected, fps, audio_from=video_path, metadata=metadata)
    ctx.progress(100.0)
    return result
