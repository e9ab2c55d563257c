"""Test data: one factory per model that tests build directly, with defaults that make a usable row.

`XFactory.create(**overrides)` saves and returns the model (typed); pass only what the test is about.
Rows that a service must create (ledger entries, jobs) are made through that service instead.
"""

from __future__ import annotations

import uuid
from typing import Any

import factory
from factory.django import DjangoModelFactory
from rest_framework.test import APIClient

from auteur.users.models import User, Workspace
from auteur.users.services import user_issue_token
from auteur.users.workspace_services import workspace_create
from media.models import Consent, ConsentSubject, MediaFile, VoiceClone
from projects.models import Project

MIME_TYPES = {"video": "video/mp4", "audio": "audio/wav", "image": "image/png"}
# A still image has no duration; the others are long enough for any job's minimum.
DURATIONS_MS: dict[str, int | None] = {"video": 90_000, "audio": 30_000, "image": None}


def _unique(template: str) -> factory.LazyFunction:
    """Unique across processes too (workers and the stress test's server share the database)."""
    return factory.LazyFunction(lambda: template.format(uuid.uuid4().hex[:10]))


class UserFactory(DjangoModelFactory[User]):
    class Meta:
        model = User

    email = _unique("user-{}@example.com")

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, **kwargs: Any) -> User:
        # Through the manager, as sign-in does: it normalises the email and sets no usable password.
        return model_class.objects.create_user(*args, **kwargs)


class ProjectFactory(DjangoModelFactory[Project]):
    """A plain row: the EDL document is created on first read, as for any new project."""

    class Meta:
        model = Project

    user = factory.SubFactory(UserFactory)
    name = "Film"
    # Off unless a test asks: an upload to a project that transcribes on its own starts (and
    # charges) a job the test did not make (tests/jobs/test_lifecycle.py tests it).
    auto_transcribe = False


class MediaFileFactory(DjangoModelFactory[MediaFile]):
    """A ready file, owned by its project's owner; the type picks a matching MIME type and duration."""

    class Meta:
        model = MediaFile
        skip_postgeneration_save = True  # (`screened` saves what it changes itself)

    project = factory.SubFactory(ProjectFactory)
    user = factory.LazyAttribute(lambda o: o.project.user)
    type = "audio"
    name = factory.LazyAttribute(lambda o: f"{o.type}-{uuid.uuid4().hex[:6]}")
    mime_type = factory.LazyAttribute(lambda o: MIME_TYPES[o.type])
    status = "ready"
    # The database requires a reason on every rejected file.
    rejection_reason = factory.LazyAttribute(lambda o: "not media" if o.status == "rejected" else "")
    duration_ms = factory.LazyAttribute(lambda o: DURATIONS_MS[o.type])
    file_size_bytes = 1000
    storage_key = factory.LazyFunction(lambda: f"k/{uuid.uuid4()}")

    @factory.post_generation
    def screened(obj: MediaFile, create: bool, extracted: Any, **kwargs: Any) -> None:
        """A ready picture or video given a SHA-256 is recorded as screened and passed
        (`pictures_passed`): its bytes are not in storage to be decoded. `screened=False` leaves it
        to be screened as an upload is."""
        if create and extracted is not False and obj.content_sha256:
            pictures_passed(obj)


class ConsentFactory(DjangoModelFactory[Consent]):
    """A voice consent whose verification passed (every figure within its bounds), for a sample of
    random bytes unless `sample_sha256` names one."""

    class Meta:
        model = Consent

    user = factory.SubFactory(UserFactory)
    kind = "voice"
    status = "verified"
    challenge_id = factory.LazyFunction(uuid.uuid4)
    job_id = factory.LazyFunction(uuid.uuid4)
    sample_sha256 = factory.LazyFunction(lambda: uuid.uuid4().hex * 2)
    checks = factory.LazyAttribute(lambda o: {"phrase": "passed", "speaker": "passed"} if o.status == "verified"
                                   else {"phrase": "passed", "speaker": "failed"})
    challenge_wer = 0.0
    phrase_wer = 0.1
    similarity = factory.LazyAttribute(lambda o: 0.95 if o.status == "verified" else 0.5)
    threshold = 0.89
    max_wer = 0.25


def consent_of(media: MediaFile) -> str:
    """The id of a verified voice consent for `media`'s bytes (what a passed voice-consent job records)."""
    return str(ConsentFactory.create(user=media.user, sample_sha256=media.content_sha256).pk)


def voice_body(media: MediaFile, name: str) -> dict[str, str]:
    """A POST /voices body that makes a voice of `media` with its speaker's verified consent."""
    return {"media_id": str(media.pk), "name": name, "consent_id": consent_of(media)}


def pictures_passed(*files: MediaFile) -> None:
    """Record that each picture or video's pictures were screened and passed the content policy (the
    MediaVerdict its first screening at submission records: jobs.intake.media_screening), as a
    factory's file has no bytes in storage to decode; a file never hashed is given a random SHA-256
    first. Its lip sync, performance cloning or gaze redirection is then not refused for them."""
    from jobs.intake.media_screening import screener_version
    from jobs.models import MediaVerdict

    for media in files:
        if media.type not in ("image", "video") or media.status != "ready":
            continue
        if not media.content_sha256:
            media.content_sha256 = uuid.uuid4().hex * 2
            MediaFile.objects.filter(pk=media.pk).update(content_sha256=media.content_sha256)
        MediaVerdict.objects.get_or_create(user_id=media.user_id, content_sha256=media.content_sha256,
                                           screener=screener_version(), defaults={"top_score": 0.0, "frames": 1})


def likeness_consent_for(media: MediaFile, *, status: str = "verified") -> Consent:
    """A likeness consent of `media`'s workspace covering the face in it (what a passed likeness-consent
    job records; `status="attested"` for an owner's attestation), by the SHA-256 of its bytes: a file
    whose bytes were never hashed is given a random one first. Lip sync, performance cloning and gaze
    redirection of that file are then accepted."""
    if not media.content_sha256:
        media.content_sha256 = uuid.uuid4().hex * 2
        MediaFile.objects.filter(pk=media.pk).update(content_sha256=media.content_sha256)
    pictures_passed(media)  # (screened and passed: no bytes of it are stored to decode)
    return likeness_consent_of(media.user, media.content_sha256, media_id=media.pk, status=status)


def likeness_consent_of(user: User, sha256: str, *, media_id: uuid.UUID | None = None,
                        status: str = "verified") -> Consent:
    """A likeness consent of `user`'s workspace covering the face in the bytes whose SHA-256 is
    `sha256`, whichever file holds them (one uploaded after it too)."""
    verified = status != "attested"
    consent = Consent.objects.create(
        user=user, kind="likeness", status=status,
        challenge_id=uuid.uuid4() if verified else None, job_id=uuid.uuid4() if verified else None,
        checks={"phrase": "passed", "face": "passed", "speaking": "passed"} if verified else {},
        challenge_wer=0.0 if verified else None, phrase_wer=0.1 if verified else None,
        similarity=0.8 if verified else None, threshold=0.363 if verified else None, max_wer=0.25 if verified else None,
    )
    ConsentSubject.objects.create(consent=consent, user=user, content_sha256=sha256,
                                  media_id=media_id, similarity=0.8 if verified else None)
    return consent


class VoiceCloneFactory(DjangoModelFactory[VoiceClone]):
    """A voice with its speaker's verified consent (`consent=None` for one without)."""

    class Meta:
        model = VoiceClone

    user = factory.SubFactory(UserFactory)
    name = "My voice"
    sample_key = factory.LazyFunction(lambda: f"voices/{uuid.uuid4()}.wav")
    sample_duration_ms = 5000
    consent = factory.SubFactory(ConsentFactory, user=factory.SelfAttribute("..user"))


def team_workspace(owner: User, name: str = "Studio") -> Workspace:
    """A team workspace, with its account, and `owner` as its owner (as POST /workspaces makes it)."""
    return workspace_create(user=owner, name=name).workspace


def acting_in(user: User, workspace: Workspace | str) -> APIClient:
    """A client of `user` that names `workspace` (or any value) in its Auteur-Workspace header."""
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}",
                       HTTP_AUTEUR_WORKSPACE=str(getattr(workspace, "pk", workspace)))
    return client


def key_client(text: str, workspace: Any = None) -> APIClient:
    """A client that sends the API key `text` (and `workspace` in its Auteur-Workspace header, if given)."""
    client = APIClient(raise_request_exception=False)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {text}"}
    if workspace is not None:
        headers["HTTP_AUTEUR_WORKSPACE"] = str(workspace)
    client.credentials(**headers)
    return client
