"""Face embeddings for likeness checks: RetinaFace finds a face and its five landmarks, the face is
aligned to 112x112 and SFace turns it into a 128-d unit vector; two faces of one person have a
high cosine similarity.

Detection: the repo's RetinaFace (MobileNet-0.25, `retinaface.py`), the file lip sync downloads
(`lip_sync.DETECTOR_FOLDER`), searched at most DETECT_SIDE pixels on the frame's long side. A face
scoring under DETECT_THRESHOLD (0.9, where lip sync takes 0.6: a consent is judged only on faces the
detector is sure of, and a doubtful one costs a retake, not a false match) or smaller than
MIN_FACE_SIDE pixels across (too little of it survives alignment to be compared) is not used.

Alignment: the similarity transform (rotation, uniform scale, translation) that best maps the five
landmarks onto the ArcFace 112x112 template (`ALIGNED_LANDMARKS`, the points OpenCV's
`FaceRecognizerSF.alignCrop` maps them to), the least-squares fit over all five as OpenCV's is,
estimated by `cv2.estimateAffinePartial2D` and applied by `cv2.warpAffine` (bilinear, borders black).

Embedding: SFace (Yaoyao Zhong, "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face
Recognition"; a MobileFaceNet trained on that loss), `face_recognition_sface_2021dec.onnx` from
opencv_zoo (`models/face_recognition_sface`, Apache-2.0: "All files in this directory are licensed
under Apache 2.0 License"; 38,696,353 bytes, SHA-256 0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79
per its Git LFS pointer), run with onnxruntime on the CPU. Its input is the aligned face as
(N, 3, 112, 112) float32 RGB in 0..255 with no mean or scale (what `FaceRecognizerSF.feature`
feeds it: `blobFromImage(face, 1, (112, 112), (0, 0, 0), swapRB=True)` of a BGR crop), its output
(N, 128); the vectors are L2-normalised here, so a cosine is a dot product. Faces are run one at a
time: the published graph's batch dimension is fixed at 1.

Threshold: DEFAULT_THRESHOLD is upstream's cosine threshold for SFace, 0.363 (opencv_zoo's
`sface.py`, `_threshold_cosine`; OpenCV's face tutorial gives it with 99.60 % on LFW). It is
upstream's figure, not calibrated here: no face data set is on this machine.
`bench/face_threshold.py` measures false accepts and rejects over LFW pairs where weights and data
are present.

ArcFace and insightface's other trained weights are not used: their licence is non-commercial.
SFace's file is Apache-2.0, but upstream's training recipes (zhongyy/SFace) use CASIA-WebFace,
VGGFace2 or MS1MV2, face data sets distributed for research, and which one trained this file is not
stated: a deployment's legal review weighs that, as it would for any face model trained on them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_tasks.engines import weights
from gpu_tasks.engines.lip_sync import DETECTOR_FILE, DETECTOR_FOLDER
from gpu_tasks.engines.lip_sync import REPOS as LIP_SYNC_REPOS
from gpu_tasks.engines.weights import Release
from gpu_tasks.errors import PermanentGpuError

if TYPE_CHECKING:
    import numpy as np

    from gpu_tasks.engines.retinaface import Face

JOB_TYPE = "likeness-consent"
FOLDER, FILE = "sface", "face_recognition_sface_2021dec.onnx"
# opencv_zoo at a fixed commit: the file behind the URL cannot change under the same name.
SFACE_URL = ("https://github.com/opencv/opencv_zoo/raw/966be4cb6eefc2a4f586ed0581bf4bbaa2533070/"
             f"models/face_recognition_sface/{FILE}")
REPOS = {FOLDER: Release(SFACE_URL), DETECTOR_FOLDER: LIP_SYNC_REPOS[DETECTOR_FOLDER]}
MODEL_NAME = "sface-2021dec"
DETECTOR_NAME = "retinaface-mobilenet0.25"

DEFAULT_THRESHOLD = 0.363
EMBEDDING_SIZE = 128
ALIGNED_SIDE = 112
# Where the eyes, the nose tip and the mouth corners (the image's left one of each pair first) lie
# in an aligned 112x112 face.
ALIGNED_LANDMARKS = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
                     (41.5493, 92.3655), (70.7299, 92.2041))
DETECT_SIDE = 640
DETECT_THRESHOLD = 0.9
MIN_FACE_SIDE = 32  # pixels of the frame, on the box's shorter side


@dataclass(frozen=True)
class Embedder:
    """The loaded detector and embedding network."""

    detector: Any  # retinaface.RetinaFace
    session: Any  # onnxruntime.InferenceSession
    input_name: str


def load() -> Embedder:
    """RetinaFace and SFace from the models folder; `model_unavailable` when either is missing or unusable."""
    sface = weights.weights_path(FOLDER, FILE, JOB_TYPE) / FILE
    detector = weights.weights_path(DETECTOR_FOLDER, DETECTOR_FILE, JOB_TYPE) / DETECTOR_FILE
    return _load(str(detector), str(sface))


@functools.lru_cache(maxsize=1)
def _load(detector_path: str, sface_path: str) -> Embedder:
    from gpu_tasks.engines import retinaface

    session = _session(Path(sface_path))
    return Embedder(retinaface.load(detector_path, "cpu"), session, session.get_inputs()[0].name)


def _session(path: Path) -> Any:
    """An onnxruntime session of the network at `path`, checked to take one (N, 3, 112, 112) input and
    give (N, 128): another model's file is refused before it embeds anything."""
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    # onnxruntime's own exceptions derive from Exception alone: the ones a bad file raises.
    unreadable = (ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.NoSuchFile, ort_errors.InvalidProtobuf,
                  ort_errors.InvalidGraph, ort_errors.NotImplemented, ort_errors.RuntimeException, OSError)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # a worker's CPU is shared; one face at a time is milliseconds
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except unreadable as exc:
        raise PermanentGpuError("model_unavailable", f"SFace weights unusable: {type(exc).__name__}") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if (len(inputs) != 1 or list(inputs[0].shape)[1:] != [3, ALIGNED_SIDE, ALIGNED_SIDE]
            or not outputs or list(outputs[0].shape)[-1:] != [EMBEDDING_SIZE]):
        raise PermanentGpuError("model_unavailable", "SFace weights unusable: not a 112x112 -> 128 network")
    return session


def detect(embedder: Embedder, frame_rgb: np.ndarray) -> list[Face]:
    """The usable faces of an (H, W, 3) uint8 RGB frame, largest first."""
    from gpu_tasks.engines import retinaface

    found = retinaface.detect(embedder.detector, frame_rgb, threshold=DETECT_THRESHOLD, max_side=DETECT_SIDE)
    usable = [f for f in found if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= MIN_FACE_SIDE]
    return sorted(usable, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)


def alignment(landmarks: Sequence[tuple[float, float]]) -> np.ndarray:
    """The 2x3 similarity transform that maps the five landmarks onto ALIGNED_LANDMARKS with the least
    squared error over all five (what OpenCV's `FaceRecognizerSF.alignCrop` computes, by Umeyama's
    method): RANSAC with a threshold no point misses keeps all five, and the refinement that follows
    is that least-squares fit. (LMEDS would fit a subset and move the crop by pixels.) Landmarks
    that fix no transform (all in one point) are `invalid_media`."""
    import cv2
    import numpy as np

    source = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    target = np.asarray(ALIGNED_LANDMARKS, dtype=np.float32)
    matrix, _inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=1e6,
                                                   refineIters=50)
    if matrix is None or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:, :2])) < 1e-12:
        raise PermanentGpuError("invalid_media", "a face's landmarks cannot be aligned")
    aligned: np.ndarray = matrix
    return aligned


def align(frame_rgb: np.ndarray, landmarks: Sequence[tuple[float, float]]) -> np.ndarray:
    """The face with these five landmarks as a (112, 112, 3) uint8 crop, aligned by `alignment`."""
    import cv2

    matrix = alignment(landmarks)
    crop: np.ndarray = cv2.warpAffine(frame_rgb, matrix, (ALIGNED_SIDE, ALIGNED_SIDE), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop


def embed_faces(embedder: Embedder, crops: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 128) float32 unit vectors of N aligned (112, 112, 3) uint8 RGB crops."""
    import numpy as np

    vectors = np.zeros((len(crops), EMBEDDING_SIZE), dtype=np.float32)
    for index, crop in enumerate(crops):
        blob = np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32)
        (output, *_rest) = embedder.session.run(None, {embedder.input_name: blob})
        vectors[index] = np.asarray(output, dtype=np.float32).reshape(-1)[:EMBEDDING_SIZE]
    return normalise(vectors)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1; a row that is all zeros, or not finite, is `invalid_result`."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.isfinite(vectors).all() or (norms <= 1e-12).any():
        raise PermanentGpuError("invalid_result", "the face embedding is not a direction")
    normed: np.ndarray = (vectors / norms).astype(np.float32)
    return normed


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The cosine similarity of two unit vectors, clipped to -1..1 against float rounding."""
    import numpy as np

    return float(np.clip(np.dot(a, b), -1.0, 1.0))
