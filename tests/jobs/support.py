"""Fixtures and builders shared by the job API tests (no tests here).

Jobs are submitted inside the test's transaction, which is rolled back: the after-commit
publish of the pipeline never runs, so these tests check what the API and the services wrote
(job rows, ledger rows, events) without a worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from auteur.users.models import User
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from jobs import gpu_client
from jobs.models import Job
from jobs.specs import job_spec
from media.models import ConsentChallenge, MediaFile
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from projects.models import Project
from tests.factories import MediaFileFactory, ProjectFactory, likeness_consent_for, pictures_passed
from tests.projects.test_edl_support import clip

START_BALANCE = 1000

LOCAL_TYPES = ("transcription", "tts", "render", "compression")
# The model engines: no weights under the tests' AUTEUR_MODELS_DIR (tests/jobs/test_model_pipeline.py
# puts tiny ones there).
UNAVAILABLE_ON_LOCAL = (
    "lip-sync", "video-generation", "performance-cloning", "gaze-redirection", "audio-generation", "video-query",
    "image-generation",
)

# What each body below costs (media: a 30 s audio, a 90 s video, a 4 s timeline).
PRICE = {
    "transcription": 5,  # 30 s of audio: one started 10 minutes
    "tts": 2,  # 11 characters: one started 1,000
    "lip-sync": 30,  # 90 s of video: two started minutes at 15
    "video-generation": 46,  # the default clip: 23 estimated minutes of A100 time
    "performance-cloning": 40,  # two started minutes at 20
    "gaze-redirection": 20,  # two started minutes at 10
    "audio-generation": 3,  # 10 s: one started 30 s
    "video-query": 2,  # per question
    "render": 2,  # 4 s timeline: one started minute
    "compression": 1,  # 90 s: one started 10 minutes
    "image-generation": 4,  # one image
    "voice-consent": 1,  # per verification
    "likeness-consent": 1,  # per verification
}


def jobs_url(suffix: str = "") -> str:
    return f"/api/v1/jobs{suffix}"


def usage_rows(job_id: Any) -> int:
    return CreditTransaction.objects.filter(job_id=job_id, type="usage").count()


def refund_rows(job_id: Any) -> int:
    return CreditTransaction.objects.filter(job_id=job_id, type="refund").count()


def ledger_state(user: User) -> tuple[int, int, int]:
    """(balance, ledger rows, jobs): equal before and after means nothing was charged or created."""
    return (credit_balance_get(user=user), CreditTransaction.objects.filter(user=user).count(),
            Job.objects.filter(user=user).count())


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


@pytest.fixture(name="gpu_backend")
def gpu_backend_fixture(settings: Any) -> Iterator[Callable[[str], None]]:
    """Switch the configured GPU backend for one test (`noop` runs every type)."""

    def use(name: str) -> None:
        settings.AUTEUR_GPU_BACKEND = name
        gpu_client.reset()

    gpu_client.reset()
    yield use
    gpu_client.reset()  # rebuilt from the restored settings on next use


@pytest.fixture(name="funded")
def funded_fixture(user: User) -> User:
    credit_grant(user=user, amount=START_BALANCE, type="bonus", description="test")
    return user


@pytest.fixture(name="project")
def project_fixture(funded: User) -> Project:
    return ProjectFactory.create(user=funded, name="Film")


@pytest.fixture(name="make_media")
def make_media_fixture(db: None) -> Callable[..., MediaFile]:
    def make(project: Project, type: str = "video", **fields: Any) -> MediaFile:
        return MediaFileFactory.create(project=project, type=type, **fields)

    return make


@pytest.fixture(name="media")
def media_fixture(project: Project, make_media: Callable[..., MediaFile]) -> dict[str, MediaFile]:
    return {kind: make_media(project, kind) for kind in ("video", "audio", "image")}


def put_timeline(project: Project, media: MediaFile, *, clips: int = 1, clip_ms: int = 4000) -> dict[str, Any]:
    """Save a timeline with `clips` back-to-back clips of `media` on the video track."""
    doc = edl_get(project=project)
    video = doc["tracks"][0]
    video["clips"] = [clip(media, video, start=i * clip_ms, out=clip_ms, id=f"c{i}") for i in range(clips)]
    return edl_replace(project=project, expected_version=doc["version"], data=doc)


# The types that use a face, and which of `media`'s files holds it (JobSpec.likeness_of).
LIKENESS_OF = {"lip-sync": "video", "performance-cloning": "image", "gaze-redirection": "video"}


def valid_body(job_type: str, project: Project, media: dict[str, MediaFile]) -> dict[str, Any]:
    """A body each type accepts (render also needs a timeline: see put_timeline); for a type that uses a
    face, the face's file is covered by a likeness consent (`likeness_consent_for`)."""
    p = {"project_id": str(project.pk)}
    video, audio, image = (str(media[k].pk) for k in ("video", "audio", "image"))
    bodies: dict[str, dict[str, Any]] = {
        "transcription": {**p, "media_id": audio},
        "tts": {**p, "text": "Hello world", "speed": 1.25},
        "lip-sync": {**p, "video_media_id": video, "audio_media_id": audio},
        "video-generation": {**p, "prompt": "A cat walking on the moon"},
        "performance-cloning": {**p, "source_image_media_id": image, "driving_video_media_id": video},
        "gaze-redirection": {**p, "video_media_id": video},
        "audio-generation": {**p, "prompt": "rain on a tin roof"},
        "video-query": {**p, "video_media_id": video, "question": "How many cats?"},
        "render": {**p},
        "compression": {**p, "media_id": video, "preset": "480p"},
        "image-generation": {**p, "prompt": "a lighthouse at dusk"},
    }
    if job_type in LIKENESS_OF:  # the face it uses covered by a verified likeness consent
        likeness_consent_for(media[LIKENESS_OF[job_type]])
    if job_spec(job_type).screened_media:  # its pictures screened and passed: no bytes of them are stored
        pictures_passed(media["video"], media["image"])
    if job_type == "voice-consent":  # a challenge of its own for each body: a job reads one once
        bodies["voice-consent"] = {**p, "challenge_id": str(consent_challenge(project.user).pk),
                                   "recording_media_id": audio, "sample_media_id": audio}
    if job_type == "likeness-consent":  # a challenge of its own; a recording short enough, a subject of known bytes
        challenge = consent_challenge(project.user, kind="likeness",
                                      statement="I agree to have my face used in this workspace.")
        recording = MediaFileFactory.create(project=project, type="video", duration_ms=20_000)
        subject = MediaFileFactory.create(project=project, type="image", content_sha256=uuid.uuid4().hex * 2)
        bodies["likeness-consent"] = {**p, "challenge_id": str(challenge.pk), "recording_media_id": str(recording.pk),
                                      "subject_media_id": str(subject.pk)}
    return bodies[job_type]


def consent_challenge(user: Any, *, member_id: Any = None, **fields: Any) -> ConsentChallenge:
    """A consent challenge issued to `member_id` of the workspace `user` (its owner, by default), as
    POST /voices/consent-challenges issues it."""
    now = timezone.now()
    defaults = {"kind": "voice", "words": ["apple", "river", "candle", "garden", "pencil", "window", "tiger", "yellow"],
                "statement": "I agree to have my voice cloned in this workspace.",
                "expires_at": now + timedelta(minutes=10)}
    return ConsentChallenge.objects.create(user=user, member_id=member_id or user.pk, **{**defaults, **fields})


def submit(client: APIClient, job_type: str, body: dict[str, Any], **headers: Any) -> Any:
    return client.post(jobs_url(f"/{job_type}"), body, format="json", **headers)
