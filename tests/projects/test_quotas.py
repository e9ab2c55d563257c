"""The per-user quota on projects (the EDL history quota, which prunes rather than refuses, is
tested in test_edl_services.py::test_history_is_bounded_to_the_last_n_versions)."""

from __future__ import annotations

import pytest

from projects.edl import store
from projects.models import Project

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


def test_a_project_past_the_project_quota_is_refused(auth_client, user, make_user, settings):
    settings.AUTEUR_QUOTA_PROJECTS = 2
    for name in ("one", "two"):
        assert auth_client.post("/api/v1/projects", {"name": name}, format="json").status_code == 201

    refused = auth_client.post("/api/v1/projects", {"name": "three"}, format="json")
    assert refused.status_code == 403, refused.json()
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"quota": "projects", "limit": 2, "used": 2, "requested": 1}
    # Nothing left behind: no row, no timeline document.
    assert sorted(Project.objects.filter(user=user).values_list("name", flat=True)) == ["one", "two"]
    assert store.edl_collection().count_documents({"user_id": str(user.pk)}) == 2
    # The quota is per user.
    other = make_user()
    from auteur.users.services import user_issue_token

    auth_client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=other)}")
    assert auth_client.post("/api/v1/projects", {"name": "theirs"}, format="json").status_code == 201
