"""Likeness consent verification: did the person on camera read the issued phrase, and is theirs the
face in the media a consent is to cover?

Payload: `{"recording_media": input_ref (a video with sound: the person reading the phrase on
camera), "subject_media": input_ref (a video or an image showing the face to be covered),
"phrase_words": [8 words], "statement": str}`.
Result: `{"phrase": {"challenge_wer", "phrase_wer", "transcript_words"}, "face": {"similarity":
float | None, "recording_faces": int, "subject_faces": int}, "models": {"transcription",
"face_detector", "face_embedding"}}`. Neither the transcript nor a face's vector leaves the engine.

Phrase: the recording's audio track goes through voice consent's phrase check as it is
(`voice_consent.heard_words`, `phrase_figures`: Whisper tiny.en, unprompted; the same WER rule).

Face (`face_embed`: RetinaFace, five-point alignment, SFace unit vectors):
- the recording: at most MAX_FRAMES frames spread evenly over its first MAX_RECORDING_S seconds;
  in each, the largest face; the reference is the median of their vectors (element by element,
  made unit length again), so a few frames of someone else walking past do not move it;
- the subject: at most MAX_FRAMES frames spread over its first MAX_SUBJECT_S seconds (the one
  frame of an image); in each, the largest face is compared with the reference: the face that lip
  sync, performance cloning and gaze redirection work on is the largest one (gpu_tasks.engines.faces
  `largest_face`), so a consent must be the person's whose face that is. A subject whose person
  stands behind someone else does not pass: the one in front is whose face a job would change.
  `similarity` is the median of those per-frame similarities;
- `recording_faces` and `subject_faces` count the sampled frames in which a face was found.
  No face in either: `similarity` is None, and the face check fails.
`passes` holds the rule: the phrase as voice consent's, the face when `similarity` is at least
the caller's threshold (`face_embed.DEFAULT_THRESHOLD` unless configured).

Frames are read with their display rotation applied (a phone's portrait video is stored sideways;
FFmpeg gives a JPEG's EXIF orientation the same way) and shrunk to at most MAX_FRAME_SIDE on the
long side before anything else: the work is at most 2 x MAX_FRAMES detections and embeddings per
call, whatever the files hold, and the decoding stops at the seconds above (or the input's priced
length) or MAX_DECODED_FRAMES.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_tasks.contract import EngineContext, input_limit_s
from gpu_tasks.engines import face_embed, voice_consent
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import MediaLimit

if TYPE_CHECKING:
    import numpy as np

MAX_RECORDING_S = voice_consent.MAX_RECORDING_S
MAX_SUBJECT_S = 300
MAX_FRAMES = 16
MAX_FRAME_SIDE = 1280
# The most frames decoded to find the sampled ones (300 s at 120 fps): a file whose timestamps never
# advance (crafted) would otherwise be decoded to its end.
MAX_DECODED_FRAMES = 36_000
SAMPLE_RATE = voice_consent.SAMPLE_RATE
MEDIA_LIMITS = {"recording_media": MediaLimit(max_seconds=MAX_RECORDING_S)}
REPOS = face_embed.REPOS  # what `download_models likeness-consent` puts in the models folder


def _read_limit(ref: Any, most: float) -> float:
    priced = input_limit_s(ref)
    return most if priced is None else min(priced, most)


def sampled_frames(path: Path, name: str, *, max_s: float, count: int = MAX_FRAMES) -> Iterator[np.ndarray]:
    """Up to `count` frames of the video (or image) `path` as upright (H, W, 3) uint8 RGB, at most
    MAX_FRAME_SIDE on the long side, spread evenly over its first `max_s` seconds: at each of `count`
    evenly spaced times, the frame showing then (each frame once, however many times fall in it).
    A file whose length is not known gives its first frame. At most MAX_DECODED_FRAMES are decoded."""
    from gpu_tasks.engines.media import decoded_frames, probe

    span = min(probe(path).duration_s, max_s)
    targets = [span * (index + 0.5) / count for index in range(count)] if span > 0 else [0.0]
    taken = 0
    shown: Any = None  # the frame on screen until the one being read
    first: float | None = None
    for index, frame in enumerate(decoded_frames(path, name, max_s=max_s)):
        if index >= MAX_DECODED_FRAMES:
            break
        first = frame.time if first is None else first
        offset = index / 25.0 if frame.time is None or first is None else float(frame.time - first)
        if shown is not None and targets[taken] < offset:
            while taken < len(targets) and targets[taken] < offset:
                taken += 1
            yield _upright(shown)
            if taken == len(targets):
                return
        shown = frame
    if shown is not None:
        yield _upright(shown)  # on screen from its time to the end: the times left fall in it


def _upright(frame: Any) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB at most MAX_FRAME_SIDE long, turned by its display rotation."""
    import numpy as np

    scale = min(1.0, MAX_FRAME_SIDE / max(frame.width, frame.height))
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    rgb: np.ndarray = frame.to_ndarray(format="rgb24", width=width, height=height)
    turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise quarter turns
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def frame_faces(embedder: face_embed.Embedder, frame: np.ndarray, *, most: int) -> np.ndarray:
    """(F, 128) unit vectors of the `most` largest usable faces in `frame`, largest first (F may be 0)."""
    faces = face_embed.detect(embedder, frame)[:most]
    crops = [face_embed.align(frame, face.landmarks) for face in faces]
    # The one place an embedding is made: tests that need faces of known identity replace it here.
    return face_embed.embed_faces(embedder, crops)


def face_figures(embedder: face_embed.Embedder, recording: Path, subject: Path, *, recording_s: float,
                 subject_s: float) -> dict[str, Any]:
    """The face check's figures (the module's docstring)."""
    import numpy as np

    references = [vectors[0] for frame in sampled_frames(recording, "recording_media", max_s=recording_s)
                  if len(vectors := frame_faces(embedder, frame, most=1))]
    reference = face_embed.normalise(np.median(np.stack(references), axis=0)[None])[0] if references else None
    # Each subject frame's largest face: whose face the generative types change (the module's docstring).
    subjects = [vectors[0] for frame in sampled_frames(subject, "subject_media", max_s=subject_s)
                if len(vectors := frame_faces(embedder, frame, most=1))]
    found = [] if reference is None else [face_embed.similarity(reference, vector) for vector in subjects]
    similarity = float(np.median(found)) if found else None
    return {"similarity": similarity, "recording_faces": len(references), "subject_faces": len(subjects)}


def run_local(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    words, statement_words = voice_consent.validate(payload)
    from gpu_tasks.engines import transcription
    from gpu_tasks.engines.media import decode_audio

    embedder = face_embed.load()  # before any media is read: missing weights are the operator's to fix
    recording_ref, subject_ref = payload.get("recording_media"), payload.get("subject_media")
    recording = ctx.input_path(recording_ref, "recording_media")
    subject = ctx.input_path(subject_ref, "subject_media", streams=("video",))
    recording_s = _read_limit(recording_ref, MAX_RECORDING_S)
    # The cheap reads first, so that a recording without sound or pictures fails before Whisper runs.
    speech = decode_audio(recording, SAMPLE_RATE, max_s=recording_s)
    ctx.progress(5.0)
    face = face_figures(embedder, recording, subject, recording_s=recording_s,
                        subject_s=_read_limit(subject_ref, MAX_SUBJECT_S))
    ctx.progress(40.0)
    heard = voice_consent.heard_words(speech)
    return {
        "phrase": voice_consent.phrase_figures(words, statement_words, heard),
        "face": face,
        "models": {"transcription": transcription.MODEL_NAME, "face_detector": face_embed.DETECTOR_NAME,
                   "face_embedding": face_embed.MODEL_NAME},
    }


def _count(face: Mapping[str, Any], name: str) -> int:
    value = face.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FRAMES:
        raise PermanentGpuError("invalid_result", f"the verification's face.{name} is not a frame count")
    return value


def passes(figures: Mapping[str, Any], threshold: float) -> dict[str, Any]:
    """The verdict on a verification's figures (a result of `run_local`): the phrase passes when
    challenge_wer <= MAX_WER and phrase_wer <= MAX_WER (voice consent's rule), the face when its
    similarity is not None and at least `threshold`.

    The figures cross a trust boundary, so they are checked first, and anything the engine does
    not produce is PermanentGpuError("invalid_result"): a WER outside 0..1, a similarity that is
    not a number from -1 to 1 or None, a frame count that is not a whole number from 0 to
    MAX_FRAMES, a similarity without a face on both sides. Nothing malformed ever passes."""
    challenge_wer = voice_consent._figure(figures, "phrase", "challenge_wer", 0.0, 1.0)
    phrase_wer = voice_consent._figure(figures, "phrase", "phrase_wer", 0.0, 1.0)
    face = figures.get("face")
    if not isinstance(face, Mapping):
        raise PermanentGpuError("invalid_result", "the verification has no face figures")
    recording_faces, subject_faces = _count(face, "recording_faces"), _count(face, "subject_faces")
    similarity = face.get("similarity")
    if similarity is not None:
        # A unit vectors' cosine, with room for float rounding; only where both sides showed a face.
        similarity = voice_consent._figure(figures, "face", "similarity", -1.0 - 1e-6, 1.0 + 1e-6)
        if not recording_faces or not subject_faces:
            raise PermanentGpuError("invalid_result", "the verification has a similarity without faces")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise PermanentGpuError("internal", "the likeness threshold is not a number")
    phrase_ok = challenge_wer <= voice_consent.MAX_WER and phrase_wer <= voice_consent.MAX_WER
    face_ok = similarity is not None and similarity >= threshold
    return {
        "passed": phrase_ok and face_ok,
        "checks": {"phrase": "passed" if phrase_ok else "failed", "face": "passed" if face_ok else "failed"},
    }
