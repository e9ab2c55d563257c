"""Concurrent first submissions without a project make one Library, and each job is charged once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from auteur.users.services import user_issue_token
from credits.services.ledger import credit_grant
from jobs.models import Job
from projects.models import Project
from tests.projects.test_edl_support import clean_edl_store_fixture  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_edl_store")]


def test_concurrent_first_submissions_without_a_project_share_one_library(user):
    credit_grant(user=user, amount=100, type="bonus", description="test")
    token = user_issue_token(user=user)
    barrier = threading.Barrier(4)

    def submit(i: int) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        try:
            barrier.wait(timeout=30)
            return client.post("/api/v1/jobs/tts", {"text": f"Hello {i}"}, format="json").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(submit, range(4))) == [202] * 4
    library = Project.objects.get(user=user, is_library=True)
    assert set(Job.objects.filter(user=user).values_list("project_id", flat=True)) == {library.pk}
