"""A submission (and a quote) naming a project, media file or voice that is not the caller's is a
404 before anything else is checked of the request or the account: an account with no credits,
or fewer than the type's least price, hears the same 404 (code, message and details) as a funded
one, never a 402 "top up"; nothing is charged, created or quoted. For every job type, since each
takes a project and most take media (jobs/specs.py declares them)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from credits.models import Plan
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_adjust, credit_grant
from credits.services.subscriptions import subscription_create
from jobs.inputs import MediaRef, VoiceRef
from jobs.models import Quote
from jobs.specs import JOB_SPECS, JobSpec
from projects.models import Project
from tests.factories import MediaFileFactory, ProjectFactory, VoiceCloneFactory
from tests.jobs.support import jobs_url, ledger_state, put_timeline, submit, valid_body

pytestmark = pytest.mark.django_db


def _cases(spec: JobSpec) -> list[str]:
    cases = ["another user's project", "a missing project"]
    if any(isinstance(f, MediaRef) for f in spec.references.values()):
        cases += ["another user's media", "a missing media file", "another user's media, no project named"]
    if any(isinstance(f, VoiceRef) for f in spec.references.values()):
        cases += ["another user's voice"]
    return cases


CASES = [pytest.param(spec.type.value, case, id=f"{spec.type.value}: {case}")
         for spec in JOB_SPECS.values() for case in _cases(spec)]
NOT_FOUND = {"another user's project": "project_not_found", "a missing project": "project_not_found",
             "another user's voice": "voice_not_found"}


def _body(spec: JobSpec, case: str, own: Project, own_media: dict[str, Any], theirs: Project,
          their_media: dict[str, Any], their_voice: Any) -> dict[str, Any]:
    body = valid_body(spec.type.value, own, own_media)
    media_field = next((name for name, f in spec.references.items() if isinstance(f, MediaRef)), None)
    voice_field = next((name for name, f in spec.references.items() if isinstance(f, VoiceRef)), None)
    if case == "another user's project":
        body["project_id"] = str(theirs.pk)
    elif case == "a missing project":
        body["project_id"] = str(uuid.uuid4())
    elif case == "another user's voice":
        body[str(voice_field)] = str(their_voice.pk)
    else:
        field = spec.references[str(media_field)]
        assert isinstance(field, MediaRef)
        kind = field.kinds[0]
        body[str(media_field)] = str(uuid.uuid4()) if case == "a missing media file" else str(their_media[kind].pk)
        if case.endswith("no project named"):
            del body["project_id"]
    return body


@pytest.mark.parametrize(("job_type", "case"), CASES)
@pytest.mark.parametrize("balance", ["none", "below the least price"])
def test_an_object_that_is_not_the_callers_is_404_whatever_the_balance(
    job_type, case, balance, user, auth_client, make_user, gpu_backend
):
    gpu_backend("noop")  # every type runs here: nothing but the owner check can refuse it
    spec = JOB_SPECS[job_type]
    subscription_create(user=user, plan=Plan.PRO)  # every type's plan
    own = ProjectFactory.create(user=user)
    own_media = {kind: MediaFileFactory.create(project=own, type=kind) for kind in ("video", "audio", "image")}
    if spec.timeline:
        put_timeline(own, own_media["video"])
    other = make_user()
    credit_grant(user=other, amount=1000, type="bonus", description="test")
    theirs = ProjectFactory.create(user=other)
    their_media = {kind: MediaFileFactory.create(project=theirs, type=kind) for kind in ("video", "audio", "image")}
    their_voice = VoiceCloneFactory.create(user=other)
    body = _body(spec, case, own, own_media, theirs, their_media, their_voice)

    short = 0 if balance == "none" else max(0, spec.price.minimum - 1)
    staff = make_user(is_staff=True)
    credit_adjust(user=user, amount=short - credit_balance_get(user=user), reason="test", staff_user=staff)
    assert credit_balance_get(user=user) < spec.price.minimum
    before = (ledger_state(user), ledger_state(other), Project.objects.count(), Quote.objects.count())

    refused = submit(auth_client, job_type, body)
    quoted = auth_client.post(jobs_url(f"/{job_type}/quote"), body, format="json")
    assert (ledger_state(user), ledger_state(other), Project.objects.count(), Quote.objects.count()) == before

    # The same requests from the same account with credits enough: the same answers.
    credit_grant(user=user, amount=10_000, type="bonus", description="test")
    funded = submit(auth_client, job_type, body)
    expected = NOT_FOUND.get(case, "media_not_found")
    assert funded.status_code == 404 and funded.json()["error"]["code"] == expected, funded.json()
    assert (refused.status_code, refused.json()) == (404, funded.json())
    assert (quoted.status_code, quoted.json()) == (404, funded.json())
    assert Quote.objects.count() == before[3] and ledger_state(other) == before[1]
