"""Likeness consent verification: did the person on camera read the issued phrase, and is theirs the
face in the media a consent is to cover?

Payload: `{"recording_media": input_ref (a video with sound: the person reading the phrase on
camera), "subject_media": input_ref (a video or an image showing the face to be covered),
"phrase_words": [8 words], "statement": str}`.
Result: `{"phrase": {"challenge_wer", "phrase_wer", "transcript_words"}, "face": {"similarity":
float | None, "recording_faces": int, "subject_faces": int}, "liveness": {"sync": float | None,
"mouth_motion": float, "frames": int}, "models": {"transcription", "face_detector",
"face_embedding"}}`. Neither the transcript nor a face's vector or pixels leave the engine.

Phrase: the recording's audio track goes through voice consent's phrase check as it is
(`voice_consent.heard_words`, `phrase_figures`: Whisper tiny.en, unprompted; the same WER rule).

Face (`face_embed`: RetinaFace, five-point alignment, SFace unit vectors):
- the recording: at most MAX_FRAMES frames spread evenly over its first MAX_RECORDING_S seconds;
  in each, the largest face; the reference is the median of their vectors (element by element,
  made unit length again), so a few frames of someone else walking past do not move it;
- the subject: at most MAX_FRAMES frames over its first MAX_SUBJECT_S seconds (the one frame of
  an image), one in each of MAX_FRAMES equal stretches, at the payload's `sample_offsets` of each
  (drawn by the server for each verification, so that nobody knows them; the middles without
  them); in each, the largest face is compared with the reference: the face that lip
  sync, performance cloning and gaze redirection work on is the largest one (gpu_tasks.engines.faces
  `largest_face`), so a consent must be the person's whose face that is. A subject whose person
  stands behind someone else does not pass: the one in front is whose face a job would change.
  `similarity` is the second lowest of those per-frame similarities (the lowest where one frame
  had a face): the person's face must be the one in every frame sampled but one, so a video that
  shows them only at some moments, and someone else between, is not covered;
- `recording_faces` and `subject_faces` count the sampled frames in which a face was found.
  No face in either: `similarity` is None, and the face check fails.
Speaking (`liveness_figures`: is the face on camera the one saying the words?): the phrase and the
face checks alone pass a still photo of anyone with the phrase dubbed over it. The recording's
frames are taken at SYNC_FPS (at most SYNC_MAX_FRAMES, over the seconds the phrase is read from);
in each, the largest face is aligned by its five landmarks and embedded, and counts only when it is
the recording's face (the face check's reference, at face_embed.DEFAULT_THRESHOLD): someone else
speaking between the frames the face check samples does not speak for the person shown there.
Aligned, its mouth and the eyes and nose above it fall in fixed regions (`MOUTH_REGION`,
`UPPER_REGION`) whatever the face's size, place and roll. A pair of consecutive frames with that
face gives the mouth's motion: the mean absolute grey difference of the mouth region less that of the
upper face (what the head's motion, the landmarks' jitter and the codec move everywhere), never
below 0, over 255. The sound's RMS over the same interval gives the envelope. Figures:
`mouth_motion`, the mean of the mouth's motion over the pairs; `sync`, the largest Pearson
correlation of the two series over lags up to SYNC_MAX_LAG_S either way (a microphone and a camera
are not in step to the frame), None when fewer than SYNC_MIN_PAIRS pairs count, either series is
flat, or the recording's face is in fewer than SYNC_MIN_SHARE of the frames taken; `frames`, the
frames taken in which the largest face was the recording's. A still, or a face whose mouth does not
move with these words, fails. It is not anti-spoofing: a deepfake whose lips follow the words passes.

`passes` holds the rule: the phrase as voice consent's, the face when `similarity` is at least
the caller's threshold (`face_embed.DEFAULT_THRESHOLD` unless configured), the speaking when
`mouth_motion` is at least MIN_MOUTH_MOTION and `sync` at least MIN_SYNC.

Frames are read with their display rotation applied (a phone's portrait video is stored sideways;
FFmpeg gives a JPEG's EXIF orientation the same way) and shrunk to at most MAX_FRAME_SIDE on the
long side before anything else: the work is at most 2 x MAX_FRAMES detections and embeddings per
call, whatever the files hold, and the decoding stops at the seconds above (or the input's priced
length) or MAX_DECODED_FRAMES. The speaking check adds at most SYNC_MAX_FRAMES detections and
embeddings and one more decoding of the recording, under the same bounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
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

# The speaking check (the module's docstring). Frames are taken 10 a second: a syllable lasts about
# 0.2 s, so a mouth opening and closing with the words shows in consecutive frames.
SYNC_FPS = 10.0
SYNC_MAX_FRAMES = int(MAX_RECORDING_S * SYNC_FPS)
SYNC_MAX_LAG_S = 0.2
SYNC_MIN_PAIRS = 20  # 2 s of consecutive frames with a face: fewer is too little to correlate
SYNC_MIN_SHARE = 0.5  # of the frames taken, those showing the recording's face: fewer, no sync is measured
# Regions of the aligned 112x112 face (rows, columns), from face_embed.ALIGNED_LANDMARKS: the mouth
# around its corners (y 92, x 41..71) with room to open; the eyes and nose, which speech does not move.
MOUTH_REGION = (slice(76, 112), slice(26, 86))
UPPER_REGION = (slice(36, 76), slice(22, 90))
# The rule's bounds. UNCALIBRATED heuristics: no recordings of real people speaking (or of replayed
# ones) are on this machine. They were chosen on the synthetic cases of
# tests/gpu_tasks/test_likeness_consent.py (a drawn face whose mouth opens with eSpeak NG's speech):
# a mouth following the words read correlates about 0.5 with their envelope, one following another
# utterance's 0.1 to 0.2 (the same statement after other words: 0.2), a still has no sync at all (no
# motion). MIN_SYNC lies between the two; MIN_MOUTH_MOTION is half a grey level of the mouth region,
# above a still's codec noise and far below a mouth that opens (about 0.025 there).
MIN_SYNC = 0.3
MIN_MOUTH_MOTION = 0.002
REPOS = face_embed.REPOS  # what `download_models likeness-consent` puts in the models folder


def _read_limit(ref: Any, most: float) -> float:
    priced = input_limit_s(ref)
    return most if priced is None else min(priced, most)


def sampled_frames(path: Path, name: str, *, max_s: float, count: int = MAX_FRAMES,
                   offsets: Sequence[float] | None = None) -> Iterator[np.ndarray]:
    """Up to `count` frames of the video (or image) `path` as upright (H, W, 3) uint8 RGB, at most
    MAX_FRAME_SIDE on the long side, over its first `max_s` seconds cut in `count` equal stretches:
    in each, the frame showing at its middle, or at `offsets[i]` of the i-th stretch (each frame
    once, however many times fall in it). A file whose length is not known gives its first frame.
    At most MAX_DECODED_FRAMES are decoded."""
    from gpu_tasks.engines.media import decoded_frames, probe

    span = min(probe(path).duration_s, max_s)
    shares = list(offsets) if offsets is not None else [0.5] * count
    targets = [span * (index + shares[index]) / count for index in range(count)] if span > 0 else [0.0]
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


def recording_reference(embedder: face_embed.Embedder, recording: Path, *,
                        recording_s: float) -> tuple[np.ndarray | None, int]:
    """The recording's face (the module's docstring) as a unit vector, None when no frame showed
    one, and how many of the frames sampled showed a face."""
    import numpy as np

    references = [vectors[0] for frame in sampled_frames(recording, "recording_media", max_s=recording_s)
                  if len(vectors := frame_faces(embedder, frame, most=1))]
    reference = face_embed.normalise(np.median(np.stack(references), axis=0)[None])[0] if references else None
    return reference, len(references)


def face_figures(embedder: face_embed.Embedder, recording: Path, subject: Path, *, recording_s: float,
                 subject_s: float, reference: tuple[np.ndarray | None, int] | None = None,
                 offsets: Sequence[float] | None = None) -> dict[str, Any]:
    """The face check's figures (the module's docstring); `reference`: `recording_reference`'s answer,
    where the caller has it; `offsets`: where in each stretch of the subject its frames are taken."""
    vector, found_on_camera = reference or recording_reference(embedder, recording, recording_s=recording_s)
    # Each subject frame's largest face: whose face the generative types change (the module's docstring).
    subjects = [vectors[0] for frame in sampled_frames(subject, "subject_media", max_s=subject_s, offsets=offsets)
                if len(vectors := frame_faces(embedder, frame, most=1))]
    found = sorted(face_embed.similarity(vector, other) for other in subjects) if vector is not None else []
    # The subject's face must be the reader's in every frame sampled but one (a blurred or turned
    # face): a video showing the person only at some moments is not covered.
    similarity = float(found[min(1, len(found) - 1)]) if found else None
    return {"similarity": similarity, "recording_faces": found_on_camera, "subject_faces": len(subjects)}


def frames_at_rate(path: Path, name: str, *, fps: float, max_s: float, most: int) -> Iterator[Any]:
    """The PyAV frame showing at each of the times 0, 1/fps, 2/fps... from the video's first frame, at
    most `most` of them and none `max_s` or more after it: a frame on screen at several of those
    times is given at each (the same object), so the n-th one given is the picture at n/fps. The
    last frame decoded is given once more at most (its own length is not known). At most
    MAX_DECODED_FRAMES are decoded."""
    from gpu_tasks.engines.media import decoded_frames

    taken = 0
    shown: Any = None  # the frame on screen until the one being read
    first: float | None = None
    for index, frame in enumerate(decoded_frames(path, name, max_s=max_s)):
        if index >= MAX_DECODED_FRAMES:
            break
        first = frame.time if first is None else first
        offset = index / 25.0 if frame.time is None or first is None else float(frame.time - first)
        while shown is not None and taken < most and taken / fps < min(offset, max_s):
            yield shown
            taken += 1
        if taken >= most or offset >= max_s:
            return
        shown = frame
    if shown is not None and taken < most and taken / fps < max_s:
        yield shown


def reader_regions(embedder: face_embed.Embedder, frame: np.ndarray,
                   reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The largest face's mouth and upper face (MOUTH_REGION, UPPER_REGION of the face aligned as for
    an embedding) as float32 grey, when it is the recording's face (`reference`, at a similarity of
    at least face_embed.DEFAULT_THRESHOLD); None when the frame shows no usable face or another's."""
    import cv2
    import numpy as np

    faces = face_embed.detect(embedder, frame)
    if not faces or reference is None:
        return None
    crop = face_embed.align(frame, faces[0].landmarks)
    (vector,) = face_embed.embed_faces(embedder, [crop])
    if face_embed.similarity(reference, vector) < face_embed.DEFAULT_THRESHOLD:
        return None
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return grey[MOUTH_REGION], grey[UPPER_REGION]


def speech_envelope(speech: np.ndarray, count: int, fps: float = SYNC_FPS) -> np.ndarray:
    """(count,) the sound's RMS from frame time i-1 to i (i/fps seconds), 0 for the first frame and
    for any time past the end of the sound: the interval over which pair i's motion happened."""
    import numpy as np

    envelope = np.zeros(count, dtype=np.float64)
    for index in range(1, count):
        piece = speech[round((index - 1) / fps * SAMPLE_RATE):round(index / fps * SAMPLE_RATE)]
        envelope[index] = float(np.sqrt(np.mean(np.square(piece, dtype=np.float64)))) if len(piece) else 0.0
    return envelope


def best_correlation(motion: np.ndarray, envelope: np.ndarray, max_lag: int) -> float | None:
    """The largest Pearson correlation of `motion` (NaN where no pair of faces was seen) with `envelope`
    shifted by -max_lag..max_lag frames, over the frames both have; None when no lag has
    SYNC_MIN_PAIRS such frames with both series varying."""
    import numpy as np

    best: float | None = None
    count = len(motion)
    for lag in range(-max_lag, max_lag + 1):
        # motion[i] against envelope[i + lag]: a positive lag, the sound comes later than the picture.
        start, stop = max(0, -lag), min(count, count - lag)
        if stop - start < SYNC_MIN_PAIRS:
            continue
        seen, heard = motion[start:stop], envelope[start + lag:stop + lag]
        kept = np.isfinite(seen)
        if kept.sum() < SYNC_MIN_PAIRS:
            continue
        seen, heard = seen[kept], heard[kept]
        if seen.std() <= 1e-9 or heard.std() <= 1e-12:
            continue
        value = float(np.clip(np.corrcoef(seen, heard)[0, 1], -1.0, 1.0))
        if math.isfinite(value):
            best = value if best is None else max(best, value)
    return best


def liveness_figures(embedder: face_embed.Embedder, recording: Path, speech: np.ndarray, *,
                     recording_s: float, reference: np.ndarray | None) -> dict[str, Any]:
    """The speaking check's figures (the module's docstring): does the mouth of the recording's face
    (`reference`: `recording_reference`'s vector) move with the sound? `speech` is the recording's
    sound at SAMPLE_RATE from its start."""
    import numpy as np

    regions: list[tuple[np.ndarray, np.ndarray] | None] = []
    previous: Any = None
    for frame in frames_at_rate(recording, "recording_media", fps=SYNC_FPS, max_s=recording_s,
                                most=SYNC_MAX_FRAMES):
        # A frame on screen at two of the times is looked at once: the picture did not change.
        regions.append(regions[-1] if frame is previous else reader_regions(embedder, _upright(frame), reference))
        previous = frame
    motion = np.full(len(regions), np.nan)
    for index in range(1, len(regions)):
        now, before = regions[index], regions[index - 1]
        if now is not None and before is not None:
            mouth = float(np.abs(now[0] - before[0]).mean())
            upper = float(np.abs(now[1] - before[1]).mean())
            motion[index] = max(0.0, mouth - upper) / 255.0
    moving = motion[np.isfinite(motion)]
    frames = sum(region is not None for region in regions)
    sync = best_correlation(motion, speech_envelope(speech, len(regions)), round(SYNC_MAX_LAG_S * SYNC_FPS))
    # Someone else speaking between the moments the reader's face shows is not the reader speaking.
    if frames < SYNC_MIN_SHARE * len(regions):
        sync = None
    return {"sync": sync, "mouth_motion": float(moving.mean()) if len(moving) else 0.0, "frames": frames}


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
    reference = recording_reference(embedder, recording, recording_s=recording_s)
    face = face_figures(embedder, recording, subject, recording_s=recording_s,
                        subject_s=_read_limit(subject_ref, MAX_SUBJECT_S), reference=reference,
                        offsets=_offsets(payload))
    ctx.progress(25.0)
    liveness = liveness_figures(embedder, recording, speech, recording_s=recording_s, reference=reference[0])
    ctx.progress(40.0)
    heard = voice_consent.heard_words(speech)
    return {
        "phrase": voice_consent.phrase_figures(words, statement_words, heard),
        "face": face,
        "liveness": liveness,
        "models": {"transcription": transcription.MODEL_NAME, "face_detector": face_embed.DETECTOR_NAME,
                   "face_embedding": face_embed.MODEL_NAME},
    }


def _offsets(payload: Mapping[str, Any]) -> list[float] | None:
    """The payload's `sample_offsets`: MAX_FRAMES fractions in [0, 1), where in each stretch of the
    subject its frames are taken (drawn by the server, so that nobody can know them); None: the
    middles."""
    offsets = payload.get("sample_offsets")
    if offsets is None:
        return None
    if (not isinstance(offsets, list) or len(offsets) != MAX_FRAMES
            or not all(isinstance(x, float) and 0.0 <= x < 1.0 for x in offsets)):
        raise PermanentGpuError("invalid_input", f"sample_offsets: {MAX_FRAMES} fractions from 0 to below 1")
    return offsets


def _count(face: Mapping[str, Any], name: str) -> int:
    value = face.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FRAMES:
        raise PermanentGpuError("invalid_result", f"the verification's face.{name} is not a frame count")
    return value


def _speaking(figures: Mapping[str, Any]) -> bool:
    """Whether the liveness figures pass (MIN_MOUTH_MOTION, MIN_SYNC), checked as `passes` says."""
    liveness = figures.get("liveness")
    if not isinstance(liveness, Mapping):
        raise PermanentGpuError("invalid_result", "the verification has no liveness figures")
    frames = liveness.get("frames")
    if isinstance(frames, bool) or not isinstance(frames, int) or not 0 <= frames <= SYNC_MAX_FRAMES:
        raise PermanentGpuError("invalid_result", "the verification's liveness.frames is not a frame count")
    motion = voice_consent._figure(figures, "liveness", "mouth_motion", 0.0, 1.0)
    sync = liveness.get("sync")
    if sync is None:
        return False
    sync = voice_consent._figure(figures, "liveness", "sync", -1.0 - 1e-6, 1.0 + 1e-6)
    if frames < SYNC_MIN_PAIRS:
        raise PermanentGpuError("invalid_result", "the verification has a sync without the frames to measure it")
    return motion >= MIN_MOUTH_MOTION and sync >= MIN_SYNC


def passes(figures: Mapping[str, Any], threshold: float) -> dict[str, Any]:
    """The verdict on a verification's figures (a result of `run_local`): the phrase passes when
    challenge_wer <= MAX_WER and phrase_wer <= MAX_WER (voice consent's rule), the face when its
    similarity is not None and at least `threshold`, the speaking when mouth_motion is at least
    MIN_MOUTH_MOTION and sync is not None and at least MIN_SYNC.

    The figures cross a trust boundary, so they are checked first, and anything the engine does
    not produce is PermanentGpuError("invalid_result"): a WER outside 0..1, a similarity that is
    not a number from -1 to 1 or None, a frame count that is not a whole number from 0 to
    MAX_FRAMES, a similarity without a face on both sides, liveness figures missing, a sync that
    is not a number from -1 to 1 or None, a mouth_motion that is not one from 0 to 1, a frames
    count that is not a whole number from 0 to SYNC_MAX_FRAMES, a sync from fewer than
    SYNC_MIN_PAIRS frames. Nothing malformed ever passes."""
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
    speaking_ok = _speaking(figures)
    checks = {"phrase": phrase_ok, "face": face_ok, "speaking": speaking_ok}
    return {
        "passed": all(checks.values()),
        "checks": {name: "passed" if ok else "failed" for name, ok in checks.items()},
    }
