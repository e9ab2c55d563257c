"""Row-level security (auteur/core/rls.py): a query of the API that forgets its owner filter still sees
only its caller's rows; workers, the tests' setup and the admin see everything."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import requests
from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from auteur.core import rls
from auteur.users.models import Invitation, Membership, User, Workspace
from auteur.users.services import user_issue_token
from billing.models import StripeEvent
from credits.models import CreditAccount, CreditTransaction, TransactionType
from jobs.models import Job, JobEvent, JobStatus
from projects.models import Project
from tests.auteur.urls_rls import everything
from tests.factories import MediaFileFactory, ProjectFactory, VoiceCloneFactory, team_workspace
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


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_a_transaction", [False, True], ids=["on its own", "in a transaction"])
def test_a_query_sent_with_the_scope_that_fails_leaves_no_scope_behind(alice: User, bob: User, in_a_transaction: bool):
    """The scope's statement travels with the request's first query: when that query fails, the
    scope it carried is undone with it, and the next query sets it again before it runs."""
    alices, bobs = owned_rows(alice), owned_rows(bob)
    with rls.request_scope():
        rls.act_as(bob.pk)
        assert everything() == bobs  # the session is Bob's
        rls.act_as(alice.pk)  # a new caller: her first query carries her scope, and fails
        maybe_atomic = transaction.atomic() if in_a_transaction else contextlib.nullcontext()
        with pytest.raises(DatabaseError), maybe_atomic, connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0 FROM projects")
        assert everything() == alices
    assert len(everything()["projects"]) == 2


@pytest.mark.django_db(transaction=True)
def test_a_savepoint_rolled_back_after_a_query_that_carried_the_scope_leaves_the_transaction_usable(
    alice: User, bob: User
):
    """A rollback to a savepoint undoes a scope set inside the transaction; the next query carries it
    again and may fail, and the rollback of that failure needs no scope (the transaction refuses any
    statement but a rollback by then)."""
    alices, _ = owned_rows(alice), owned_rows(bob)
    with rls.request_scope(), transaction.atomic():
        rls.act_as(alice.pk)
        assert everything() == alices
        with connection.cursor() as cursor:
            cursor.execute("SAVEPOINT outer_one")
            cursor.execute("SAVEPOINT inner_one")
            cursor.execute("ROLLBACK TO SAVEPOINT inner_one")  # the scope is set again before the next query
            with pytest.raises(DatabaseError):
                cursor.execute("SELECT 1 / 0 FROM projects")  # carries the scope, and fails
            cursor.execute("ROLLBACK TO SAVEPOINT outer_one")
        assert everything() == alices  # the transaction goes on, in Alice's scope


@pytest.mark.django_db(transaction=True)
def test_sql_of_several_statements_gets_the_scope_on_its_own(alice: User, bob: User):
    """A statement sent after the scope's in the same message could undo it unseen (a ROLLBACK of
    the implicit transaction): SQL with a ";" gets the scope's statement first, on its own."""
    alices, bobs = owned_rows(alice), owned_rows(bob)
    with rls.request_scope():
        rls.act_as(bob.pk)
        assert everything() == bobs
        rls.act_as(alice.pk)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1; ROLLBACK")
        assert everything() == alices


@pytest.mark.django_db(transaction=True)
def test_the_scope_travels_with_the_first_query_in_one_statement(alice: User, sent_statements: list[str]):
    alices = owned_rows(alice)
    sent = sent_statements
    sent.clear()
    with rls.request_scope():
        rls.act_as(alice.pk)
        with connection.cursor() as cursor:
            cursor.execute("SELECT id::text FROM projects WHERE %s", [True])  # a placeholder after the scope's
            assert cursor.fetchall() == [(p,) for p in alices["projects"]]
            assert cursor.rowcount == 1
        assert len(sent) == 1 and sent[0].startswith("SELECT set_config('role', 'auteur_api'")
        with connection.cursor() as cursor:
            cursor.execute("UPDATE projects SET name = 'renamed' WHERE id IS NOT NULL")
            assert cursor.rowcount == 1  # the query's own count, not the scope's
        assert len(sent) == 2  # the session kept its scope
        rls.act_as(None)  # nobody's rows from here
        with connection.cursor() as cursor:
            cursor.execute("SHOW app.user_id")  # not a query: the scope's statement goes first, on its own
            assert cursor.fetchone() == ("",)
        assert len(sent) == 4 and sent[2].startswith("SELECT set_config")
    assert Project.objects.get().name == "renamed"


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
    alice: User, bob: User, make_user: Callable[..., User], make_token: Callable[..., str]
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
        # A first token creates its account, and its user edits the profile, as the API's login.
        newcomer = {"Authorization": f"Bearer {make_token(sub=str(uuid.uuid4()))}"}
        edited = requests.patch(f"{server.http}/api/v1/users/me", json={"name": "New"}, headers=newcomer, timeout=10)
        assert edited.status_code == 200, edited.text
        assert edited.json()["name"] == "New"


def test_every_table_holding_a_users_rows_has_a_policy():
    """A new table with a user's data must get its policy (auteur/core/rls.py owner_policy) in its
    migration; the tables below are the ones that need none."""
    no_policy = {
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


# ---- the API role's grants: what a request's connection reaches beyond its caller's rows


@pytest.fixture
def others(bob: User, make_user: Callable[..., User], superuser_client: Client) -> User:
    """What the database keeps beside users' rows: another account (bob, returned), a staff member's
    TOTP key, a signed-in session (superuser_client's) and a Stripe event's payload."""
    TOTPDevice.objects.create(user=make_user(is_staff=True), name="phone", confirmed=True)
    StripeEvent.objects.create(event_id="evt_1", type="customer.subscription.updated", created=datetime.now(UTC),
                               payload={"data": {"object": {"customer": "cus_1", "email": bob.email}}})
    return bob


# What a SQL injection in the API would try beyond row-level security, each refused by the role's
# privileges (SQLSTATE 42501). `later_things` stands for a table a later migration creates.
ATTACKS = {
    "the admin's TOTP keys": "SELECT key FROM otp_totp_totpdevice",
    "the sessions": "SELECT session_key, session_data FROM django_session",
    "Stripe's payloads": "SELECT payload FROM billing_stripe_events",
    "its own account made a superuser": "UPDATE users SET is_superuser = true, is_staff = true "
                                        "WHERE id = auteur_user_id()",
    "its own account given a password": "UPDATE users SET password = 'pbkdf2_sha256$1$x$y' WHERE id = auteur_user_id()",
    "the admin's lockouts cleared": "DELETE FROM axes_accessattempt",
    "the Stripe events forgotten": "DELETE FROM billing_stripe_events",
    "the ledger rewritten": "UPDATE credit_transactions SET amount = 1000",
    "a job's paid input changed": "UPDATE jobs SET input_params = '{}', credits_cost = 0",
    "credits minted": "UPDATE credit_accounts SET balance = balance + 100",
    "a budget reset": "UPDATE credit_spend_caps SET spent = 0",
    "a ledger entry forged": "INSERT INTO credit_transactions (id, account_id, user_id, amount, balance_after, type) "
                             "SELECT gen_random_uuid(), id, user_id, 100, balance + 100, 'bonus' FROM credit_accounts",
    "a table a later migration creates": "SELECT * FROM later_things",
}
REFUSED = "42501"  # insufficient_privilege


def injected(client: APIClient, sql: str, **params: str) -> dict[str, Any]:
    return client.post("/api/v1/injected", {"sql": sql, "params": params}, format="json").json()


@pytest.mark.urls("tests.auteur.urls_rls")
@pytest.mark.parametrize("sql", ATTACKS.values(), ids=ATTACKS.keys())
def test_a_requests_connection_reaches_nothing_beyond_its_callers_rows(
    sql: str, alice: User, others: User, client_for: Callable[[User], APIClient]
):
    """Through a real request (the SET ROLE of `make test`'s one login): each statement is refused."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE later_things (id integer)")  # as a migration would, as the owner

    assert injected(client_for(alice), sql) == {"refused": REFUSED}

    alice.refresh_from_db()
    assert not (alice.is_superuser or alice.is_staff) and not alice.has_usable_password()
    assert TOTPDevice.objects.count() == StripeEvent.objects.count() == 1


@pytest.mark.urls("tests.auteur.urls_rls")
def test_a_requests_connection_reads_no_other_accounts_email(
    alice: User, others: User, client_for: Callable[[User], APIClient], api_client: APIClient
):
    bob = others
    assert injected(client_for(alice), "SELECT id, email FROM users") == {
        "rows": [[str(alice.pk), alice.email]], "count": 1}
    assert injected(client_for(alice), "SELECT email FROM users WHERE id = %(bob)s", bob=str(bob.pk)) == {
        "rows": [], "count": 0}
    assert injected(api_client, "SELECT email FROM users") == {"rows": [], "count": 0}  # no token: nobody's


@pytest.mark.django_db(transaction=True)
def test_the_api_login_reaches_nothing_beyond_its_sessions_user(alice: User, others: User):
    """The API's own login (DATABASE_API_URL, production), where an injected statement may also
    name any user it likes: still one account's row at a time, and none of the rest."""
    bob = others
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE later_things (id integer)")
    try:
        with api_login() as session:
            session.execute("SELECT set_config('app.user_id', %s, false)", [str(alice.pk)])
            for what, sql in ATTACKS.items():
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    session.execute(sql)
                    pytest.fail(f"not refused: {what}")
            assert session.execute("SELECT id, email FROM users").fetchall() == [(alice.pk, alice.email)]
            assert session.execute("SELECT email FROM users WHERE id = %s", [bob.pk]).fetchall() == []
            # Naming a new account to create it a superuser (or staff, or with a password) is refused too.
            newcomer = uuid.uuid4()
            session.execute("SELECT set_config('app.user_id', %s, false)", [str(newcomer)])
            for flags in ("true, false, '!x'", "false, true, '!x'", "false, false, 'pbkdf2_sha256$1$x$y'"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                    session.execute(
                        "INSERT INTO users (id, email, email_verified, name, avatar_url, is_active, is_superuser, "
                        f"is_staff, password, created_at, updated_at) VALUES (%s, 'x@example.com', false, '', '', "
                        f"true, {flags}, now(), now())", [newcomer])
        assert not User.objects.filter(pk=newcomer).exists()
        bob.refresh_from_db()
        alice.refresh_from_db()
        assert not (alice.is_superuser or alice.is_staff or bob.is_superuser)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE later_things")


# The tables the API's role may use without a row-level policy, and why that is safe. Any other
# table granted to it must have a policy: a new table gets both in its migration (auteur/core/rls.py).
WITHOUT_POLICY: dict[str, str] = {}
# The functions that run as their owner (SECURITY DEFINER) which the role may call, and what they give.
AS_OWNER = {
    "auteur_waiting_jobs_before": "a count of the jobs waiting in a lane, nothing of any one job",
    "auteur_median_processing_ms": "a median duration of a type's recent jobs, nothing of any one job",
    "auteur_is_member": "whether the session's own user is a member of a workspace",
    "auteur_api_key": "the one API key whose secret's hash the caller knows (authentication)",
    # The ledger's statements (credits/migrations/0010_ledger_functions.py): the role writes no
    # balance, counter nor ledger row but through these.
    "auteur_ledger_charge": "a job's charge to the session's account: takes credits, never gives",
    "auteur_ledger_charge_uncapped": "the same, for an account without a cap",
    "auteur_ledger_charge_many": "a batch's charge: the sum of its entries, each taking credits",
    "auteur_ledger_refund": "1 to what a job's charge took, once, named and counted as the charge was",
    "auteur_ledger_refund_many": "refunds of many jobs, each tied to its charge as auteur_ledger_refund's",
}
# Every function that runs as its owner. Each runs with search_path pg_catalog, pg_temp and names every
# table and function of ours by its schema, so that nothing a session creates stands in for what it
# means (pg_temp last: a session's temporary objects are never found before the catalog's).
DEFINERS = set(AS_OWNER) | {"auteur_personal_workspace"}
DEFINER_SEARCH_PATH = "pg_catalog, pg_temp"


def test_every_table_granted_to_the_api_role_has_a_policy():
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT c.relname, c.relrowsecurity AND EXISTS (
                       SELECT FROM pg_policy p WHERE p.polrelid = c.oid
                       AND (0 = ANY(p.polroles) OR %(role)s::regrole = ANY(p.polroles)))
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg^_%%' ESCAPE '^'
              AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
              AND (has_any_column_privilege(%(role)s, c.oid, 'SELECT, INSERT, UPDATE, REFERENCES')
                   OR has_table_privilege(%(role)s, c.oid, 'DELETE, TRUNCATE, TRIGGER'))
        """, {"role": rls.API_ROLE})
        granted = dict(cursor.fetchall())
        cursor.execute("SELECT count(*) FROM pg_class WHERE relowner = %s::regrole", [rls.API_ROLE])
        owned = cursor.fetchone()[0]
    assert {table for table, policed in granted.items() if not policed} == set(WITHOUT_POLICY)
    assert "users" in granted and "otp_totp_totpdevice" not in granted
    assert owned == 0  # a table's owner is exempt from its policies


def test_the_api_role_has_no_default_privileges():
    """A table a later migration creates is the role's only if that migration grants it."""
    assert default_privileges() == 0


def test_the_functions_the_api_role_may_call_as_their_owner_are_known():
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND has_function_privilege(%s, p.oid, 'EXECUTE')
        """, [rls.API_ROLE])
        assert {row[0] for row in cursor.fetchall()} == set(AS_OWNER)


def test_every_function_that_runs_as_its_owner_pins_its_search_path():
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT p.proname, (SELECT substr(c, length('search_path=') + 1) FROM unnest(p.proconfig) c
                               WHERE c LIKE 'search^_path=%%' ESCAPE '^')
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        """)
        found = dict(cursor.fetchall())
        cursor.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", [rls.API_ROLE])
        may_create_in_public = cursor.fetchone()[0]
    assert set(found) == DEFINERS
    assert {name: path for name, path in found.items() if path != DEFINER_SEARCH_PATH} == {}
    assert not may_create_in_public


@pytest.fixture
def other_owner() -> Iterator[str]:
    """A role that once gave auteur_api default privileges of its own (another login ran migrations)."""
    name = f"old_owner_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} NOLOGIN")
    yield name
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {name}; DROP ROLE {name}")


def api_role_reaches(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT has_table_privilege(%s, %s, 'SELECT')", [rls.API_ROLE, table])
        return bool(cursor.fetchone()[0])


def default_privileges() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT a.oid) FROM pg_default_acl a, aclexplode(a.defaclacl) x "
                       "WHERE x.grantee = %s::regrole", [rls.API_ROLE])
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_a_database_migrated_before_gets_the_api_roles_grants_taken_back_and_given_again_in_reverse(
    other_owner: str,
):
    before, after = [("users", "0004_user_profile_edited_at")], [("users", "0005_api_grants")]
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        # As production has it: every table, and by default every later one.
        assert api_role_reaches("otp_totp_totpdevice") and api_role_reaches("django_session")
        assert default_privileges() == 2
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {other_owner} GRANT SELECT ON TABLES TO {rls.API_ROLE}")
        executor = MigrationExecutor(connection)
        executor.migrate(after)

        assert not api_role_reaches("otp_totp_totpdevice") and not api_role_reaches("django_session")
        assert default_privileges() == 0
        assert api_role_reaches("users") and api_role_reaches("projects")
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    executor = MigrationExecutor(connection)
    executor.migrate(before)  # and back, as it was
    try:
        assert api_role_reaches("otp_totp_totpdevice") and default_privileges() == 2
        with connection.cursor() as cursor:
            cursor.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'users'")
            assert cursor.fetchone()[0] is False
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


# ---- workspaces: a session sees the workspaces of its user and their members, and joins none


@pytest.fixture
def studio(bob: User) -> Workspace:
    """Bob's team workspace, which alice is not a member of."""
    return team_workspace(bob, "Bob's studio")


@pytest.mark.urls("tests.auteur.urls_rls")
def test_a_session_sees_only_the_workspaces_and_members_of_its_user(
    alice: User, bob: User, studio: Workspace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
):
    carol = make_user()
    Membership.objects.create(workspace=studio, user=carol, role="viewer")

    assert injected(client_for(alice), "SELECT id FROM workspaces")["rows"] == [[str(alice.pk)]]
    assert injected(client_for(alice), "SELECT user_id FROM workspace_members")["rows"] == [[str(alice.pk)]]
    seen = injected(client_for(carol), "SELECT workspace_id, user_id FROM workspace_members")["rows"]
    assert sorted(map(tuple, seen)) == sorted([(str(carol.pk), str(carol.pk)), (str(studio.pk), str(bob.pk)),
                                               (str(studio.pk), str(carol.pk))])


WORKSPACE_ATTACKS = {
    "a rename": "UPDATE workspaces SET name = 'taken'",
    "a seat in another's team": "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) "
                                "VALUES (%(studio)s, auteur_user_id(), 'owner', now())",
    "a seat for another in its own workspace": "INSERT INTO workspace_members (workspace_id, user_id, role, "
                                               "created_at) "
                                               "VALUES (auteur_user_id(), %(bob)s, 'owner', now())",
    "a team workspace of its own": "INSERT INTO workspaces (id, name, personal, created_by_id, created_at, updated_at) "
                                   "VALUES (gen_random_uuid(), 'x', false, auteur_user_id(), now(), now())",
    "a personal workspace for another": "INSERT INTO workspaces (id, name, personal, created_by_id, created_at, "
                                        "updated_at) VALUES (%(bob)s, 'x', true, %(bob)s, now(), now())",
    "its seat made an owner's": "UPDATE workspace_members SET role = 'owner'",
    "a member removed": "DELETE FROM workspace_members",
    "a workspace given away": "UPDATE workspaces SET created_by_id = %(bob)s",
    "an invitation to another's team": "INSERT INTO workspace_invitations (id, workspace_id, role, created_at, "
                                       "expires_at) VALUES (gen_random_uuid(), %(studio)s, 'owner', now(), now())",
    "an invitation taken": "UPDATE workspace_invitations SET accepted_at = now()",
}


@pytest.mark.urls("tests.auteur.urls_rls")
@pytest.mark.parametrize("sql", WORKSPACE_ATTACKS.values(), ids=WORKSPACE_ATTACKS.keys())
def test_a_requests_connection_joins_no_workspace_and_changes_no_seat(
    sql: str, alice: User, bob: User, studio: Workspace, client_for: Callable[[User], APIClient]
):
    answer = injected(client_for(alice), sql, studio=str(studio.pk), bob=str(bob.pk))

    assert answer == {"refused": REFUSED}
    assert set(Membership.objects.values_list("workspace_id", "user_id", "role")) == {
        (alice.pk, alice.pk, "owner"), (bob.pk, bob.pk, "owner"), (studio.pk, bob.pk, "owner")}


@pytest.mark.urls("tests.auteur.urls_rls")
def test_a_session_sees_only_the_invitations_of_its_users_workspaces(
    alice: User, bob: User, studio: Workspace, client_for: Callable[[User], APIClient]
):
    Invitation.objects.create(workspace=studio, role="owner", expires_at=datetime.now(UTC))
    assert injected(client_for(alice), "SELECT id FROM workspace_invitations") == {"rows": [], "count": 0}
    assert injected(client_for(bob), "SELECT role FROM workspace_invitations")["rows"] == [["owner"]]



@pytest.mark.django_db(transaction=True)
def test_a_session_naming_a_team_workspaces_id_gets_no_account_nor_seat_there(alice: User, bob: User):
    """The API's own login, which may name any id as its user: an account of a team workspace's id
    cannot be created (the team's own account has it), and no seat can be written there or anywhere."""
    studio = team_workspace(bob, "Bob's studio")
    newcomer = uuid.uuid4()
    with api_login() as session:
        session.execute("SELECT set_config('app.user_id', %s, false)", [str(newcomer)])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            session.execute(  # a team's account, to own a workspace of its own making
                "INSERT INTO users (id, email, email_verified, name, avatar_url, is_active, is_superuser, is_staff, "
                "is_team, password, created_at, updated_at) VALUES (%s, '', false, '', '', true, false, false, true, "
                "'!x', now(), now())", [newcomer])
        session.execute("SELECT set_config('app.user_id', %s, false)", [str(studio.pk)])
        with pytest.raises(psycopg.errors.UniqueViolation):
            session.execute(
                "INSERT INTO users (id, email, email_verified, name, avatar_url, is_active, is_superuser, is_staff, "
                "password, created_at, updated_at) VALUES (%s, '', false, '', '', true, false, false, '!x', now(), "
                "now())", [studio.pk])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute("INSERT INTO workspace_members (workspace_id, user_id, role, created_at) "
                            "VALUES (%s, %s, 'owner', now())", [studio.pk, studio.pk])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute("SELECT auteur_personal_workspace()")
    assert set(Membership.objects.filter(workspace=studio).values_list("user_id", flat=True)) == {bob.pk}
    assert User.objects.get(pk=studio.pk).is_team


def test_an_account_is_made_with_its_personal_workspace_and_removed_with_it(make_user: Callable[..., User]):
    """Whoever inserts a person's account (here the tests' own login, as the admin and scripts do)."""
    carol = make_user()
    assert Membership.objects.get(user=carol).workspace.personal

    carol.delete()

    assert not Workspace.objects.filter(pk=carol.pk).exists()


# ---- money: the API's role moves no balance and no spend counter but through the ledger's functions


@pytest.mark.django_db(transaction=True)
def test_an_injected_statement_moves_no_balance_nor_spend_counter(make_user: Callable[..., User]):
    """As the API's own login, acting for a team workspace whose member was charged: writing the
    balance, a counter or the ledger is refused, and the ledger's functions give nothing a charge did
    not take (a refund is 1 to its charge, once)."""
    from credits.selectors import ledger_check
    from credits.services.ledger import credit_deduct_for_job, credit_grant

    owner, bob = make_user(), make_user()
    team = team_workspace(owner)
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=1000, description="pool")
    credit_grant(user=bob, amount=50, description="bob's")
    job = Job.objects.create(user=account, member_id=owner.pk, type="tts", credits_cost=10).pk
    credit_deduct_for_job(user=account, job_id=job, amount=10, description="job", member_id=owner.pk)

    def state() -> tuple[int, int, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT (SELECT balance FROM credit_accounts WHERE user_id = %s), "
                           "(SELECT spent FROM credit_spend_caps WHERE user_id = %s AND subject_id = %s), "
                           "(SELECT count(*) FROM credit_transactions)", [team.pk, team.pk, owner.pk])
            return cursor.fetchone()

    before = state()
    assert before[:2] == (990, 10)
    refused = {
        "UPDATE credit_accounts SET balance = balance + 100": psycopg.errors.InsufficientPrivilege,
        "UPDATE credit_spend_caps SET spent = spent + 100": psycopg.errors.InsufficientPrivilege,
        "UPDATE credit_spend_caps SET spent = 0": psycopg.errors.InsufficientPrivilege,
        "INSERT INTO credit_spend_caps (id, user_id, scope, subject_id, month, spent, updated_at) "
        "SELECT gen_random_uuid(), user_id, 'workspace', user_id, '2020-01-01', 0, now() FROM credit_accounts":
            psycopg.errors.InsufficientPrivilege,
        "INSERT INTO credit_transactions (id, account_id, user_id, amount, balance_after, type) "
        "SELECT gen_random_uuid(), id, user_id, -10, balance, 'refund' FROM credit_accounts":
            psycopg.errors.InsufficientPrivilege,
        # A charge only takes; a batch's entries each take, and the account moves by their sum.
        f"SELECT * FROM auteur_ledger_charge(gen_random_uuid(), '{team.pk}', 100, 'mint', gen_random_uuid(), "
        "NULL, NULL)": psycopg.errors.InvalidParameterValue,
        f"SELECT * FROM auteur_ledger_charge_uncapped(gen_random_uuid(), '{team.pk}', 100, 'mint', "
        "gen_random_uuid(), NULL, NULL)": psycopg.errors.InvalidParameterValue,
        f"SELECT * FROM auteur_ledger_charge_many('{team.pk}', NULL, ARRAY[gen_random_uuid(), gen_random_uuid()], "
        "ARRAY[-1, 200], ARRAY[gen_random_uuid(), gen_random_uuid()], ARRAY['tts', 'tts'], ARRAY['a', 'b'])":
            psycopg.errors.InvalidParameterValue,
        # Another account than the one the session acts for.
        f"SELECT * FROM auteur_ledger_charge(gen_random_uuid(), '{bob.pk}', -50, 'drain', gen_random_uuid(), "
        "NULL, NULL)": psycopg.errors.InsufficientPrivilege,
        # A refund of no job's end (the job ended nowhere, or is still pending: ENDED_JOB_REFUND).
        f"SELECT * FROM auteur_ledger_refund(gen_random_uuid(), '{team.pk}', gen_random_uuid(), 100, 'mint')":
            psycopg.errors.InsufficientPrivilege,
        f"SELECT * FROM auteur_ledger_refund(gen_random_uuid(), '{team.pk}', '{job}', 10, 'still pending')":
            psycopg.errors.InsufficientPrivilege,
        f"SELECT auteur_ledger_refund_many('{team.pk}', ARRAY[gen_random_uuid(), gen_random_uuid()], "
        f"ARRAY[10, 500], ARRAY['{job}'::uuid, gen_random_uuid()], ARRAY['tts', 'tts'], ARRAY['a', 'b'])":
            psycopg.errors.InsufficientPrivilege,
    }
    # Refunds of more than the charge took, even where the job's row records that much (which only the
    # owner's login could write): nothing moves.
    nothing = [
        f"SELECT * FROM auteur_ledger_refund(gen_random_uuid(), '{team.pk}', '{job}', 11, 'more than charged')",
        f"SELECT auteur_ledger_refund_many('{team.pk}', ARRAY[gen_random_uuid(), gen_random_uuid()], "
        f"ARRAY[11, 11], ARRAY['{job}'::uuid, '{job}'::uuid], ARRAY['tts', 'tts'], ARRAY['a', 'b'])",
    ]
    with api_login() as session:
        session.execute("SELECT set_config('app.user_id', %s, false)", [str(team.pk)])
        for sql, error in refused.items():
            with pytest.raises(error):
                session.execute(sql)
                pytest.fail(f"not refused: {sql}")
        Job.objects.filter(pk=job).update(status=JobStatus.CANCELED, credits_refunded=True, credits_refund=11)
        for sql in nothing:
            assert session.execute(sql).fetchall() in ([], [(0,)]), sql
        assert state() == before
        # What a cancel does (its job ended canceled, its refund recorded, in the same transaction):
        # the charge given back once, its member's counter with it; never twice.
        Job.objects.filter(pk=job).update(credits_refund=10)
        refund = f"SELECT r_amount FROM auteur_ledger_refund(gen_random_uuid(), '{team.pk}', '{job}', 10, 'canceled')"
        assert session.execute(refund).fetchall() == [(10,)]
        with pytest.raises(psycopg.errors.UniqueViolation):
            session.execute(refund)
    assert state() == (1000, 0, before[2] + 1)
    assert CreditAccount.objects.get(user=bob).balance == 50
    assert ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_an_injected_refund_of_a_job_that_has_not_ended_is_refused_and_its_cancel_still_refunds(
    make_user: Callable[..., User],
):
    """The attack: as the API's own login, for its own job's charge while the job still waits or runs,
    call the ledger's refund, to get the credits back and have the job run all the same. Refused, by
    either function and whatever the session names (nobody, too), until the job has ended without
    success and by no more than its end recorded, which the session cannot rewrite; the job's own
    cancel still refunds it, once."""
    from credits.selectors import ledger_check
    from credits.services.ledger import credit_deduct_for_job, credit_grant

    alice = make_user()
    credit_grant(user=alice, amount=100, description="alice's")
    job = Job.objects.create(user=alice, member_id=alice.pk, project=ProjectFactory.create(user=alice),
                             type="tts", credits_cost=10, status=JobStatus.QUEUED)
    credit_deduct_for_job(user=alice, job_id=job.pk, amount=10, description="job", member_id=alice.pk)

    def state() -> tuple[int, int]:
        return (CreditAccount.objects.get(user=alice).balance,
                CreditTransaction.objects.filter(job_id=job.pk, type=TransactionType.REFUND).count())

    assert state() == (90, 0)
    refund = f"SELECT * FROM auteur_ledger_refund(gen_random_uuid(), '{alice.pk}', '{job.pk}', 10, 'mine back')"
    refund_many = (f"SELECT auteur_ledger_refund_many('{alice.pk}', ARRAY[gen_random_uuid()], ARRAY[10], "
                   f"ARRAY['{job.pk}'::uuid], ARRAY['tts'], ARRAY['mine back'])")
    with api_login() as session:
        for status, recorded in ((JobStatus.PENDING, 0), (JobStatus.QUEUED, 0), (JobStatus.PROCESSING, 0),
                                 (JobStatus.COMPLETED, 0), (JobStatus.QUEUED, 10),
                                 # Ended refunded in part, or nothing (no refund entry for the ledger's
                                 # one-per-job constraint to stop a second): no more than that.
                                 (JobStatus.CANCELED, 4), (JobStatus.FAILED, 0)):
            Job.objects.filter(pk=job.pk).update(status=status, credits_refund=recorded)
            for user_id in (str(alice.pk), ""):  # an injection may name nobody: the login still counts
                session.execute("SELECT set_config('app.user_id', %s, false)", [user_id])
                for sql in (refund, refund_many):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        session.execute(sql)
                        pytest.fail(f"not refused for a {status} job recording {recorded}: {sql}")
        # Nor may the session write that record itself (jobs 0027): an ended job keeps its status and
        # refund, and no job records a refund above its cost.
        session.execute("SELECT set_config('app.user_id', %s, false)", [str(alice.pk)])
        for status, recorded, sql in (
                (JobStatus.COMPLETED, 0, "SET status = 'canceled', credits_refund = 10, credits_refunded = true"),
                (JobStatus.CANCELED, 0, "SET credits_refund = 10"),
                (JobStatus.FAILED, 10, "SET status = 'queued'"),
                (JobStatus.QUEUED, 0, "SET status = 'canceled', credits_refund = 11")):
            Job.objects.filter(pk=job.pk).update(status=status, credits_refund=recorded)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                session.execute(f"UPDATE jobs {sql} WHERE id = %s", [job.pk])
                pytest.fail(f"not refused for a {status} job: {sql}")
            assert Job.objects.filter(pk=job.pk, status=status, credits_refund=recorded).exists()
        # Naming nobody does not let a session charge an account either.
        session.execute("SELECT set_config('app.user_id', '', false)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute(f"SELECT * FROM auteur_ledger_charge(gen_random_uuid(), '{alice.pk}', -5, 'drain', "
                            "gen_random_uuid(), NULL, NULL)")
    assert state() == (90, 0)

    # The cancel of the API (its own requests' role, the session naming alice): the job ends canceled
    # with its refund recorded, then is refunded, in one transaction.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, credits_refund=0)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=alice)}")
    response = client.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "canceled" and response.json()["credits_refunded"] is True
    assert state() == (100, 1)
    assert client.post(f"/api/v1/jobs/{job.pk}/cancel").status_code == 409
    assert state() == (100, 1)
    assert ledger_check() == []
