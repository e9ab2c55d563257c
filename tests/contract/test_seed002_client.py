"""A client written to the original specification's request and response shapes
(tests/contract/seed002_client.py) runs unchanged against the API, over HTTP, with a real
worker (the noop GPU backend answers every job type; media are probed for real)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from auteur.users.services import user_issue_token
from credits.models import Plan
from credits.services.ledger import credit_grant
from credits.services.subscriptions import subscription_create
from jobs.models import Job
from media.storage import get_storage
from projects.models import Project
from tests.contract import seed002_client
from tests.factories import VoiceCloneFactory, likeness_consent_of
from tests.jobs.conftest import start_worker  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_seed002_client_runs_unchanged(live_server, settings, start_worker, gpu_backend, user, samples):  # noqa: F811
    settings.AUTEUR_PUBLIC_BASE_URL = live_server.url  # where the signed upload URLs point
    gpu_backend("noop")
    # No announcements' consumer: the noop backend holds no call here, so each has ended when its
    # step first looks at it (jobs/life/steps.py) and no job waits for an announcement.
    start_worker(consumer=False, DJANGO_SETTINGS_MODULE="bench.settings", AUTEUR_GPU_BACKEND="noop")
    credit_grant(user=user, amount=500, type="bonus", description="test")
    subscription_create(user=user, plan=Plan.PRO)  # video generation is Pro-only
    # The person in the video consented to the use of their face (verified before: the likeness tests
    # run that verification); the client itself is the seed's, unchanged.
    likeness_consent_of(user, hashlib.sha256(samples.video.read_bytes()).hexdigest())
    voice = VoiceCloneFactory.create(user=user)
    with samples.short_wav.open("rb") as fh:
        get_storage().save(voice.sample_key, fh, "audio/wav")

    seen = seed002_client.run(live_server.url, user_issue_token(user=user), video=samples.video,
                              audio=samples.wav, voice_id=str(voice.pk))

    assert seen["verify"] == {"valid": True, "user_id": str(user.pk)}
    assert seen["me"]["credits"]["balance"] == seen["balance_before"]
    assert seen["project"]["name"] == "My Project" and seen["project_detail"]["name"] == "New Name"
    assert "edl" in seen["project_detail"]
    for name, accepted in seen["accepted"].items():
        # Its transcription is the job its project's automatic transcription of the same upload already
        # is (deduplicated, charged once), in whatever state that job has reached by then.
        assert accepted["credits_cost"] > 0, name
        assert accepted["status"] == "pending" or name == "transcription", name
    assert seen["accepted"]["transcription"]["deduplicated"] is True
    jobs: dict[str, Any] = seen["jobs"]
    assert {name: job["status"] for name, job in jobs.items()} == dict.fromkeys(jobs, "completed")
    assert {name: job["type"] for name, job in jobs.items()} == {name: name for name in jobs}
    transcript = jobs["transcription"]["output_data"]["transcript"]
    assert transcript["segments"] and transcript["segments"][0]["words"] and transcript["language"]
    # Without a project, TTS and video generation land in the user's Library; lip sync in the
    # project of its media.
    library = Project.objects.get(user=user, is_library=True)
    assert library.name == "Library"
    assert {p["name"] for p in seen["projects"]} == {"New Name", "Library"}
    for name, project in (("tts", library.pk), ("video-generation", library.pk),
                          ("lip-sync", seen["project"]["id"]), ("transcription", seen["project"]["id"])):
        assert str(jobs[name]["project_id"]) == str(project), name
    # The files it uploads to its project are transcribed on their own, as the project asks by default;
    # the transcription it asks for is one of those jobs, not a second charge for the same work.
    automatic = Job.objects.filter(user=user, type="transcription")
    accepted_id = str(seen["accepted"]["transcription"]["job_id"])
    assert accepted_id in {str(pk) for pk in automatic.values_list("pk", flat=True)}
    assert automatic.count() == 2  # one per uploaded file
    spent = sum(a["credits_cost"] for name, a in seen["accepted"].items() if name != "transcription")
    spent += sum(job.credits_cost for job in automatic)
    assert seen["balance_after"] == seen["balance_before"] - spent
    assert len([t for t in seen["history"] if t["type"] == "usage"]) == 3 + automatic.count()
