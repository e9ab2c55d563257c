"""The user's default "Library" project: made once, even by concurrent first uses."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import IntegrityError, connection

from projects.models import Project
from projects.services import project_library_get_or_create
from tests.factories import ProjectFactory, UserFactory
from tests.projects.test_edl_support import clean_edl_store_fixture  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_edl_store")]


def test_concurrent_first_uses_make_one_library():
    user = UserFactory.create()
    barrier = threading.Barrier(6)

    def first_use(_: int) -> object:
        try:
            barrier.wait(timeout=30)
            return project_library_get_or_create(user=user).pk
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = set(pool.map(first_use, range(6)))
    assert len(ids) == 1
    assert Project.objects.filter(user=user, is_library=True).count() == 1


def test_each_user_has_their_own_library_and_the_database_refuses_a_second():
    one, two = UserFactory.create(), UserFactory.create()
    assert project_library_get_or_create(user=one).pk != project_library_get_or_create(user=two).pk
    with pytest.raises(IntegrityError):
        ProjectFactory.create(user=one, name="Another library", is_library=True)
