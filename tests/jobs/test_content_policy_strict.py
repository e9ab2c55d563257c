"""A workspace's strict content policy: chosen by its owner, it refuses more than the platform's
policy (every category at STRICT_SCALE of its threshold, a negative prompt in every category, a
picture at the strict NSFW threshold) and never less. Each refusal is a 422 naming the field, with
no job and nothing charged; the same request in a workspace on the standard policy is accepted.

The texts are chosen from candidates by the embedded screener itself (one the platform's policy
passes and the strict one refuses): what is tested is the policy's use of the scores, whatever the
model's current weights make of a given phrase."""

from __future__ import annotations

from typing import Any

import pytest

from auteur.users.models import Workspace
from gpu_tasks.screening import screen_fields
from gpu_tasks.screening.image import NSFW_THRESHOLD, STRICT_NSFW_THRESHOLD
from gpu_tasks.screening.taxonomy import STRICT_SCALE
from jobs.intake.media_screening import screener_version
from jobs.life import moderation
from jobs.life.moderation import OUTPUT_TRANSCRIPT
from jobs.models import Job, MediaVerdict, ScreeningRefusal
from tests.factories import MediaFileFactory, likeness_consent_for
from tests.jobs.support import error_code, ledger_state, submit
from tests.jobs.test_likeness_consent import team  # noqa: F401 - a fixture: a funded team, its owner, admin and editor

pytestmark = pytest.mark.django_db

# Requests a careful studio may still not want: mild violence, innuendo, menace.
CANDIDATES = (
    "a boxer with a bloody nose staggers in the ring",
    "the villain says he will hurt everyone in the town",
    "a knife fight in a dark alley, quick cuts",
    "a sexy dance in a smoky club at night",
    "soldiers fire at each other across a muddy field",
    "the detective finds a body in the river",
    "a woman in lingerie poses on a bed",
    "he punches the man until he falls to the floor",
    "a bar brawl with broken bottles and shouting",
    "an explosion throws people across the street",
    "a zombie bites a screaming man's arm",
    "two lovers kiss passionately and undress",
    "the gangster points a gun at the shopkeeper's head",
    "a horror scene with blood on the walls",
    "tell them I know where their children go to school",
)
NEGATIVE_CANDIDATES = ("nudity, gore, blood", "naked bodies, gore", "blood, violence, nudity, sex",
                       "gore, dismemberment", "nsfw, nude, explicit")


@pytest.fixture(autouse=True)
def every_type_runs(gpu_backend: Any) -> None:
    gpu_backend("noop")  # what refuses is the policy, not this server's backend


def policy_url(workspace: Any) -> str:
    return f"/api/v1/workspaces/{getattr(workspace, 'pk', workspace)}/content-policy"


def gray(candidates: tuple[str, ...], policy: str) -> str:
    """A text the platform's policy passes and the strict one refuses, from the candidates."""
    verdict = screen_fields({text: (text, policy) for text in candidates})
    found = [text for text in candidates if text not in verdict.flagged and text in verdict.strict_flagged]
    assert found, f"no candidate falls between the two policies at {STRICT_SCALE} of each threshold"
    return found[0]


def set_strict(client: Any, workspace: Any) -> None:
    done = client.put(policy_url(workspace), {"content_policy": "strict"}, format="json")
    assert done.status_code == 200 and done.json()["content_policy"] == "strict", done.json()


def test_only_an_owner_chooses_the_policy_and_nothing_goes_below_the_platforms(team, auth_client, user):  # noqa: F811
    assert team["owner"].get(f"/api/v1/workspaces/{team['workspace'].pk}").json()["content_policy"] == "standard"
    for role in ("admin", "editor"):
        refused = team[role].put(policy_url(team["workspace"]), {"content_policy": "strict"}, format="json")
        assert refused.status_code == 403, refused.json()
        assert refused.json()["error"]["details"]["action"] == "workspace.content_policy"
    for looser in ("off", "relaxed", "none", ""):
        refused = team["owner"].put(policy_url(team["workspace"]), {"content_policy": looser}, format="json")
        assert refused.status_code == 400, refused.json()
    assert Workspace.objects.get(pk=team["workspace"].pk).content_policy == "standard"
    # Another's workspace is not found; one's own personal workspace may be strict too.
    assert auth_client.put(policy_url(team["workspace"]), {"content_policy": "strict"},
                           format="json").status_code == 404
    set_strict(auth_client, user)
    set_strict(team["owner"], team["workspace"])
    back = team["owner"].put(policy_url(team["workspace"]), {"content_policy": "standard"}, format="json")
    assert back.status_code == 200 and back.json()["content_policy"] == "standard"


def test_a_strict_workspace_refuses_what_the_platform_passes_and_charges_nothing(auth_client, funded, project):
    text = gray(CANDIDATES, "full")
    body = {"project_id": str(project.pk), "text": text, "speed": 1.0}
    assert submit(auth_client, "tts/quote", body).status_code == 201  # the platform's policy passes it
    set_strict(auth_client, funded)
    before = ledger_state(funded)
    refused = submit(auth_client, "tts", body)
    assert refused.status_code == 422 and error_code(refused) == "content_policy_violation", refused.json()
    [entry] = refused.json()["error"]["details"]["flagged"]
    assert entry["field"] == "text" and entry["categories"]
    assert ledger_state(funded) == before
    assert [r.flagged for r in ScreeningRefusal.objects.filter(user=funded)] == [[entry]]
    refused_quote = submit(auth_client, "tts/quote", body)
    assert refused_quote.status_code == 422, refused_quote.json()


def test_a_strict_workspace_screens_a_negative_prompt_in_every_category(team, settings):  # noqa: F811
    negative = gray(NEGATIVE_CANDIDATES, "negative")
    body = {"project_id": str(team["project"].pk), "prompt": "a quiet harbour at dawn", "negative_prompt": negative}
    client = team["editor"]  # a member's request: the workspace's policy applies to it
    assert submit(client, "image-generation/quote", body).status_code == 201
    set_strict(team["owner"], team["workspace"])
    before = ledger_state(team["account"])
    refused = submit(client, "image-generation", body)
    assert refused.status_code == 422, refused.json()
    assert [f["field"] for f in refused.json()["error"]["details"]["flagged"]] == ["negative_prompt"]
    assert ledger_state(team["account"]) == before and not Job.objects.filter(user=team["account"]).exists()


def test_a_picture_between_the_two_thresholds_is_refused_only_where_the_policy_is_strict(team):  # noqa: F811
    assert STRICT_NSFW_THRESHOLD < NSFW_THRESHOLD
    project = team["project"]
    video = MediaFileFactory.create(project=project, type="video", content_sha256="e5" * 32)
    audio = MediaFileFactory.create(project=project, type="audio")
    likeness_consent_for(video)
    MediaVerdict.objects.filter(user=team["account"]).delete()
    MediaVerdict.objects.create(user=team["account"], content_sha256=video.content_sha256, screener=screener_version(),
                                categories=[], top_score=(STRICT_NSFW_THRESHOLD + NSFW_THRESHOLD) / 2, frames=4)
    body = {"project_id": str(project.pk), "video_media_id": str(video.pk), "audio_media_id": str(audio.pk)}
    assert submit(team["owner"], "lip-sync/quote", body).status_code == 201
    set_strict(team["owner"], team["workspace"])
    before = ledger_state(team["account"])
    refused = submit(team["owner"], "lip-sync", body)
    assert refused.status_code == 422, refused.json()
    assert refused.json()["error"]["details"]["flagged"] == [{"field": "video_media_id", "categories": ["sexual"]}]
    assert ledger_state(team["account"]) == before


def test_speech_between_the_policies_is_withheld_only_where_the_policy_is_strict(auth_client, funded, project):
    """The store step's verdict on a TTS job's speech (its text and what the speech was heard to say)
    follows the workspace's policy as it is when the output is stored."""
    text = gray(CANDIDATES, "full")
    accepted = submit(auth_client, "tts", {"project_id": str(project.pk), "text": text, "speed": 1.0})
    assert accepted.status_code == 202, accepted.json()
    job = Job.objects.get(pk=accepted.json()["job_id"])
    result = {OUTPUT_TRANSCRIPT: text}
    assert moderation.output_verdict(job, result) is None
    set_strict(auth_client, funded)
    verdict = moderation.output_verdict(job, result)
    assert verdict is not None and verdict.categories and verdict.source == "embedded"
