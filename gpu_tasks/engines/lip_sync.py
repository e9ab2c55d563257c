"""Lip sync: MuseTalk 1.5 (Tencent Music's Lyra Lab) re-draws the mouth of a face video to new speech.

Licences: MuseTalk's code is MIT; its README says of the trained weights "The trained model are
available for any purpose, even commercially" (and asks that the other models it uses keep their
own licences). The parts it runs on: sd-vae-ft-mse (Stability AI, MIT) and Whisper tiny (OpenAI,
Apache-2.0 on the hub). Faces are found by RetinaFace (MobileNet-0.25, MIT) or, where its weights are
absent, OpenCV's Haar cascade (Intel's BSD-style licence, in the package); restored by GFPGAN (Apache-2.0).

MuseTalk is single-step latent inpainting, not a diffusion sampler. Each video frame's face is
cropped and resized to 256x256; the sd-vae-ft-mse VAE (diffusers `AutoencoderKL`) encodes it twice,
once with its lower half blacked out and once whole (the reference appearance), and the two 4-channel
latents are stacked into the UNet's 8 input channels. The UNet (diffusers `UNet2DConditionModel`
with MuseTalk's `musetalk.json`: cross-attention width 384) runs once at timestep 0, attending to
the audio around that frame: every hidden state of the Whisper-tiny encoder (transformers
`WhisperModel`; 50 positions per second) over a window of 10 positions (200 ms, starting two
frames' worth of positions before the frame: 80 ms at 25 and 30 fps, 120 ms at 24 fps, as
MuseTalk's inference pads it), flattened to 10 x layers tokens plus MuseTalk's sinusoidal
positional encoding. The
VAE decodes the predicted latent; the lower half of the face box is blended back with a feathered
mask. The VAE latents are the posterior's mode (training's choice; the reference's inference
samples it), so the output depends on the inputs alone: there is no seed.

Faces: RetinaFace (MobileNet-0.25, `retinaface.py`) finds the face in every frame, turned ones
included, with its five landmarks; where its weights are not in the models folder (a local
backend that has not downloaded them) OpenCV's frontal-face Haar cascade, shipped inside
opencv-python-headless 4.x, stands in (frontal faces only, no landmarks). A Haar box ends near the
lower lip, so it is grown by CHIN_MARGIN to take in the chin; a RetinaFace box by FACE_MARGIN.
Not MediaPipe's face detector, which lip sync is often paired with: its BlazeFace models are made for
a frontal face near a phone's camera and lose a face turned towards profile, where a speaker in a
cut-away or a two-shot often is; RetinaFace keeps it (tests/gpu_tasks/test_lip_sync.py has a turned
face the Haar cascade misses). RetinaFace also gives the five landmarks GFPGAN aligns by, runs on
the torch already loaded for MuseTalk (MediaPipe brings a second inference runtime to every GPU
image), and loads a 1.7 MB checkpoint read strictly by key.
The boxes are smoothed over time (`smooth_faces`): a gap of at most MAX_GAP frames between two
detections is filled in, and each box is the mean of the detected boxes within SMOOTH_RADIUS frames
of it, so the pasted face does not jitter. A clip in which fewer than MIN_FACE_SHARE of the output
frames show a face fails with `face_not_found` (refunded as any failure); otherwise frames without
one are passed through unchanged. The generated face is blended into the lower half of the box
with a soft mask (the reference uses a face-parsing network for it).

Restoration: where the GFPGAN v1.4 weights are present (`gfpgan.py`), each re-drawn frame's face is
aligned by its landmarks to the FFHQ template, restored, and put back over the same soft lower-face
mask, so the 256x256 generated mouth is as sharp as the rest of the frame. Without landmarks (the
Haar stand-in) or weights there is no restoration; the result says which detector and restorer ran.

Payload: `{"video_media": input_ref (the face video), "audio_media": input_ref (the new speech,
at most MAX_AUDIO_S seconds)}`.
Result: `{"outputs": {"video": ref}, "duration_ms", "width", "height", "fps", "frames", "faces_found",
"face_detector", "restoration", "model"}`. `video` is an H.264 + AAC MP4 (`video/mp4`) at the
input's frame rate and size (odd sides cropped by one pixel) carrying the new audio. Its length
follows the audio: floor(audio seconds x fps) frames, the audio cut to exactly that; the video is
trimmed when it is longer and its last frame held when it is shorter (the held frame keeps
talking).

GPU memory: the UNet (about 0.85 B parameters), VAE and Whisper-tiny take about 2 GB in half
precision; a batch of BATCH_SIZE faces at 256x256 adds well under 2 GB, so an A10G has room to
spare. Host memory holds every output frame (about 6 MB each at 1080p), which MAX_AUDIO_S bounds.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_tasks.contract import EngineContext, input_limit_s
from gpu_tasks.engines import encode, weights
from gpu_tasks.engines.faces import largest_face
from gpu_tasks.engines.media import decode_audio, decoded_frames, video_fps
from gpu_tasks.engines.weights import Release, Repo
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import MediaLimit
from gpu_tasks.types import get_spec

JOB_TYPE = "lip-sync"
MODEL = get_spec(JOB_TYPE).model
UNET_FOLDER, VAE_FOLDER, WHISPER_FOLDER = "musetalk", "sd-vae-ft-mse", "whisper-tiny"
UNET_CONFIG, UNET_WEIGHTS = "musetalkV15/musetalk.json", "musetalkV15/unet.pth"
WEIGHTS = (UNET_FOLDER, UNET_WEIGHTS)
# Every folder the engine loads, with the file that proves it is complete.
COMPONENTS = (WEIGHTS, (VAE_FOLDER, "config.json"), (WHISPER_FOLDER, "preprocessor_config.json"))
# The face detector and the restorer: downloaded with the rest, used where present (the docstring).
DETECTOR_FOLDER, DETECTOR_FILE = "retinaface-mobilenet0.25", "detection_mobilenet0.25_Final.pth"
RESTORER_FOLDER, RESTORER_FILE = "gfpgan-v1.4", "GFPGANv1.4.pth"
REPOS = {
    UNET_FOLDER: Repo("TMElyralab/MuseTalk", files=(UNET_CONFIG, UNET_WEIGHTS)),
    VAE_FOLDER: Repo("stabilityai/sd-vae-ft-mse", files=("config.json", "diffusion_pytorch_model.safetensors")),
    WHISPER_FOLDER: Repo("openai/whisper-tiny", files=("config.json", "preprocessor_config.json", "model.safetensors")),
    DETECTOR_FOLDER: Release(f"https://github.com/xinntao/facexlib/releases/download/v0.1.0/{DETECTOR_FILE}"),
    RESTORER_FOLDER: Release(f"https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/{RESTORER_FILE}"),
}
HAAR, RETINAFACE, GFPGAN = "opencv-haar-frontalface", "retinaface-mobilenet0.25", "gfpgan-v1.4"
FACE_MARGIN = 0.05  # a RetinaFace box ends at the chin; this share of its height more below it
MIN_FACE_SHARE = 0.5  # fewer output frames with a face than this fails the job (face_not_found)
MAX_GAP, SMOOTH_RADIUS = 3, 2  # frames: gaps filled in between detections; boxes averaged around each
# Where the five landmarks (eyes, nose, mouth corners) of a face sit in the FFHQ-aligned 512x512
# crops GFPGAN was trained on.
FFHQ_LANDMARKS_512 = ((192.98138, 239.94708), (318.90277, 240.1936), (256.63416, 314.01935),
                      (201.26117, 371.41043), (313.08905, 371.15118))

FACE_SIZE = 256  # MuseTalk's face crop side: the UNet was trained on 32x32 latents of it
BATCH_SIZE = 16
MAX_AUDIO_S = 60.0
# Known from the file before the call: the submission refuses a longer audio_media with the same number.
MEDIA_LIMITS = {"audio_media": MediaLimit(max_seconds=MAX_AUDIO_S)}
WHISPER_RATE, OUTPUT_RATE = 16000, 48000
SEGMENT_S = 30  # Whisper's encoder takes exactly 30 s of log-mel frames at a time
POSITIONS_PER_S = 50  # one Whisper encoder position per 20 ms
# MuseTalk's audio window per frame: 10 positions, starting `window_before(fps)` positions before
# the frame's own (2 frames' worth: 4 positions, 80 ms, at its 25 fps training rate).
WINDOW = 10
CHIN_MARGIN = 0.1  # the Haar box ends near the lower lip; grow it by this share of its height
MOUTH_FROM = 0.5  # the share of the box height above which the original face is kept
DETECT_SIDE = 640  # frames are searched for faces at most this long on their long side (cost grows with area)
PROGRESS_READ, PROGRESS_AUDIO, PROGRESS_FACES_END = 5.0, 15.0, 95.0


@dataclass(frozen=True)
class Box:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class FoundFace:
    """A face in one frame: its box (chin included) and, from RetinaFace, its five landmarks
    ((x, y) of the eyes, the nose and the mouth corners)."""

    box: Box
    landmarks: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class Loaded:
    unet: Any
    vae: Any
    whisper: Any  # the Whisper encoder
    features: Any  # WhisperFeatureExtractor
    device: str
    dtype: Any


@functools.lru_cache(maxsize=1)
def load(unet_dir: str, vae_dir: str, whisper_dir: str) -> Loaded:
    """The three networks from their folders, once per process (the hub stays off)."""
    import json

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperFeatureExtractor, WhisperModel

    device = weights.device()
    dtype = weights.dtype_for(device)
    config = json.loads((Path(unet_dir) / UNET_CONFIG).read_text())
    # MuseTalk publishes a bare state dict beside its config, not a diffusers folder: build the
    # UNet without allocating weights, then adopt the checkpoint's tensors (all keys must match).
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    state = torch.load(Path(unet_dir) / UNET_WEIGHTS, map_location="cpu", weights_only=True)
    unet.load_state_dict({key: tensor.to(dtype) for key, tensor in state.items()}, strict=True, assign=True)
    vae = AutoencoderKL.from_pretrained(vae_dir, dtype=dtype, local_files_only=True)
    whisper = WhisperModel.from_pretrained(whisper_dir, dtype=dtype, local_files_only=True).get_encoder()
    features = WhisperFeatureExtractor.from_pretrained(whisper_dir, local_files_only=True)
    return Loaded(
        unet=unet.to(device).eval(),
        vae=vae.to(device).eval(),
        whisper=whisper.to(device).eval(),
        features=features,
        device=device,
        dtype=dtype,
    )


def read_frames(path: Path, limit: int, *, max_s: float | None = None) -> Any:
    """The first `limit` frames (fewer when the video, or its first `max_s` seconds, is shorter) as
    (N, H, W, 3) uint8 RGB."""
    import numpy as np

    frames: list[Any] = []
    for frame in decoded_frames(path, "video_media", max_s=max_s):
        frames.append(frame.to_ndarray(format="rgb24"))
        if len(frames) >= limit:
            break
    if not frames:
        raise PermanentGpuError("invalid_media", "video_media has no frames")
    return np.stack(frames)


def find_faces(frames: Any) -> tuple[list[FoundFace | None], str]:
    """Each frame's face (the largest), smoothed over time, and which detector found them."""
    path = weights.models_dir() / DETECTOR_FOLDER / DETECTOR_FILE
    if not path.is_file():
        boxes = [detect_face(frame) for frame in frames]
        return smooth_faces([None if b is None else FoundFace(b) for b in boxes]), HAAR
    from gpu_tasks.engines import retinaface

    model = _detector(str(path))
    found: list[FoundFace | None] = []
    for frame in frames:
        faces = retinaface.detect(model, frame, max_side=DETECT_SIDE)
        if not faces:
            found.append(None)
            continue
        face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        x0, y0, x1, y1 = face.box
        height, width = frame.shape[:2]
        box = Box(x1=max(0, round(x0)), y1=max(0, round(y0)), x2=min(width, round(x1)),
                  y2=min(height, round(y1 + (y1 - y0) * FACE_MARGIN)))
        if box.x2 - box.x1 < 8 or box.y2 - box.y1 < 8:
            found.append(None)
            continue
        found.append(FoundFace(box, tuple((float(x), float(y)) for x, y in face.landmarks)))
    return smooth_faces(found), RETINAFACE


@functools.lru_cache(maxsize=1)
def _detector(path: str) -> Any:
    from gpu_tasks.engines import retinaface

    return retinaface.load(path, weights.device())


def smooth_faces(found: list[FoundFace | None]) -> list[FoundFace | None]:
    """The faces with gaps of at most MAX_GAP frames between two detections filled in (linearly),
    and each box and landmark the mean of the detected ones within SMOOTH_RADIUS frames of it;
    frames before the first detection and after the last stay without a face."""
    import numpy as np

    def vector(face: FoundFace) -> Any:
        box = face.box
        points = [c for point in face.landmarks for c in point] if face.landmarks else []
        return np.array([box.x1, box.y1, box.x2, box.y2, *points], dtype=np.float64)

    values: list[Any] = [None if f is None else vector(f) for f in found]
    with_points = [f is not None and f.landmarks is not None for f in found]
    seen = [i for i, v in enumerate(values) if v is not None]
    filled = list(values)
    for a, b in itertools.pairwise(seen):
        if 1 < b - a <= MAX_GAP + 1 and len(values[a]) == len(values[b]):
            for i in range(a + 1, b):
                filled[i] = values[a] + (values[b] - values[a]) * (i - a) / (b - a)
                with_points[i] = with_points[a] and with_points[b]
    out: list[FoundFace | None] = []
    for i, value in enumerate(filled):
        if value is None:
            out.append(None)
            continue
        near = [filled[j] for j in range(max(0, i - SMOOTH_RADIUS), min(len(filled), i + SMOOTH_RADIUS + 1))
                if filled[j] is not None and len(filled[j]) == len(value)]
        mean = np.mean(near, axis=0)
        box = Box(*(round(float(c)) for c in mean[:4]))
        points = tuple((float(mean[k]), float(mean[k + 1])) for k in range(4, len(mean), 2))
        out.append(FoundFace(box, points if with_points[i] and points else None))
    return out


def detect_face(frame: Any) -> Box | None:
    """The largest frontal face in an RGB frame, its box grown down to the chin; None without one."""
    height, width = frame.shape[:2]
    face = largest_face(frame, min_share=0.08, max_side=DETECT_SIDE)
    if face is None:
        return None
    x, y, w, h = face
    return Box(
        x1=max(0, round(x)), y1=max(0, round(y)),
        x2=min(width, round(x + w)), y2=min(height, round(y + h * (1 + CHIN_MARGIN))),
    )  # fmt: skip


def _positional_encoding(length: int, dim: int) -> Any:
    """MuseTalk's sinusoidal encoding of token order (sine on even channels, cosine on odd)."""
    import torch

    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    encoding = torch.zeros(length, dim)
    encoding[:, 0::2] = torch.sin(position * rate)
    encoding[:, 1::2] = torch.cos(position * rate)
    return encoding


def window_before(fps: float) -> int:
    """How many positions a frame's window starts before the frame's own: two frames' worth,
    ceil(50 / fps) positions each, as MuseTalk's inference pads its features (4 at 25 and 30 fps,
    6 at 24 and 23.976, 2 at 50 and 60). The tolerance keeps a rate like 25.0000001 from
    rounding up to the next whole position."""
    return 2 * math.ceil(POSITIONS_PER_S / fps - 1e-6)


def slice_windows(stacked: Any, fps: float, count: int) -> Any:
    """(count, WINDOW, ...) of the (positions, ...) encoder states: frame i's window starts at
    position floor(i * 50 / fps) - window_before(fps), zeros outside the audio. The frame's own
    position comes from the exact rate (MuseTalk's reference truncates it to a whole number first,
    which at 29.97 fps drifts about a second behind by frame 1000)."""
    import torch

    before = window_before(fps)
    padded = torch.cat([stacked.new_zeros(before, *stacked.shape[1:]), stacked,
                        stacked.new_zeros(WINDOW, *stacked.shape[1:])])  # fmt: skip
    starts = [math.floor(index * POSITIONS_PER_S / fps) for index in range(count)]
    return torch.stack([padded[s : s + WINDOW] for s in starts])


def audio_windows(loaded: Loaded, pcm: Any, fps: float, count: int) -> Any:
    """(count, WINDOW x layers, width) audio tokens: for frame i, every encoder hidden state over
    the window around its time, with the positional encoding added."""
    import torch

    states = []
    with torch.inference_mode():
        for start in range(0, len(pcm), SEGMENT_S * WHISPER_RATE):
            mel = loaded.features(
                pcm[start : start + SEGMENT_S * WHISPER_RATE], sampling_rate=WHISPER_RATE, return_tensors="pt"
            ).input_features.to(loaded.device, loaded.dtype)
            hidden = loaded.whisper(mel, output_hidden_states=True).hidden_states
            states.append(torch.stack(hidden, dim=2)[0])  # (positions, layers, width)
    stacked = torch.cat(states)[: math.floor(len(pcm) / WHISPER_RATE * POSITIONS_PER_S)]
    windows = slice_windows(stacked, fps, count)  # (count, WINDOW, layers, width)
    tokens = windows.reshape(count, -1, windows.shape[-1]).float()
    tokens = tokens + _positional_encoding(tokens.shape[1], tokens.shape[2]).to(tokens.device)
    return tokens.to(loaded.dtype)


def face_latents(loaded: Loaded, frame: Any, box: Box) -> Any:
    """(8, 32, 32): the latent of the face with its lower half blacked out, then of the whole face."""
    import cv2
    import torch

    crop = cv2.resize(frame[box.y1 : box.y2, box.x1 : box.x2], (FACE_SIZE, FACE_SIZE),
                      interpolation=cv2.INTER_LANCZOS4)  # fmt: skip
    whole = torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0
    masked = whole.clone()
    masked[:, FACE_SIZE // 2 :, :] = 0.0
    pixels = (torch.stack([masked, whole]) - 0.5) / 0.5
    with torch.inference_mode():
        posterior = loaded.vae.encode(pixels.to(loaded.device, loaded.dtype)).latent_dist
        latents = posterior.mode() * loaded.vae.config.scaling_factor
    return torch.cat([latents[0], latents[1]])


def generate_faces(loaded: Loaded, latents: Any, audio: Any) -> Any:
    """(B, 256, 256, 3) uint8 RGB faces speaking the audio, from (B, 8, 32, 32) latents."""
    import torch

    with torch.inference_mode():
        timestep = torch.zeros(1, dtype=torch.long, device=loaded.device)
        predicted = loaded.unet(latents, timestep, encoder_hidden_states=audio).sample
        images = loaded.vae.decode(predicted / loaded.vae.config.scaling_factor).sample
        images = ((images.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


@functools.lru_cache(maxsize=8)
def _blend_mask(height: int, width: int) -> Any:
    """(H, W, 1) weights of the generated face inside a box: 1 over the mouth and jaw, falling
    smoothly to 0 at the box's edges and above MOUTH_FROM, so no seam shows."""
    import cv2
    import numpy as np

    feather = max(1, round(0.05 * min(height, width)))
    mask = np.zeros((height, width), np.float32)
    mask[round(height * MOUTH_FROM) + feather : height - feather, feather : width - feather] = 1.0
    kernel = 2 * feather + 1
    return cv2.GaussianBlur(mask, (kernel, kernel), 0)[:, :, None]


def paste(frame: Any, face: Any, box: Box) -> None:
    """Blend the generated face into the frame's box, in place; pixels outside the box stay as they are."""
    import cv2
    import numpy as np

    height, width = box.y2 - box.y1, box.x2 - box.x1
    resized = cv2.resize(face, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    region = frame[box.y1 : box.y2, box.x1 : box.x2]
    mask = _blend_mask(height, width)
    region[...] = (resized * mask + region.astype(np.float32) * (1 - mask)).round().astype(np.uint8)


def _restorer() -> Any:
    """GFPGAN from the models folder, or None where its weights are not there."""
    path = weights.models_dir() / RESTORER_FOLDER / RESTORER_FILE
    return _load_restorer(str(path)) if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _load_restorer(path: str) -> Any:
    from gpu_tasks.engines import gfpgan

    return gfpgan.load(path, weights.device())


def aligning_transform(landmarks: tuple[tuple[float, float], ...], side: int) -> Any:
    """The 2x3 similarity transform that puts a face's five landmarks on the FFHQ template of a
    `side` x `side` crop (least squares over rotation, uniform scale and shift)."""
    import cv2
    import numpy as np

    template = np.array(FFHQ_LANDMARKS_512, dtype=np.float32) * (side / 512)
    matrix, _inliers = cv2.estimateAffinePartial2D(np.array(landmarks, dtype=np.float32), template,
                                                    method=cv2.LMEDS)
    return matrix


def restore_faces(restorer: Any, frames: Any, faces: dict[int, FoundFace]) -> None:
    """Each listed frame's face restored by GFPGAN in place, only over its box's soft lower-face
    mask (where the generated mouth is) and only where the aligned crop covers it."""
    import cv2
    import numpy as np

    from gpu_tasks.engines import gfpgan

    side = int(restorer.out_size)
    order = [i for i, face in faces.items() if face.landmarks is not None]
    for start in range(0, len(order), gfpgan.BATCH_SIZE):
        batch = order[start : start + gfpgan.BATCH_SIZE]
        transforms = [aligning_transform(faces[i].landmarks, side) for i in batch]  # type: ignore[arg-type]
        crops = np.stack([
            cv2.warpAffine(frames[i], m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
            for i, m in zip(batch, transforms, strict=True)])
        restored = gfpgan.restore(restorer, crops)
        for i, matrix, face in zip(batch, transforms, restored, strict=True):
            box = faces[i].box
            height, width = box.y2 - box.y1, box.x2 - box.x1
            back = cv2.invertAffineTransform(matrix)
            back[:, 2] -= (box.x1, box.y1)  # into the box's own coordinates
            region = frames[i][box.y1 : box.y2, box.x1 : box.x2]
            drawn = cv2.warpAffine(face, back, (width, height), flags=cv2.INTER_LINEAR)
            covered = cv2.warpAffine(np.ones((side, side), np.float32), back, (width, height))[:, :, None]
            mask = _blend_mask(height, width) * covered
            region[...] = (drawn.astype(np.float32) * mask + region.astype(np.float32) * (1 - mask)).round().astype(
                np.uint8)


def sync(loaded: Loaded, source: Any, audio: Any, ctx: EngineContext) -> tuple[Any, int, str, str]:
    """Output frames (frame i shows source frame min(i, last) speaking audio window i), how many had
    a face, the detector and the restorer that ran; `source` itself is re-drawn when it has exactly
    one frame per window. Too few frames with a face is `face_not_found`."""
    import torch

    seen, detector = find_faces(source)
    found = {index: face.box for index, face in enumerate(seen) if face is not None}
    count = audio.shape[0]
    picks = [min(index, len(source) - 1) for index in range(count)]
    todo = [index for index in range(count) if picks[index] in found]
    if len(todo) < MIN_FACE_SHARE * count:
        raise PermanentGpuError(
            "face_not_found", f"a face was found in {len(todo)} of the {count} frames to sync; at least "
                              f"{MIN_FACE_SHARE:.0%} of them must show one ({detector})")
    # Frames are re-drawn in place unless some are held (then each output frame needs its own copy).
    output = source if count == len(source) else source[picks]
    latents: dict[int, Any] = {}  # per source frame: a held last frame is encoded once
    for start in range(0, len(todo), BATCH_SIZE):
        batch = todo[start : start + BATCH_SIZE]
        for index in batch:
            if picks[index] not in latents:
                latents[picks[index]] = face_latents(loaded, source[picks[index]], found[picks[index]])
        faces = generate_faces(loaded, torch.stack([latents[picks[i]] for i in batch]), audio[batch])
        for index, face in zip(batch, faces, strict=True):
            paste(output[index], face, found[picks[index]])
        ctx.progress(PROGRESS_AUDIO + (PROGRESS_FACES_END - PROGRESS_AUDIO) * (start + len(batch)) / len(todo))
        if ctx.remaining_s() == 0.0:
            raise PermanentGpuError("timeout", "lip sync ran past the job's time limit")
    restorer = _restorer() if detector == RETINAFACE else None
    if restorer is not None:
        marked = {i: seen[picks[i]] for i in todo}
        restore_faces(restorer, output, {i: f for i, f in marked.items() if f is not None and f.landmarks})
    return output, len(todo), detector, GFPGAN if restorer is not None else "none"


def run(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    folders = [weights.weights_path(folder, marker, JOB_TYPE) for folder, marker in COMPONENTS]
    video_path = ctx.input_path(payload.get("video_media"), "video_media")
    audio_path = ctx.input_path(payload.get("audio_media"), "audio_media")
    video_max_s = input_limit_s(payload.get("video_media"))
    audio_max_s = input_limit_s(payload.get("audio_media"))
    fps = video_fps(video_path, "video_media")
    speech = decode_audio(audio_path, WHISPER_RATE, max_s=audio_max_s)
    audio_s = len(speech) / WHISPER_RATE
    if audio_s > MAX_AUDIO_S:
        raise PermanentGpuError("invalid_input", f"audio_media is longer than {MAX_AUDIO_S:g} s")
    count = math.floor(audio_s * fps)
    if count < 1:
        raise PermanentGpuError("invalid_media", "audio_media is shorter than one video frame")
    source = read_frames(video_path, count, max_s=video_max_s)
    ctx.progress(PROGRESS_READ)
    loaded = load(*(str(folder) for folder in folders))
    audio = audio_windows(loaded, speech, fps, count)
    ctx.progress(PROGRESS_AUDIO)
    frames, faces_found, detector, restoration = sync(loaded, source, audio, ctx)
    sound = decode_audio(audio_path, OUTPUT_RATE, max_s=count / fps)
    out = ctx.output_path("video", ".mp4")
    encode.write_mp4(frames, fps, out, audio=sound, sample_rate=OUTPUT_RATE)
    ref = ctx.deliver("video", out, "video/mp4")
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # as write_mp4 stores them
    ref["metadata"] = {
        "model": MODEL, "fps": round(fps, 3), "frames": count, "width": width, "height": height,
        "faces_found": faces_found, "face_size": FACE_SIZE, "face_detector": detector, "restoration": restoration,
    }  # fmt: skip
    ctx.progress(100.0)
    return {
        "outputs": {"video": ref},
        "duration_ms": round(count / fps * 1000),
        "width": width,
        "height": height,
        "fps": round(fps, 3),
        "frames": count,
        "faces_found": faces_found,
        "face_detector": detector,
        "restoration": restoration,
        "model": MODEL,
    }
