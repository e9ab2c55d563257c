"""Consent and moderation, attacked from outside: each test performs an attack on likeness consent,
review holds, or input and output screening, and shows it refused or bounded.

The row-level security attacks run as the API's own login (DATABASE_API_URL), as a statement a SQL
injection in the API could run: the session names its own account, the rows are its own, and what
the grants and policies let it change must not undo what the application decides."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from django.utils import timezone

from auteur.users.models import User
from jobs.models import AccountStanding, Job
from media.models import Consent, ConsentKind, ConsentStatus
from tests.auteur.test_row_level_security import api_login
from tests.gpu_tasks.test_likeness_consent import (  # noqa: F401 - drawn_people, face_models, readings: fixtures
    drawn_people,
    face_check,
    face_models,
    frame_of,
    match,
    pairs,
    payload,
    readings,
)
from tests.jobs.test_output_moderation import storage  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db


# Row-level security: what the API's login may change ----------------------------------------------


def _as_account(session: psycopg.Connection[Any], user: User) -> None:
    session.execute("SELECT set_config('app.user_id', %s, false)", [str(user.pk)])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("start", [ConsentStatus.ATTESTED, ConsentStatus.REVOKED])
def test_the_api_login_cannot_make_a_consent_usable_by_changing_its_status(make_user: Callable[..., User],
                                                                           start: ConsentStatus) -> None:
    """An attested likeness consent (the API inserts those) turned `verified` would be usable under
    the `verified` policy with no verification; a revoked one turned back would be usable again.
    The API's login may set a consent's status only to `revoked`."""
    alice = make_user()
    consent = Consent.objects.create(user=alice, kind=ConsentKind.LIKENESS, status=start, checks={},
                                     revoked_at=timezone.now() if start == ConsentStatus.REVOKED else None)
    with api_login() as session:
        _as_account(session, alice)
        for status in (ConsentStatus.VERIFIED, ConsentStatus.ATTESTED):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                session.execute("UPDATE consents SET status = %s WHERE id = %s", [status, consent.pk])
        # What it is there for still works: a revocation, and the share lock the checks read under.
        assert session.execute("SELECT status FROM consents WHERE id = %s FOR SHARE", [consent.pk]).fetchall() \
            == [(start,)]
        session.execute("UPDATE consents SET status = 'revoked', revoked_at = now() WHERE id = %s", [consent.pk])
    consent.refresh_from_db()
    assert consent.status == ConsentStatus.REVOKED


@pytest.mark.django_db(transaction=True)
def test_the_api_login_cannot_lift_its_accounts_review_hold(make_user: Callable[..., User]) -> None:
    alice = make_user()
    AccountStanding.objects.create(user=alice, held_since=timezone.now(), held_reason="refusals")
    with api_login() as session:
        _as_account(session, alice)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute("UPDATE account_standings SET held_since = NULL, held_reason = '' WHERE user_id = %s",
                            [alice.pk])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor by an insert that updates on conflict
            session.execute("INSERT INTO account_standings (user_id, held_since, held_reason) VALUES (%s, NULL, '') "
                            "ON CONFLICT (user_id) DO UPDATE SET held_since = NULL, held_reason = ''", [alice.pk])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor by deleting the row
            session.execute("DELETE FROM account_standings WHERE user_id = %s", [alice.pk])
        # Setting a hold, and reading the row for update, as a refusal does, still work.
        session.execute("SELECT held_since FROM account_standings WHERE user_id = %s FOR UPDATE", [alice.pk])
        session.execute("UPDATE account_standings SET held_since = now(), held_reason = 'zero_tolerance' "
                        "WHERE user_id = %s", [alice.pk])
    standing = AccountStanding.objects.get(user=alice)
    assert standing.held_since is not None and standing.held_reason == "zero_tolerance"



@pytest.mark.django_db(transaction=True)
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="the API's role inserts input verdicts (a request that comes first screens the file "
                   "itself and keeps the verdict), so a statement it runs can record any of its files as passed "
                   "before it is screened; the database cannot tell a screened verdict from a forged one")
def test_the_api_login_cannot_record_its_own_file_as_screened_and_passed(make_user: Callable[..., User]) -> None:
    from jobs.intake.media_screening import screener_version
    from jobs.models import MediaVerdict

    alice = make_user()
    sha256 = "e5" * 32
    with api_login() as session:
        _as_account(session, alice)
        try:
            session.execute("INSERT INTO media_verdicts (user_id, content_sha256, screener, categories, top_score, "
                            "frames, created_at) VALUES (%s, %s, %s, '[]', 0, 1, now())",
                            [alice.pk, sha256, screener_version()])
        except psycopg.errors.InsufficientPrivilege:
            return
    assert not MediaVerdict.objects.filter(user=alice, content_sha256=sha256).exists(), "a forged pass was kept"


# Likeness verification: whose face the consent covers ------------------------------------------------


@pytest.mark.parametrize("subject_kind", ["video", "image"])
def test_a_consent_is_not_won_for_the_face_in_front_by_someone_standing_behind_it(
        tmp_path: Path, face_models: Path, drawn_people: list[np.ndarray],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, subject_kind: str) -> None:
    """Ann reads the phrase on camera; the subject shows Bob nearest the camera and Ann behind him in
    every frame. Lip sync, performance cloning and gaze redirection change the largest face (Bob's):
    were the best-matching face of each frame to count, Ann's consent would cover Bob's face."""
    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(face_models))
    recording = pairs(*[frame_of("ann")] * 16)
    crowd = frame_of("bob", "ann")
    subject = crowd if subject_kind == "image" else pairs(*[crowd] * 16)
    figures = match(tmp_path, recording, subject)
    assert figures["subject_faces"] >= 1
    assert face_check(figures) == "failed"
    # The person in front of the others is covered.
    front = frame_of("ann", "bob")
    assert face_check(match(tmp_path, recording, front if subject_kind == "image" else pairs(*[front] * 16))) \
        == "passed"



def test_a_still_photo_of_someone_with_the_phrase_dubbed_over_is_no_consent(
        tmp_path: Path, face_models: Path, readings: dict[str, Path],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The attacker has a photo (or any clip) of the victim: they loop it as the recording's picture
    and put a synthesiser reading the issued phrase under it. Nobody on camera said a word: the
    phrase is heard and the face is the subject's, but the face's mouth never moves with the words."""
    from gpu_tasks.contract import EngineContext
    from gpu_tasks.engines import face_embed, likeness_consent

    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(face_models))
    monkeypatch.setattr(face_embed, "DETECT_THRESHOLD", 0.0)  # (the tiny random detector's "faces")
    body = payload(readings["right"], readings["picture"])  # the still picture looped, eSpeak NG reading
    result = likeness_consent.run_local(body, EngineContext(workdir=tmp_path, payload=body))
    assert likeness_consent.passes(result, face_embed.DEFAULT_THRESHOLD) == {
        "passed": False, "checks": {"phrase": "passed", "face": "passed", "speaking": "failed"}}, result
    assert result["liveness"]["frames"] > 0 and result["liveness"]["mouth_motion"] == 0.0



def test_a_subject_that_shows_the_person_only_at_the_moments_sampled_is_not_covered(
        tmp_path: Path, face_models: Path, drawn_people: list[np.ndarray],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """32 frames at 16 fps: at the middle of each of its 16 stretches the second of each pair shows;
    Ann is there, Bob in the first of each, half the video. The server draws where in each stretch a
    verification looks (jobs.payloads.likeness_offsets, from the job and its secret), so nobody can
    place Ann only there."""
    from jobs.payloads import likeness_offsets
    from jobs.specs import JobType
    from tests.factories import ProjectFactory

    monkeypatch.setenv("AUTEUR_MODELS_DIR", str(face_models))
    job = Job.objects.create(pk=uuid.UUID(int=7), user=ProjectFactory.create().user, input_params={},
                             type=JobType.LIKENESS_CONSENT.value, credits_cost=1)  # (a fixed draw: the test's secret)
    offsets = likeness_offsets(job)
    assert offsets == likeness_offsets(job) and len(offsets) == 16 and all(0 <= x < 1 for x in offsets)
    recording = pairs(*[frame_of("ann")] * 16)
    subject = [frame for _ in range(16) for frame in (frame_of("bob"), frame_of("ann"))]
    assert face_check(match(tmp_path, recording, subject, offsets=offsets)) == "failed"


# Likeness policy and attestations: who may speak for a person ----------------------------------------


@pytest.fixture
def attested_team(make_user: Callable[..., User]) -> dict[str, Any]:
    from auteur.users.models import Membership, Workspace
    from tests.factories import MediaFileFactory, ProjectFactory, team_workspace

    owner = make_user()
    workspace = team_workspace(owner)
    Workspace.objects.filter(pk=workspace.pk).update(likeness_policy="attested")
    project = ProjectFactory.create(user=User.objects.get(pk=workspace.pk))
    return {"workspace": workspace, "seat": Membership.objects.get(workspace=workspace, user=owner),
            "video": MediaFileFactory.create(project=project, type="video", content_sha256="d4" * 32)}


def test_an_api_key_with_every_scope_neither_attests_nor_sets_the_policy(attested_team: dict[str, Any]) -> None:
    """An attestation is a person's word that the workspace holds someone's consent, and the policy
    decides what such words are worth: an owner's key, holding every scope there is, does neither."""
    from auteur.users.key_services import api_key_create
    from auteur.users.models import Workspace
    from auteur.users.roles import SCOPES
    from media.models import ConsentSubject
    from tests.factories import key_client

    workspace = attested_team["workspace"]
    _key, text = api_key_create(membership=attested_team["seat"], name="ci", scopes=list(SCOPES))
    client = key_client(text, workspace.pk)
    refused = client.post("/api/v1/consents/attestations", {
        "subject_media_ids": [str(attested_team["video"].pk)], "person_name": "Ada Example",
        "consent_obtained_at": "2026-01-05T10:00:00Z", "evidence": "Signed release R-17."}, format="json")
    assert refused.status_code == 403, refused.json()
    assert refused.json()["error"]["code"] == "permission_denied"
    assert not Consent.objects.exists() and not ConsentSubject.objects.exists()
    for policy in ("verified", "attested"):
        changed = client.put(f"/api/v1/workspaces/{workspace.pk}/likeness-policy", {"likeness_policy": policy},
                             format="json")
        assert changed.status_code in (403, 404), changed.json()
    Workspace.objects.filter(pk=workspace.pk).update(likeness_policy="verified")
    changed = client.put(f"/api/v1/workspaces/{workspace.pk}/likeness-policy", {"likeness_policy": "attested"},
                         format="json")
    assert changed.status_code in (403, 404), changed.json()
    assert Workspace.objects.get(pk=workspace.pk).likeness_policy == "verified"


# Output screening: what a generated video shows between the moments screened -----------------------


def _red(frame: bytes) -> bool:
    """A screened picture (224 x 224 RGB) that is mostly red: the stand-in for what the policy refuses."""
    rgb = np.frombuffer(frame, dtype=np.uint8).reshape(-1, 3).astype(int)
    return bool(((rgb[:, 0] > 150) & (rgb[:, 1] < 80) & (rgb[:, 2] < 80)).mean() > 0.5)


def _video_red_between(path: Path, start_s: float, end_s: float, seconds: int = 10) -> bytes:
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"color=c=gray:s=128x72:r=25:d={seconds}", "-vf",
                    f"drawbox=x=0:y=0:w=128:h=72:color=red:t=fill:enable='between(t,{start_s},{end_s})'",
                    "-c:v", "libx264", "-g", "250", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path.read_bytes()


@pytest.mark.slow
def test_what_shows_between_fixed_moments_cannot_be_placed_where_screening_does_not_look(
        tmp_path: Path, settings: Any) -> None:
    """A video is screened at its first frame and at one moment drawn in each of count - 1 equal
    stretches of its length, from the file and the server's secret: nobody without the secret knows
    where, the same file is always screened at the same moments, and whatever shows for two
    stretches' length is seen wherever it is placed (10 s, 8 frames: 7 stretches of 1.43 s)."""
    from media.probing.service import screening_frames_spread, screening_moments

    plain = tmp_path / "plain.mp4"
    _video_red_between(plain, 20.0, 21.0)  # (never: the video lasts 10 s)
    drawn = {}
    for secret in ("first-server-secret-0123456789abcdef", "another-server-secret-0123456789abcd"):
        settings.SECRET_KEY = secret
        drawn[secret] = screening_moments(plain, 8)
        assert drawn[secret] == screening_moments(plain, 8) and len(drawn[secret]) == 7
        for start in (0.3, 3.9, 7.1):  # two stretches long (2.86 s), wherever it starts
            clip = tmp_path / f"red-{start}.mp4"
            _video_red_between(clip, start, start + 2.9)
            seen = screening_frames_spread(clip, count=8)
            assert seen is not None and any(_red(f) for f in seen), (secret, start)
    assert len({tuple(m) for m in drawn.values()}) == 2, "the moments follow the secret"


# Likeness: a job's output is not its input's face ------------------------------------------------------


def test_a_lip_syncs_output_is_not_covered_by_the_consent_of_the_face_it_was_made_from(
        auth_client: Any, funded: User, project: Any, media: Any, storage: Path,  # noqa: F811
        gpu_backend: Any) -> None:
    """The consent covers the bytes the person's face was verified in: what a job made of them (new
    words in their mouth) is other bytes, so feeding it back to a lip sync or a gaze redirection needs
    a consent of its own, refused at no cost."""
    from media.models import MediaFile
    from tests.factories import likeness_consent_for, pictures_passed
    from tests.jobs.support import ledger_state, valid_body
    from tests.jobs.test_output_moderation import finish, running

    gpu_backend("noop")
    likeness_consent_for(media["video"])
    done = finish(running(auth_client, project, "lip-sync", valid_body("lip-sync", project, media)))
    assert done.status == "completed", (done.error_code, done.error_message)
    (made,) = MediaFile.objects.filter(source_job_id=done.pk)
    assert made.content_sha256 and made.content_sha256 != media["video"].content_sha256
    pictures_passed(made)  # (screened and passed: only consent is in question)
    before = ledger_state(funded)
    for job_type, body in (("lip-sync", {"video_media_id": str(made.pk), "audio_media_id": str(media["audio"].pk)}),
                           ("gaze-redirection", {"video_media_id": str(made.pk)})):
        refused = auth_client.post(f"/api/v1/jobs/{job_type}", body, format="json")
        assert refused.status_code == 403, refused.json()
        assert refused.json()["error"]["code"] == "consent_required"
        assert refused.json()["error"]["details"]["reason"] == "missing"
    assert ledger_state(funded) == before


# Review holds: the person behind a held account ------------------------------------------------------


def test_a_held_person_does_not_generate_in_a_workspace_they_open_afterwards(
        make_user: Callable[..., User], gpu_backend: Any) -> None:
    from credits.services.ledger import credit_grant
    from tests.factories import acting_in, team_workspace

    gpu_backend("noop")
    person = make_user()
    credit_grant(user=person, amount=100, type="bonus", description="test")
    AccountStanding.objects.create(user=person, held_since=timezone.now(), held_reason="zero_tolerance")
    own = acting_in(person, str(person.pk))
    refused = own.post("/api/v1/jobs/tts", {"text": "Hello world"}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "account_under_review", refused.json()

    workspace = team_workspace(person)  # as POST /workspaces makes it, the person its owner
    credit_grant(user=User.objects.get(pk=workspace.pk), amount=100, type="bonus", description="test")
    answered = acting_in(person, workspace).post("/api/v1/jobs/tts", {"text": "Hello world"}, format="json")
    assert answered.status_code == 403, answered.json()
    assert not Job.objects.filter(user_id=workspace.pk).exists()
