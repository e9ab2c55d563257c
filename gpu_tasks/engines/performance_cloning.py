"""Performance cloning: LivePortrait (Kuaishou's KwaiVGI, MIT licence for code and weights)
animates a portrait with the head motion and expressions of a driving video.

LivePortrait reads implicit 3D keypoints, head pose and expression from each face crop with a
ConvNeXt-V2 motion extractor, moves the source portrait's keypoints by the driving motion, warps
the source's 3D appearance volume to them and decodes the result with a SPADE generator; a small
stitching MLP keeps the animated crop's border aligned with the source's (the networks are in
`gpu_tasks/engines/liveportrait/`). The engine crops the source face with OpenCV's Haar cascade
(see `liveportrait/crop.py` for why not the reference's InsightFace landmarks), animates the
256x256 crop, and pastes each 512x512 result back into the full portrait with a feathered edge.
The driving frames are cropped to one square around the face in the first frame (the centre
square when none is found there, as the reference treats driving videos it does not crop).
Inference is deterministic: there is no sampling, so the same inputs give the same video.

Payload: `{"source_image_media": input_ref (a portrait), "driving_video_media": input_ref (a
video of a face), "relative"?: bool (true: each frame's motion since the first driving frame is
applied to the source's own pose and expression; false: the driving pose and expression are
copied as they are), "stitching"?: bool (true)}`.
Result: `{"outputs": {"video": ref}, "duration_ms", "width", "height", "fps", "frames", "model"}`;
`video` is an H.264 MP4 (`video/mp4`) at the source's size (at most MAX_SOURCE_SIDE on its long
side), one frame per driving frame at the driving video's fps, with the driving video's audio
(AAC, mono) when it has some. The ref's `metadata` records the parameters that shaped it.
Refused: a portrait in which no face is found (`invalid_input`), unreadable media (`invalid_media`),
a driving video longer than MAX_FRAMES frames (`invalid_input`).

Weights: the published `liveportrait/base_models/*.pth` and
`liveportrait/retargeting_models/stitching_retargeting_module.pth` state dicts, loaded by key
(about 500 MB in float32), shared with gaze redirection (`liveportrait/loader.py`).

GPU memory: the weights (about 130 M parameters) stay in float32, about 0.5 GB, and the
convolutions run under bfloat16 autocast (the reference runs them in float16). The warping
network's hourglass over the 16x64x64 volume and the generator's 256x256 SPADE layers dominate the
activations: an estimate of a few hundred MB per frame, so a batch of BATCH frames fits an A10G
(24 GB) with room to spare (estimated from the shapes, not measured on a GPU). Output frames are
kept in host memory until encoding: at most MAX_FRAMES frames of MAX_SOURCE_SIDE pixels (about
2.5 GB at 1280x720).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpu_tasks.contract import EngineContext, input_limit_s
from gpu_tasks.engines import weights
from gpu_tasks.engines.liveportrait.loader import MODEL, REPOS, WEIGHTS, load
from gpu_tasks.engines.media import video_fps
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import MediaLimit

if TYPE_CHECKING:
    import numpy as np

    from gpu_tasks.engines.liveportrait.networks import Networks

__all__ = ["MODEL", "REPOS", "WEIGHTS", "load", "run"]

JOB_TYPE = "performance-cloning"
MAX_SOURCE_SIDE = 1280
MAX_FRAMES = 900  # 30 s at 30 fps: bounds host memory for the output frames
# Known from the file before the call (its duration times its frame rate): the submission refuses
# a longer driving_video_media with the same number.
MEDIA_LIMITS = {"driving_video_media": MediaLimit(max_frames=MAX_FRAMES)}
BATCH = 8  # driving frames per forward pass
PROGRESS_LOADED, PROGRESS_ANIMATED = 10.0, 95.0


@dataclass(frozen=True)
class Options:
    relative: bool
    stitching: bool


def flag(payload: Mapping[str, Any], name: str, default: bool) -> bool:
    """An optional boolean field; anything but true, false or absent is invalid."""
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise PermanentGpuError("invalid_input", f"{name} must be true or false")
    return value


def validate(payload: Mapping[str, Any]) -> Options:
    return Options(relative=flag(payload, "relative", True), stitching=flag(payload, "stitching", True))


def animate(
    nets: Networks, source: np.ndarray, driving: np.ndarray, options: Options, ctx: EngineContext
) -> np.ndarray:
    """(T, H, W, 3) frames: the source portrait moved by each driving face crop."""
    import numpy as np

    from gpu_tasks.engines.liveportrait import crop, keypoints
    from gpu_tasks.engines.liveportrait.networks import batches, to_pixels, to_tensor

    face = crop.detect_face(source)
    if face is None:
        raise PermanentGpuError("invalid_input", "no face found in the source image")
    box = crop.crop_box(face, source.shape[1], source.shape[0])
    source_crop = to_tensor(crop.cut(source, box, nets.input_size)[None])
    source_motion = nets.read_motion(source_crop)
    kp_source = keypoints.source_keypoints(source_motion)
    feature = nets.appearance_of(source_crop)
    first = nets.read_motion(to_tensor(driving[:1]))
    blend = crop.feather(box.side)
    frames = np.empty((driving.shape[0], *source.shape), dtype=np.uint8)
    for part in batches(driving.shape[0], BATCH):
        motion = nets.read_motion(to_tensor(driving[part]))
        kp_driving = keypoints.driven_keypoints(source_motion, motion, first, relative=options.relative)
        if options.stitching:
            kp_driving = nets.stitch(kp_source, kp_driving)
        rendered = to_pixels(nets.render(feature, kp_source, kp_driving))
        crop.paste_batch(
            frames, part.start, rendered, np.broadcast_to(source, rendered.shape[:1] + source.shape), box, blend
        )
        ctx.progress(PROGRESS_LOADED + (PROGRESS_ANIMATED - PROGRESS_LOADED) * part.stop / driving.shape[0])
    return frames


def run(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    from gpu_tasks.engines.liveportrait.frames import deliver_video, face_crops, read_image

    options = validate(payload)
    path = weights.weights_path(*WEIGHTS, JOB_TYPE)
    source_path = ctx.input_path(payload.get("source_image_media"), "source_image")
    driving_path = ctx.input_path(payload.get("driving_video_media"), "driving_video")
    source = read_image(source_path, MAX_SOURCE_SIDE)
    fps = video_fps(driving_path, "driving_video_media")
    nets = load(str(path))
    max_s = input_limit_s(payload.get("driving_video_media"))
    driving = face_crops(driving_path, size=nets.input_size, max_frames=MAX_FRAMES, max_s=max_s)
    ctx.progress(PROGRESS_LOADED)
    frames = animate(nets, source, driving, options, ctx)
    metadata = {"model": MODEL, "relative": options.relative, "stitching": options.stitching}
    result = deliver_video(ctx, frames, fps, audio_from=driving_path, metadata=metadata)
    ctx.progress(100.0)
    return result
