"""The likeness-consent engine: the verdict's rule, the frames it reads, the face match, and the
whole engine on a real recording (eSpeak NG speech read by Whisper tiny.en, muxed under frames).

The face models are tiny and random (tests/gpu_tasks/test_face_embed.py builds them): they run the
production path, but cannot tell people apart. Where identity matters, faces are drawn here in two
skin tones (two "people"), a stand-in detector finds them by colour, and the one place the engine
makes an embedding (`face_embed.embed_faces`) answers each person's own vector."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import encode, face_embed, likeness_consent, retinaface, transcription, voice_consent
from gpu_tasks.engines.likeness_consent import face_figures, passes, sampled_frames
from gpu_tasks.engines.retinaface import Face
from gpu_tasks.engines.tts import synthesize, write_wav
from gpu_tasks.errors import PermanentGpuError
from media.consent_phrases import LIKENESS_STATEMENT, phrase_text
from tests.gpu_tasks.helpers import ffmpeg
from tests.gpu_tasks.test_face_embed import build_tiny_detector, build_tiny_sface

ISSUED = ["coffee", "island", "camera", "dragon", "pencil", "station", "mountain", "tiger"]
OTHER = ["chocolate", "village", "monkey", "garage", "teacher", "lemon", "castle", "winter"]
VOICE = "en-us+m5"
# Two people, told apart by the colour of the face drawn for each.
SKIN = {"ann": (220, 180, 150), "bob": (120, 200, 90)}
IDENTITY = {"ann": np.eye(128, dtype=np.float32)[0], "bob": np.eye(128, dtype=np.float32)[1]}
WIDTH, HEIGHT = 320, 240


def draw_face(frame: np.ndarray, who: str, cx: int, cy: int, size: int = 40) -> None:
    import cv2

    cv2.ellipse(frame, (cx, cy), (size, int(size * 1.3)), 0, 0, 360, SKIN[who], -1)
    for side in (-1, 1):
        cv2.circle(frame, (cx + side * int(size * 0.4), cy - int(size * 0.3)), max(2, size // 8), (30, 30, 30), -1)
    cv2.ellipse(frame, (cx, cy + int(size * 0.6)), (int(size * 0.35), int(size * 0.1)), 0, 0, 360, (140, 60, 60), -1)


def frame_of(*people: str) -> np.ndarray:
    """A grey frame with each named person's face, side by side, the first named nearest the camera
    (its face the largest)."""
    frame = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    for index, who in enumerate(people):
        draw_face(frame, who, WIDTH * (index + 1) // (len(people) + 1), HEIGHT // 2, size=44 if index == 0 else 30)
    return frame


def detect_drawn(model: Any, frame: np.ndarray, **kwargs: Any) -> list[Face]:
    """The stand-in detector: each blob of a known skin colour is a face, with landmarks where they are drawn."""
    import cv2

    faces = []
    for colour in SKIN.values():
        mask = (np.abs(frame.astype(np.int16) - colour).max(axis=-1) <= 30).astype(np.uint8)
        count, _labels, stats, _centres = cv2.connectedComponentsWithStats(mask)
        for x, y, w, h, area in stats[1:count]:
            if area < 300:
                continue
            cx, cy, size = x + w / 2, y + h / 2, w / 2
            marks = ((cx - 0.4 * size, cy - 0.3 * size), (cx + 0.4 * size, cy - 0.3 * size), (cx, cy),
                     (cx - 0.3 * size, cy + 0.6 * size), (cx + 0.3 * size, cy + 0.6 * size))
            faces.append(Face((float(x), float(y), float(x + w), float(y + h)), 0.99, marks))
    return faces


def embed_by_skin(embedder: Any, crops: Any) -> np.ndarray:
    """Each aligned crop's person, by the skin colour at its nose: that person's vector."""
    vectors = []
    for crop in crops:
        nose = crop[72, 56].astype(np.int16)
        who = min(SKIN, key=lambda name: int(np.abs(nose - SKIN[name]).max()))
        vectors.append(IDENTITY[who])
    return np.stack(vectors) if vectors else np.zeros((0, 128), dtype=np.float32)


@pytest.fixture(scope="module")
def face_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("likeness-models")
    build_tiny_sface(root)
    build_tiny_detector(root)
    return root


@pytest.fixture(autouse=True)
def models_env(face_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(face_models))


@pytest.fixture
def drawn_people(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The stand-in detector and embeddings; the frames the detector was asked about."""
    asked: list[np.ndarray] = []

    def detect(model: Any, frame: np.ndarray, **kwargs: Any) -> list[Face]:
        asked.append(frame)
        return detect_drawn(model, frame)

    monkeypatch.setattr(retinaface, "detect", detect)
    monkeypatch.setattr(face_embed, "embed_faces", embed_by_skin)
    return asked


def clip(path: Path, frames: list[np.ndarray], fps: float = 16.0) -> Path:
    encode.write_mp4(np.stack(frames), fps, path)
    return path


# The verdict -------------------------------------------------------------------------------------


def figures(challenge_wer: float = 0.0, phrase_wer: float = 0.0, similarity: Any = 0.9,
            recording_faces: Any = 16, subject_faces: Any = 16, *, sync: Any = 0.5, mouth_motion: Any = 0.02,
            frames: Any = 80) -> dict[str, Any]:
    return {"phrase": {"challenge_wer": challenge_wer, "phrase_wer": phrase_wer, "transcript_words": 20},
            "face": {"similarity": similarity, "recording_faces": recording_faces, "subject_faces": subject_faces},
            "liveness": {"sync": sync, "mouth_motion": mouth_motion, "frames": frames}}


@pytest.mark.parametrize(
    ("given", "phrase", "face", "speaking"),
    [
        (figures(), "passed", "passed", "passed"),
        # Each bound is inclusive.
        (figures(0.25, 0.25, 0.363, sync=0.3, mouth_motion=0.002, frames=20), "passed", "passed", "passed"),
        (figures(similarity=0.3629), "passed", "failed", "passed"),
        (figures(similarity=-1.0), "passed", "failed", "passed"),
        (figures(0.375, 0.2), "failed", "passed", "passed"),  # the fresh words misheard
        (figures(0.0, 0.3), "failed", "passed", "passed"),  # the statement left out
        (figures(similarity=None, recording_faces=0), "passed", "failed", "passed"),  # no face on camera
        (figures(similarity=None, subject_faces=0), "passed", "failed", "passed"),  # none in the subject
        (figures(1.0, 1.0, None, 0, 0), "failed", "failed", "passed"),
        (figures(sync=0.2999), "passed", "passed", "failed"),  # a mouth not moving with these words
        (figures(sync=-1.0), "passed", "passed", "failed"),
        (figures(mouth_motion=0.0019), "passed", "passed", "failed"),  # barely moving, however well in step
        (figures(sync=None, mouth_motion=0.0), "passed", "passed", "failed"),  # a still
        (figures(sync=None, frames=0), "passed", "passed", "failed"),  # no face in the frames taken
    ],
)
def test_passes_states_the_rule(given: dict[str, Any], phrase: str, face: str, speaking: str) -> None:
    assert passes(given, face_embed.DEFAULT_THRESHOLD) == {
        "passed": phrase == face == speaking == "passed",
        "checks": {"phrase": phrase, "face": face, "speaking": speaking},
    }  # fmt: skip


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"phrase": figures()["phrase"]},  # no face figures
        {**figures(), "face": [0.9, 16, 16]},
        figures(challenge_wer=float("nan")),
        figures(phrase_wer=1.5),
        figures(similarity=1.5),
        figures(similarity=float("nan")),
        figures(similarity="0.9"),
        figures(similarity=True),
        figures(recording_faces=0),  # a similarity without a face on camera
        figures(subject_faces=0),
        figures(recording_faces=17),
        figures(subject_faces=-1),
        figures(recording_faces=2.0),
        figures(subject_faces=None),
        {key: value for key, value in figures().items() if key != "liveness"},  # no liveness figures
        {**figures(), "liveness": [0.5, 0.02, 80]},
        figures(sync=1.5),
        figures(sync=float("nan")),
        figures(sync="0.5"),
        figures(sync=True),
        figures(mouth_motion=None),
        figures(mouth_motion=-0.01),
        figures(mouth_motion=float("inf")),
        figures(frames=None),
        figures(frames=likeness_consent.SYNC_MAX_FRAMES + 1),
        figures(frames=80.0),
        figures(frames=likeness_consent.SYNC_MIN_PAIRS - 1),  # a sync from fewer frames than it takes
    ],
)
def test_passes_refuses_figures_the_engine_does_not_produce(given: dict[str, Any]) -> None:
    with pytest.raises(PermanentGpuError) as refused:
        passes(given, face_embed.DEFAULT_THRESHOLD)
    assert refused.value.code == "invalid_result"


@pytest.mark.parametrize(
    "liveness",
    ["absent", None, [0.5, 0.02, 80], {"sync": 2.0, "mouth_motion": 0.02, "frames": 80},
     {"sync": 0.5, "mouth_motion": "0.02", "frames": 80}, {"sync": 0.5, "mouth_motion": 1.5, "frames": 80},
     {"sync": 0.5, "mouth_motion": 0.02, "frames": -1}, {"sync": 0.5, "mouth_motion": 0.02, "frames": True}],
)
def test_a_worker_refuses_a_result_without_well_formed_liveness_figures(liveness: Any) -> None:
    """What a GPU container answers is input: the worker's result check (before anything is kept)
    refuses liveness figures the engine does not produce; the engine's own pass through it."""
    from gpu_tasks.results import DATA, OutputPolicy, ResultLimits, check_result

    def checked(result: dict[str, Any]) -> dict[str, Any]:
        return check_result("likeness-consent", result, policy=OutputPolicy(frozenset({DATA})), limits=ResultLimits())

    assert checked(figures()) == figures()
    assert checked(figures(sync=None, mouth_motion=0.0, frames=0)) == figures(sync=None, mouth_motion=0.0, frames=0)
    broken = {**figures(), "liveness": liveness}
    if liveness == "absent":
        del broken["liveness"]
    with pytest.raises(PermanentGpuError) as refused:
        checked(broken)
    assert refused.value.code == "invalid_result"


# The frames read ---------------------------------------------------------------------------------


def numbered_clip(path: Path, count: int, fps: float, step: int = 2) -> Path:
    """`count` flat grey frames, frame i at level step x i (read back to within a level or two)."""
    return clip(path, [np.full((48, 64, 3), step * i, dtype=np.uint8) for i in range(count)], fps)


def numbers(frames: list[np.ndarray], step: int = 2) -> list[int]:
    return [round(float(frame.mean()) / step) for frame in frames]


def test_at_most_sixteen_frames_are_read_spread_over_the_clip(tmp_path: Path) -> None:
    video = numbered_clip(tmp_path / "ten.mp4", 100, 10.0)  # 10 s
    frames = list(sampled_frames(video, "subject_media", max_s=60))
    expected = [int((k + 0.5) * 10 / 16 * 10) for k in range(16)]  # the frame showing at each time
    assert len(frames) == likeness_consent.MAX_FRAMES == 16
    assert all(abs(got - want) <= 1 for got, want in zip(numbers(frames), expected, strict=True)), numbers(frames)


def test_only_the_seconds_allowed_are_read(tmp_path: Path) -> None:
    video = numbered_clip(tmp_path / "ten.mp4", 100, 10.0)
    frames = list(sampled_frames(video, "subject_media", max_s=2.0))
    assert 0 < len(frames) <= 16
    assert max(numbers(frames)) <= 21, "nothing after the first 2 s"


def test_a_jpeg_named_jpg_is_read(tmp_path: Path) -> None:
    """By a .jpg name FFmpeg would pick its image2 demuxer, which the input whitelist refuses: the
    container is chosen from the file's first bytes instead (gpu_tasks.input_policy.forced_format)."""
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(photo)
    assert [f.shape for f in sampled_frames(photo, "subject_media", max_s=300)] == [(240, 320, 3)]


def test_no_more_frames_are_decoded_than_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(likeness_consent, "MAX_DECODED_FRAMES", 10)
    video = numbered_clip(tmp_path / "ten.mp4", 100, 10.0)
    frames = list(sampled_frames(video, "subject_media", max_s=60))
    assert len(frames) > 0 and max(numbers(frames)) <= 9


def test_a_short_clip_gives_each_frame_once(tmp_path: Path) -> None:
    video = numbered_clip(tmp_path / "five.mp4", 5, 25.0, step=40)
    assert numbers(list(sampled_frames(video, "subject_media", max_s=60)), step=40) == [0, 1, 2, 3, 4]


def test_an_image_is_one_frame(tmp_path: Path) -> None:
    image = tmp_path / "face.png"
    from PIL import Image

    Image.fromarray(frame_of("ann")).save(image)
    frames = list(sampled_frames(image, "subject_media", max_s=300))
    assert len(frames) == 1 and np.array_equal(frames[0], frame_of("ann"))


def test_large_frames_are_shrunk_and_rotated_ones_stood_upright(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=1920x1080:rate=10:duration=1", "-pix_fmt", "yuv420p", str(big))
    assert {f.shape for f in sampled_frames(big, "subject_media", max_s=60)} == {(720, 1280, 3)}
    # A phone's portrait video: stored 320x240 with a display rotation of 90 degrees.
    stored = clip(tmp_path / "stored.mp4", [frame_of("ann")] * 10, fps=10)
    portrait = tmp_path / "portrait.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(stored), "-c", "copy", str(portrait))
    frames = list(sampled_frames(portrait, "recording_media", max_s=60))
    assert {f.shape for f in frames} == {(WIDTH, HEIGHT, 3)}
    assert np.abs(frames[0].astype(int) - np.rot90(frame_of("ann")).astype(int)).mean() < 4
    # A photo whose EXIF says to turn it a quarter clockwise.
    from PIL import Image, ImageOps

    photo = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    Image.fromarray(frame_of("ann")).save(photo, exif=exif.tobytes(), quality=95)
    (upright,) = sampled_frames(photo, "subject_media", max_s=300)
    with Image.open(photo) as opened:
        expected = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    assert upright.shape == expected.shape == (WIDTH, HEIGHT, 3)
    assert np.abs(upright.astype(int) - expected.astype(int)).mean() < 4


# The face match (stand-in detector and embeddings) -----------------------------------------------


def match(tmp_path: Path, recording: list[np.ndarray], subject: list[np.ndarray] | np.ndarray,
          offsets: list[float] | None = None) -> dict[str, Any]:
    recording_path = clip(tmp_path / "recording.mp4", recording)
    if isinstance(subject, np.ndarray):
        from PIL import Image

        subject_path = tmp_path / "subject.png"
        Image.fromarray(subject).save(subject_path)
    else:
        subject_path = clip(tmp_path / "subject.mp4", subject)
    return face_figures(face_embed.load(), recording_path, subject_path, recording_s=60, subject_s=300,
                        offsets=offsets)


def face_check(face: dict[str, Any]) -> str:
    return str(passes({**figures(), "face": face}, face_embed.DEFAULT_THRESHOLD)["checks"]["face"])


def pairs(*frames: np.ndarray) -> list[np.ndarray]:
    """32 frames at 16 fps from 16 (each twice): the engine samples one of each pair."""
    assert len(frames) == 16
    return [f for f in frames for _ in range(2)]


def test_the_same_person_matches(tmp_path: Path, drawn_people: list[np.ndarray]) -> None:
    result = match(tmp_path, pairs(*[frame_of("ann")] * 16), frame_of("ann"))
    assert result == {"similarity": pytest.approx(1.0), "recording_faces": 16, "subject_faces": 1}
    assert len(drawn_people) == 17, "16 frames of the recording, the image's one"
    assert face_check(result) == "passed"


def test_another_person_does_not_match(tmp_path: Path, drawn_people: list[np.ndarray]) -> None:
    result = match(tmp_path, pairs(*[frame_of("ann")] * 16), pairs(*[frame_of("bob")] * 16))
    assert result == {"similarity": pytest.approx(0.0), "recording_faces": 16, "subject_faces": 16}
    assert face_check(result) == "failed"


def test_the_largest_face_of_each_subject_frame_counts(tmp_path: Path, drawn_people: list[np.ndarray]) -> None:
    """In the subject, the face nearest the camera is whose a lip sync, performance cloning or gaze
    redirection changes: the person in front of someone else matches, the one behind does not
    (tests/jobs/test_consent_moderation_attacks.py performs the attack). On camera, the reader is
    the face nearest it."""
    assert match(tmp_path, pairs(*[frame_of("ann")] * 16), pairs(*[frame_of("ann", "bob")] * 16))["similarity"] \
        == pytest.approx(1.0)
    assert match(tmp_path, pairs(*[frame_of("ann")] * 16), pairs(*[frame_of("bob", "ann")] * 16))["similarity"] \
        == pytest.approx(0.0)
    assert match(tmp_path, pairs(*[frame_of("ann", "bob")] * 16), frame_of("ann"))["similarity"] == pytest.approx(1.0)
    assert match(tmp_path, pairs(*[frame_of("bob", "ann")] * 16), frame_of("ann"))["similarity"] == pytest.approx(0.0)


def test_a_few_frames_of_someone_else_do_not_move_the_recordings_face(
    tmp_path: Path, drawn_people: list[np.ndarray]
) -> None:
    """Someone walking past the camera in 7 of the 16 frames (the largest face there): the median keeps the reader."""
    recording = pairs(*[frame_of("ann")] * 9, *[frame_of("bob")] * 7)
    assert match(tmp_path, recording, frame_of("ann"))["similarity"] == pytest.approx(1.0)
    assert match(tmp_path, recording, frame_of("bob"))["similarity"] == pytest.approx(0.0)


def test_a_subject_who_is_mostly_someone_else_does_not_match(tmp_path: Path, drawn_people: list[np.ndarray]) -> None:
    subject = pairs(*[frame_of("ann")] * 3, *[frame_of("bob")] * 13)
    assert match(tmp_path, pairs(*[frame_of("ann")] * 16), subject)["similarity"] == pytest.approx(0.0)
    # Frames without a face do not count against it: the person in 3 frames, nobody in the rest.
    empty = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    sparse = match(tmp_path, pairs(*[frame_of("ann")] * 16), pairs(*[frame_of("ann")] * 3, *[empty] * 13))
    assert sparse == {"similarity": pytest.approx(1.0), "recording_faces": 16, "subject_faces": 3}


def test_the_subjects_face_must_be_the_readers_in_every_frame_sampled_but_one(
        tmp_path: Path, drawn_people: list[np.ndarray]) -> None:
    recording = pairs(*[frame_of("ann")] * 16)
    once = pairs(*[frame_of("ann")] * 15, frame_of("bob"))  # a turned or blurred face: one frame off
    assert match(tmp_path, recording, once)["similarity"] == pytest.approx(1.0)
    twice = pairs(*[frame_of("ann")] * 7, frame_of("bob"), *[frame_of("ann")] * 7, frame_of("bob"))
    assert face_check(match(tmp_path, recording, twice)) == "failed"


def test_the_server_says_where_in_each_stretch_the_subject_is_sampled(
        tmp_path: Path, drawn_people: list[np.ndarray]) -> None:
    """32 frames at 16 fps, Bob in the first of each pair and Ann in the second: at the stretches'
    middles only Ann is seen; at the offsets the server drew for the verification, Bob is too."""
    recording = pairs(*[frame_of("ann")] * 16)
    subject = [frame for _ in range(16) for frame in (frame_of("bob"), frame_of("ann"))]
    assert face_check(match(tmp_path, recording, subject)) == "passed"
    drawn = [float(x) for x in np.random.default_rng(7).random(16)]
    assert face_check(match(tmp_path, recording, subject, offsets=drawn)) == "failed"
    for wrong in ([0.5] * 15, [0.5] * 15 + [1.0], [0.5] * 15 + ["0.1"], [0.5] * 15 + [1], "x"):
        with pytest.raises(PermanentGpuError):
            likeness_consent._offsets({"sample_offsets": wrong})
    assert likeness_consent._offsets({}) is None


def test_no_face_on_either_side_is_no_similarity(tmp_path: Path, drawn_people: list[np.ndarray]) -> None:
    empty = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    assert match(tmp_path, pairs(*[empty] * 16), frame_of("ann")) == {
        "similarity": None, "recording_faces": 0, "subject_faces": 1}
    assert match(tmp_path, pairs(*[frame_of("ann")] * 16), empty) == {
        "similarity": None, "recording_faces": 16, "subject_faces": 0}


# The whole engine --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def readings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The face as a picture, and recordings of it: a lossless video of that picture (every frame
    exactly its pixels) with the right phrase read aloud, one with another challenge's words, one
    with no sound."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("likeness")
    picture = folder / "ann.png"
    Image.fromarray(frame_of("ann")).save(picture)
    made: dict[str, Path] = {"picture": picture}
    for name, words in (("right", ISSUED), ("other_words", OTHER)):
        pcm, rate = synthesize(phrase_text(words, LIKENESS_STATEMENT), speed=0.9, voice=VOICE)
        write_wav(folder / f"{name}.wav", pcm, rate)
        made[name] = folder / f"{name}.mkv"
        ffmpeg("-loop", "1", "-framerate", "10", "-i", str(picture), "-i", str(folder / f"{name}.wav"), "-shortest",
               "-c:v", "ffv1", "-pix_fmt", "bgr0", "-c:a", "flac", str(made[name]))  # fmt: skip
    made["mute"] = folder / "mute.mkv"
    ffmpeg("-loop", "1", "-framerate", "10", "-i", str(picture), "-t", "2", "-c:v", "ffv1", "-pix_fmt", "bgr0",
           str(made["mute"]))  # fmt: skip
    return made


def payload(recording: Path, subject: Path, **overrides: Any) -> dict[str, Any]:
    return {"recording_media": {"path": str(recording)}, "subject_media": {"path": str(subject)},
            "phrase_words": ISSUED, "statement": LIKENESS_STATEMENT, **overrides}  # fmt: skip


def verify(tmp_path: Path, body: Mapping[str, Any]) -> dict[str, Any]:
    return likeness_consent.run_local(body, EngineContext(workdir=tmp_path / "work", payload=body))


def test_the_phrase_and_the_face_pass_on_the_production_path(
    tmp_path: Path, readings: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real speech and Whisper; RetinaFace and SFace as the engine loads them, with random weights
    (the detector's score threshold lowered so that they find "faces"): the picture the recording
    shows, given as the subject, is the same face at similarity 1. The recording is that picture,
    still: nobody on camera speaks, and the speaking check fails (tests/jobs/
    test_consent_moderation_attacks.py performs the attack; a face that speaks passes below)."""
    monkeypatch.setattr(face_embed, "DETECT_THRESHOLD", 0.0)
    progress: list[float] = []
    body = payload(readings["right"], readings["picture"])
    result = likeness_consent.run_local(body, EngineContext(workdir=tmp_path, payload=body, progress=progress.append))
    assert set(result) == {"phrase", "face", "liveness", "models"}
    assert set(result["phrase"]) == {"challenge_wer", "phrase_wer", "transcript_words"}
    assert result["phrase"]["transcript_words"] >= len(ISSUED)
    assert result["face"]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert 1 <= result["face"]["recording_faces"] <= 16 and result["face"]["subject_faces"] == 1
    assert result["models"] == {"transcription": transcription.MODEL_NAME, "face_detector": face_embed.DETECTOR_NAME,
                                "face_embedding": face_embed.MODEL_NAME}
    # No word of the transcript and no face's vector leaves the engine: numbers and names only.
    assert all(isinstance(v, int | float) for v in result["phrase"].values())
    # Ten frames a second of the reading (a little over 8 s), a face in each, not a pixel moving.
    assert result["liveness"]["sync"] is None and result["liveness"]["mouth_motion"] == 0.0
    assert 60 <= result["liveness"]["frames"] <= 120
    assert passes(result, face_embed.DEFAULT_THRESHOLD) == {
        "passed": False, "checks": {"phrase": "passed", "face": "passed", "speaking": "failed"}}, result
    assert progress and progress == sorted(progress)


def test_another_challenges_words_fail_the_phrase_and_another_face_the_face(
    tmp_path: Path, readings: dict[str, Path], drawn_people: list[np.ndarray]
) -> None:
    bob = tmp_path / "bob.jpg"  # a photo, as a phone names it
    from PIL import Image

    Image.fromarray(frame_of("bob")).save(bob, quality=95)
    result = verify(tmp_path, payload(readings["other_words"], bob))
    assert result["phrase"]["challenge_wer"] >= 0.75, result
    assert passes(result, face_embed.DEFAULT_THRESHOLD) == {
        "passed": False, "checks": {"phrase": "failed", "face": "failed", "speaking": "failed"}}, result
    # The face check's frames, and at most SYNC_MAX_FRAMES for the speaking check.
    assert len(drawn_people) <= 2 * likeness_consent.MAX_FRAMES + likeness_consent.SYNC_MAX_FRAMES


def test_a_recording_without_sound_is_invalid_media(tmp_path: Path, readings: dict[str, Path]) -> None:
    with pytest.raises(PermanentGpuError) as refused:
        verify(tmp_path, payload(readings["mute"], readings["picture"]))
    assert refused.value.code == "invalid_media"


def test_a_recording_without_pictures_is_invalid_media(tmp_path: Path, readings: dict[str, Path]) -> None:
    """Sound alone is no recording of a face."""
    with pytest.raises(PermanentGpuError) as refused:
        verify(tmp_path, payload(readings["right"].with_suffix(".wav"), readings["picture"]))
    assert refused.value.code == "invalid_media"
    assert "recording_media has no video stream" in refused.value.message


@pytest.mark.parametrize(
    "overrides",
    [{"phrase_words": ISSUED[:7]}, {"phrase_words": [*ISSUED[:7], "Taxi"]}, {"statement": None}, {"statement": "!!!"}],
)
def test_a_malformed_challenge_is_invalid_input_before_any_media_is_read(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    missing = tmp_path / "never-read.mp4"
    with pytest.raises(PermanentGpuError) as refused:
        verify(tmp_path, payload(missing, missing, **overrides))
    assert refused.value.code == "invalid_input"


def test_missing_face_weights_are_model_unavailable_before_any_media_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(tmp_path / "empty"))
    missing = tmp_path / "never-read.mp4"
    with pytest.raises(PermanentGpuError) as refused:
        verify(tmp_path, payload(missing, missing))
    assert refused.value.code == "model_unavailable"


def test_the_recording_is_bounded_as_voice_consents_is() -> None:
    assert likeness_consent.MEDIA_LIMITS["recording_media"].max_seconds == voice_consent.MAX_RECORDING_S
    assert likeness_consent._read_limit({"path": "x", "max_duration_ms": 5000}, likeness_consent.MAX_SUBJECT_S) == 5
    assert likeness_consent._read_limit({"path": "x"}, likeness_consent.MAX_SUBJECT_S) == likeness_consent.MAX_SUBJECT_S


# Speaking: the face on camera says the words (stand-in detector; decoding, alignment and correlation
# are the engine's) -------------------------------------------------------------------------------

SPEAKING_FPS = 25.0
FOX = "The quick brown fox jumps over the lazy dog near the river bank. Then it slept all afternoon."


def speech_of(text: str) -> tuple[np.ndarray, int]:
    pcm, rate = synthesize(text, speed=0.9, voice=VOICE)
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0, rate


def loudness(audio: np.ndarray, rate: int, count: int) -> np.ndarray:
    """(count,) the RMS of `audio` over each frame of a SPEAKING_FPS video, 1 at the loudest, 0 past its end."""
    hop = rate / SPEAKING_FPS
    levels = np.array([np.sqrt(np.mean(np.square(piece))) if len(piece := audio[int(i * hop):int((i + 1) * hop)])
                       else 0.0 for i in range(count)])
    return levels / levels.max()


def talking_face(opening: float, drop: int = 0, who: str = "ann") -> np.ndarray:
    """Ann's face (or `who`'s), `drop` pixels lower, the mouth open by `opening` (0 closed, 1 wide):
    drawn over the closed one of `frame_of`, as tall as 0.3 of the face's half-width at 1."""
    import cv2

    frame = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    cx, cy, size = WIDTH // 2, HEIGHT // 2 + drop, 44
    draw_face(frame, who, cx, cy, size)
    cv2.ellipse(frame, (cx, cy + int(size * 0.6)), (int(size * 0.35), max(1, round(size * 0.3 * opening))), 0, 0,
                360, (140, 60, 60), -1)
    return frame


@pytest.fixture(scope="module")
def speaking(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Recordings with the issued phrase read aloud (eSpeak NG) under Ann's drawn face at 25 fps:
    her mouth opening with the loudness of those words; the same face still; her mouth following
    another utterance's loudness; her head bobbing with the words' loudness, mouth shut; Bob saying
    the words, and Ann's still face only around the 16 moments the face check samples."""
    folder = tmp_path_factory.mktemp("speaking")
    words, rate = speech_of(phrase_text(ISSUED, LIKENESS_STATEMENT))
    other, _ = speech_of(FOX)
    count = int(len(words) / rate * SPEAKING_FPS)
    said, unsaid = loudness(words, rate, count), loudness(other, rate, count)
    # The frames around each moment the face check samples ((k + 0.5) / 16 of the length).
    sampled = {round((k + 0.5) * count / likeness_consent.MAX_FRAMES) + shift
               for k in range(likeness_consent.MAX_FRAMES) for shift in (-1, 0, 1)}
    pictures = {
        "speaking": [talking_face(level) for level in said],
        "stand_in": [talking_face(0.0) if index in sampled else talking_face(level, who="bob")
                     for index, level in enumerate(said)],
        "still": [talking_face(0.0)] * count,
        "other_mouth": [talking_face(level) for level in unsaid],
        "nodding": [talking_face(0.0, drop=round(8 * level)) for level in said],
    }
    made = {}
    for name, frames in pictures.items():
        made[name] = folder / f"{name}.mp4"
        encode.write_mp4(np.stack(frames), SPEAKING_FPS, made[name], audio=words, sample_rate=rate)
    return made


def speaking_check(recording: Path) -> tuple[str, dict[str, Any]]:
    """The speaking check's verdict on `recording` (the phrase and face figures passing), and its figures."""
    from gpu_tasks.engines.media import decode_audio

    speech = decode_audio(recording, likeness_consent.SAMPLE_RATE, max_s=60)
    embedder = face_embed.load()
    reference, _found = likeness_consent.recording_reference(embedder, recording, recording_s=60)
    liveness = likeness_consent.liveness_figures(embedder, recording, speech, recording_s=60, reference=reference)
    verdict = passes({**figures(), "liveness": liveness}, face_embed.DEFAULT_THRESHOLD)
    return str(verdict["checks"]["speaking"]), liveness


def test_a_face_whose_mouth_moves_with_the_words_is_speaking(
    speaking: dict[str, Path], drawn_people: list[np.ndarray]
) -> None:
    state, liveness = speaking_check(speaking["speaking"])
    assert state == "passed", liveness
    assert liveness["sync"] >= likeness_consent.MIN_SYNC and liveness["mouth_motion"] >= 0.01
    # Ten frames a second of a reading a little over 8 s long: her face in every one (and in the
    # face check's 16).
    assert 80 <= liveness["frames"] <= 90 and len(drawn_people) == 16 + liveness["frames"]


@pytest.mark.parametrize(
    "recording",
    [
        "still",  # a photo of the person with the words dubbed over
        "other_mouth",  # a video of the person saying something else, dubbed over
        "nodding",  # a face moving in step with the words, its mouth shut
    ],
)
def test_a_face_that_does_not_say_the_words_is_not_speaking(
    speaking: dict[str, Path], drawn_people: list[np.ndarray], recording: str
) -> None:
    state, liveness = speaking_check(speaking[recording])
    assert state == "failed", liveness
    assert liveness["frames"] >= 80, "the face was seen: the check failed on its mouth"
    if recording == "still":
        assert liveness == {"sync": None, "mouth_motion": 0.0, "frames": liveness["frames"]}


def test_someone_else_speaking_between_the_moments_the_face_check_samples_is_not_the_person_speaking(
    tmp_path: Path, speaking: dict[str, Path], drawn_people: list[np.ndarray]
) -> None:
    """The face check's 16 moments are fixed by the recording's length: Ann's photo shows around each,
    Bob reads the phrase on camera the rest of the time. The face check sees Ann only; the speaking
    check counts a frame only where the face is the recording's (Ann's), and she never speaks. (Were
    every face to count, Bob's reading would pass: sync 0.44 on this recording.)"""
    from PIL import Image

    ann = tmp_path / "ann.png"
    Image.fromarray(frame_of("ann")).save(ann)
    face = face_figures(face_embed.load(), speaking["stand_in"], ann, recording_s=60, subject_s=300)
    assert face_check(face) == "passed" and face["recording_faces"] == 16
    state, liveness = speaking_check(speaking["stand_in"])
    assert state == "failed" and liveness["sync"] is None, liveness
    assert 0 < liveness["frames"] < likeness_consent.SYNC_MIN_SHARE * 80, "Ann's frames only"


def test_a_face_speaking_the_phrase_passes_every_check(
    tmp_path: Path, speaking: dict[str, Path], readings: dict[str, Path], drawn_people: list[np.ndarray]
) -> None:
    """The whole engine: Whisper hears the phrase, the face on camera is the subject's, and it speaks."""
    result = verify(tmp_path, payload(speaking["speaking"], readings["picture"]))
    assert passes(result, face_embed.DEFAULT_THRESHOLD) == {
        "passed": True, "checks": {"phrase": "passed", "face": "passed", "speaking": "passed"}}, result


def test_a_recording_is_looked_at_ten_times_a_second_within_its_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The n-th frame taken is the picture on screen at n/10 s (each of a 25 fps video's frames shows
    0.04 s); `most` and `max_s` bound them, and MAX_DECODED_FRAMES the decoding."""
    video = numbered_clip(tmp_path / "four.mp4", 100, 25.0)  # 4 s

    def taken(**bounds: Any) -> list[int]:
        frames = likeness_consent.frames_at_rate(video, "recording_media", fps=10.0, **bounds)
        return numbers([likeness_consent._upright(frame) for frame in frames])

    expected = [int(k * 2.5) for k in range(40)]
    got = taken(max_s=60, most=600)
    assert len(got) == 41 and all(abs(a - b) <= 1 for a, b in zip(got, [*expected, 99], strict=True)), got
    assert taken(max_s=60, most=12) == got[:12]
    assert taken(max_s=1.0, most=600) == got[:10]
    monkeypatch.setattr(likeness_consent, "MAX_DECODED_FRAMES", 10)
    assert max(taken(max_s=60, most=600)) <= 9

