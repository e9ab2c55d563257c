"""A submission the result cache would serve, but which is then refused, copies nothing: no object
lands in storage, no media row or lease is made, nothing is charged. The copies a served hit
makes are leased against the user's storage quota: a hit that would not fit is refused (403
`quota_exceeded`) before a byte is copied, and leased copies count until their rows replace them
or the sweep deletes them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import TestCase
from django.utils import timezone

from credits.selectors import credit_balance_get
from credits.services.ledger import credit_adjust
from jobs.models import Job, Quote
from media.models import MediaFile, PendingObjectDeletion
from media.selectors import media_bytes_used
from media.services.sweep import media_sweep
from tests.jobs.support import error_code, jobs_url, ledger_state, submit
from tests.jobs.test_result_cache import (  # noqa: F401 - fixtures
    completed_job,
    image_body,
    no_gpu,
    noop,
)
from tests.media.conftest import local_storage, upload_url_path  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def stored(root: Path) -> list[str]:
    """Every object under the storage root, sidecars and dot-files included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def state(root: Path, user: Any) -> tuple[Any, ...]:
    return (stored(root), MediaFile.objects.count(), PendingObjectDeletion.objects.count(), ledger_state(user),
            Job.objects.count())


def quote_of(client: Any, body: dict[str, Any]) -> str:
    response = client.post(jobs_url("/image-generation/quote"), body, format="json")
    assert response.status_code == 201, response.json()
    return str(response.json()["quote_id"])


REFUSALS = {
    "an unknown quote": (404, "quote_not_found"),
    "a used quote": (409, "quote_used"),
    "an expired quote": (410, "quote_expired"),
    "a quote of another request": (409, "quote_mismatch"),
    "a balance between the least price and the cache price": (402, "insufficient_credits"),
    "a storage quota the copies would pass": (403, "quota_exceeded"),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_a_hit_refused_after_the_cache_lookup_copies_nothing_and_charges_nothing(
    refusal, local_storage, auth_client, funded, project, make_user, no_gpu, settings  # noqa: F811
):
    body = image_body(project, num_images=2)  # 8 credits; the type's least price is 4 (one image)
    completed_job(auth_client, project, num_images=2)
    extra: dict[str, Any] = {}
    if refusal == "an unknown quote":
        extra["quote_id"] = str(uuid.uuid4())
    elif refusal == "a used quote":
        used = quote_of(auth_client, body)
        with TestCase.captureOnCommitCallbacks(execute=True):
            served = submit(auth_client, "image-generation", {**body, "quote_id": used})
        assert served.json()["status"] == "completed", "the quote paid for a hit"
        extra["quote_id"] = used
    elif refusal == "an expired quote":
        extra["quote_id"] = quote_of(auth_client, body)
        Quote.objects.filter(pk=extra["quote_id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif refusal == "a quote of another request":
        extra["quote_id"] = quote_of(auth_client, image_body(project, num_images=2, negative_prompt="fog"))
    elif refusal == "a balance between the least price and the cache price":
        settings.AUTEUR_RESULT_CACHE_PRICE_PERCENT = 100  # the cache price is the price: 8
        credit_adjust(user=funded, amount=5 - credit_balance_get(user=funded), reason="test",
                      staff_user=make_user(is_staff=True))
    else:
        settings.AUTEUR_QUOTA_STORAGE_BYTES = media_bytes_used(user_id=funded.pk)  # at the quota: no room
    before = state(local_storage, funded)

    response = submit(auth_client, "image-generation", {**body, **extra})
    assert (response.status_code, error_code(response)) == REFUSALS[refusal], response.json()
    assert state(local_storage, funded) == before, "no object, no media row, no lease, no charge, no job"
    assert no_gpu == []


def test_a_hit_past_the_members_budget_copies_nothing_and_a_budget_short_of_the_least_price_reads_nothing(
    local_storage, make_user, no_gpu, settings  # noqa: F811
):

    from auteur.users.models import Membership, User
    from credits.models import CapScope, SpendCap
    from credits.services.ledger import credit_grant
    from projects.models import Project
    from tests.factories import acting_in, team_workspace

    owner, editor = make_user(), make_user()
    team = team_workspace(owner)
    Membership.objects.create(workspace=team, user=editor, role="editor")
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=1000, description="pool")
    project = Project.objects.create(user=account, name="p")

    def acting(user: Any) -> Any:
        return acting_in(user, team)

    completed_job(acting(owner), project, num_images=2)  # 8 credits, by the owner: a hit for the team
    settings.AUTEUR_RESULT_CACHE_PRICE_PERCENT = 100  # the cache price is the price: 8
    SpendCap.objects.create(user=account, scope=CapScope.MEMBER, subject_id=editor.pk, monthly_limit=5,
                            month=timezone.now().date().replace(day=1), spent=0, updated_at=timezone.now())
    before = state(local_storage, account)

    response = submit(acting(editor), "image-generation", image_body(project, num_images=2))
    assert (response.status_code, error_code(response)) == (402, "spend_cap_reached"), response.json()
    assert response.json()["error"]["details"]["cost"] == 8
    assert state(local_storage, account) == before, "no object, no media row, no lease, no charge, no job"
    # A budget short of the type's least price (4) is refused before the request is even resolved.
    SpendCap.objects.filter(subject_id=editor.pk).update(monthly_limit=3)
    response = submit(acting(editor), "image-generation", image_body(project, num_images=2))
    assert (response.status_code, response.json()["error"]["details"]["cost"]) == (402, 4)
    assert state(local_storage, account) == before and no_gpu == []


def test_a_hit_is_served_up_to_the_storage_quota_and_its_copies_count_from_their_lease(
    local_storage, auth_client, funded, project, no_gpu, settings, monkeypatch  # noqa: F811
):
    source = completed_job(auth_client, project)
    [output] = MediaFile.objects.filter(source_job_id=source.pk)
    size = output.file_size_bytes
    assert size > 0
    # Room for one copy exactly: the first hit is served, and takes the room.
    settings.AUTEUR_QUOTA_STORAGE_BYTES = media_bytes_used(user_id=funded.pk) + size
    with TestCase.captureOnCommitCallbacks(execute=True):
        served = submit(auth_client, "image-generation", image_body(project))
    assert served.status_code == 202 and served.json()["status"] == "completed", served.json()
    assert media_bytes_used(user_id=funded.pk) == settings.AUTEUR_QUOTA_STORAGE_BYTES
    refused = submit(auth_client, "image-generation", image_body(project))
    assert refused.status_code == 403 and error_code(refused) == "quota_exceeded"
    limit = settings.AUTEUR_QUOTA_STORAGE_BYTES
    assert refused.json()["error"]["details"] == {"quota": "storage_bytes", "limit": limit, "used": limit,
                                                  "requested": size}

    # Copies whose charge then fails (the database gone mid-transaction) stay leased for the sweep:
    # until it deletes them, their bytes count as the user's.
    settings.AUTEUR_QUOTA_STORAGE_BYTES += 10 * size
    used = media_bytes_used(user_id=funded.pk)

    def refused_charge(**kwargs: Any) -> None:
        raise RuntimeError("the database went away mid-transaction")

    monkeypatch.setattr("jobs.intake.submission.credit_deduct_for_job", refused_charge)
    assert submit(auth_client, "image-generation", image_body(project)).status_code == 500
    [lease] = PendingObjectDeletion.objects.all()
    assert (lease.user_id, lease.bytes) == (funded.pk, size)
    assert media_bytes_used(user_id=funded.pk) == used + size
    room = settings.AUTEUR_QUOTA_STORAGE_BYTES - used
    upload = {"filename": "take.wav", "content_type": "audio/wav", "size_bytes": room}
    over = auth_client.post(upload_url_path(project.pk), upload, format="json")
    assert over.status_code == 403 and error_code(over) == "quota_exceeded", "the lease holds part of the room"
    media_sweep(now=timezone.now() + timedelta(hours=2))
    assert not PendingObjectDeletion.objects.exists() and media_bytes_used(user_id=funded.pk) == used
    assert auth_client.post(upload_url_path(project.pk), upload, format="json").status_code == 201
