"""Row-level security (auteur/rls.py): a query of the API that forgets its owner filter still sees
only its caller's rows; workers, the tests' setup and the admin see everything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import requests
from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.test import Client
from rest_framework.test import APIClient

from auteur import rls
from auteur.users.models import User
from auteur.users.services import user_issue_token
from credits.models import CreditAccount
from jobs.models import Job, JobEvent
from projects.models import Project
from tests.auteur.urls_rls import everything
from tests.factories import MediaFileFactory, ProjectFactory, VoiceCloneFactory
from tests.servers import asgi_server

pytestmark = pytest.mark.django_db


def owned_rows(user: User) -> dict[str, list[str]]:
    project = ProjectFactory.create(user=user)
    media = MediaFileFactory.create(project=project)
    voice = VoiceCloneFactory.create(user=user)
    job = Job.objects.create(user=user, project=project, type="tts", credits_cost=1)
    JobEvent.objects.create(job=job, type="submitted")
    CreditAccount.objects.create(user=user, balance=10)
    return {
        "projects": [str(project.pk)], "media": [str(media.pk)], "voices": [str(voice.pk)],
        "jobs": [str(job.pk)], "job_events": [str(job.pk)], "accounts": [str(user.pk)],
    }


NOTHING: dict[str, list[str]] = {
    "projects": [], "media": [], "voices": [], "jobs": [], "job_events": [], "accounts": [],
}


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.mark.urls("tests.auteur.urls_rls")
def test_a_view_that_forgot_its_owner_filter_returns_only_the_callers_rows(
    alice: User, bob: User, client_for: Callable[[User], APIClient]
):
    alices, bobs = owned_rows(alice), owned_rows(bob)

    assert client_for(alice).get("/api/v1/forgetful").json() == alices
    assert client_for(bob).get("/api/v1/forgetful").json() == bobs
    # Outside a request (a worker, a command, this test's own setup): every row.
    assert everything() == {name: sorted(alices[name] + bobs[name]) for name in alices}


@pytest.mark.urls("tests.auteur.urls_rls")
def test_an_unauthenticated_request_sees_no_users_rows(alice: User, api_client: APIClient):
    owned_rows(alice)
    assert api_client.get("/api/v1/forgetful").json() == NOTHING


@pytest.mark.urls("tests.auteur.urls_rls")
def test_a_view_that_forgot_its_owner_filter_cannot_write_another_users_row(
    alice: User, bob: User, client_for: Callable[[User], APIClient]
):
    bobs_project = ProjectFactory.create(user=bob, name="Bob's film")

    response = client_for(alice).post("/api/v1/forgetful-rename", {"project_id": str(bobs_project.pk)}, format="json")

    assert response.json() == {"renamed": 0}
    bobs_project.refresh_from_db()
    assert bobs_project.name == "Bob's film"


@pytest.mark.urls("tests.auteur.urls_rls")
def test_one_requests_user_never_reaches_the_next_request_on_the_same_connection(
    alice: User, bob: User, client_for: Callable[[User], APIClient], api_client: APIClient
):
    alices, bobs = owned_rows(alice), owned_rows(bob)
    # One thread, one connection, kept between requests (CONN_MAX_AGE): each request is moved to
    # its own caller before its first query, the unauthenticated one to nobody.
    assert client_for(alice).get("/api/v1/forgetful").json() == alices
    assert api_client.get("/api/v1/forgetful").json() == NOTHING
    assert client_for(bob).get("/api/v1/forgetful").json() == bobs
    assert client_for(alice).get("/api/v1/forgetful").json() == alices


def test_a_row_cannot_be_created_for_another_user(alice: User, bob: User):
    with rls.request_scope():
        rls.act_as(alice.pk)
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            Project.objects.create(user=bob, name="planted")
        assert Project.objects.filter(user=alice).count() == 0
    assert not Project.objects.filter(name="planted").exists()


def test_a_rolled_back_savepoint_does_not_leave_the_session_unrestricted(alice: User, bob: User):
    alices, _ = owned_rows(alice), owned_rows(bob)
    assert len(everything()["projects"]) == 2  # the session: the login's own role, unrestricted
    savepoint = transaction.savepoint()
    with rls.request_scope():
        rls.act_as(alice.pk)
        # The session is moved to Alice inside the savepoint; rolling back to it undoes that
        # move too, and the session is unrestricted again under a scope that says Alice.
        assert everything() == alices
        transaction.savepoint_rollback(savepoint)
        assert everything() == alices


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_does_not_leave_the_session_unrestricted(alice: User, bob: User):
    alices, _ = owned_rows(alice), owned_rows(bob)
    assert len(everything()["projects"]) == 2
    with rls.request_scope():
        rls.act_as(alice.pk)
        with pytest.raises(RuntimeError), transaction.atomic():
            assert everything() == alices  # the session moved to Alice inside the transaction
            raise RuntimeError
        assert everything() == alices


def test_the_admin_sees_every_users_rows(alice: User, bob: User, superuser_client: Client):
    ProjectFactory.create(user=alice, name="Alice's film")
    ProjectFactory.create(user=bob, name="Bob's film")

    page = superuser_client.get("/admin/projects/project/").content.decode()

    assert "Alice&#x27;s film" in page and "Bob&#x27;s film" in page


def test_trusted_views_get_the_owners_login_where_the_api_has_its_own(settings_dict: dict[str, Any]):
    """With DATABASE_API_URL the API's `default` is auteur_api's login; a trusted view's request
    runs on the owner's connection, and the next request on the API's again."""
    connections.settings[rls.OWNER_ALIAS] = settings_dict
    try:
        api = connections["default"]
        with rls.request_scope():
            with rls.trusted():
                assert connections["default"].alias == rls.OWNER_ALIAS
            assert connections["default"] is api
    finally:
        connections[rls.OWNER_ALIAS].close()
        del connections.settings[rls.OWNER_ALIAS]


@pytest.fixture
def settings_dict() -> dict[str, Any]:
    return dict(connection.settings_dict)


def api_login() -> psycopg.Connection[Any]:
    """A session as the API's own login (DATABASE_API_URL), on the test database."""
    db = settings.DATABASES["default"]
    return psycopg.connect(host=db["HOST"], port=db["PORT"], dbname=db["NAME"], user=rls.API_ROLE, autocommit=True)


@pytest.mark.django_db(transaction=True)
def test_the_api_login_cannot_lift_its_restriction(alice: User, bob: User):
    """What a SQL injection in the API could try, as the API's own login: no statement it can run
    shows more than the one user its session names."""
    alices, _ = owned_rows(alice), owned_rows(bob)
    with api_login() as session:
        def projects() -> list[str]:
            return sorted(str(row[0]) for row in session.execute("SELECT id FROM projects"))

        assert projects() == []  # no user named: no user's rows
        session.execute("SELECT set_config('app.user_id', %s, false)", [str(alice.pk)])
        assert projects() == alices["projects"]
        for lift in ("RESET ROLE", "SET ROLE NONE", "SELECT set_config('role', 'none', false)"):
            session.execute(lift)
            assert projects() == alices["projects"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute(f"SET ROLE {connection.settings_dict['USER']}")
        session.execute("SET row_security = off")  # refuses to run a query policies would filter
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            projects()
        session.execute("RESET row_security")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute("ALTER TABLE projects DISABLE ROW LEVEL SECURITY")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute("DELETE FROM credit_transactions")  # the ledger is append-only


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_its_own_login_the_api_serves_each_user_their_rows_and_the_admin_everyones(
    alice: User, bob: User, make_user: Callable[..., User]
):
    """A real server with DATABASE_API_URL, as `make run` and production run the API."""
    alices_project = ProjectFactory.create(user=alice, name="Alice's film")
    bobs_project = ProjectFactory.create(user=bob, name="Bob's film")
    staff = Client()
    staff.force_login(make_user(is_staff=True, is_superuser=True))
    db = settings.DATABASES["default"]
    api_url = f"postgres://{rls.API_ROLE}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    with asgi_server(DATABASE_API_URL=api_url) as server:
        as_alice = {"Authorization": f"Bearer {user_issue_token(user=alice)}"}
        listed = requests.get(f"{server.http}/api/v1/projects", headers=as_alice, timeout=10)
        assert listed.status_code == 200, listed.text
        assert [p["id"] for p in listed.json()["projects"]] == [str(alices_project.pk)]
        bobs = requests.get(f"{server.http}/api/v1/projects/{bobs_project.pk}", headers=as_alice, timeout=10)
        assert bobs.status_code == 404
        page = requests.get(f"{server.http}/admin/projects/project/", timeout=10,
                            cookies={"sessionid": staff.cookies["sessionid"].value})
        assert page.status_code == 200
        assert "Alice&#x27;s film" in page.text and "Bob&#x27;s film" in page.text


def test_every_table_holding_a_users_rows_has_a_policy():
    """A new table with a user's data must get its policy (auteur/rls.py owner_policy) in its
    migration; the tables below are the ones that need none."""
    no_policy = {
        "users",  # read to authenticate (its id is the token's subject)
        "django_admin_log", "otp_totp_totpdevice", "users_groups", "users_user_permissions",  # staff only
    }
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT DISTINCT c.relname FROM pg_constraint k
            JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
            WHERE k.contype = 'f' AND r.relname IN ('users', 'jobs', 'webhook_deliveries')
        """)
        user_tables = {row[0] for row in cursor.fetchall()} | {"users"}
        cursor.execute("SELECT relname FROM pg_class WHERE relrowsecurity AND relkind = 'r'")
        protected = {row[0] for row in cursor.fetchall()}
    assert user_tables - no_policy == protected


def test_unknown_user_ids_are_refused():
    with rls.request_scope(), pytest.raises(ValueError):
        rls.act_as("1; RESET ROLE")
