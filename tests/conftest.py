from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import psycopg
import pytest
import redis
from django.conf import settings
from django.core.management.base import CommandError
from django.test import Client, TransactionTestCase
from rest_framework.test import APIClient

from auteur.core import publishing, silence
from auteur.users.models import User
from auteur.users.services import user_issue_token
from auteur.users.workspace_context import show_balances
from jobs.events import stream
from tests import parallel, worker_pool
from tests.factories import UserFactory

_fixture_teardown = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]  # not in the stubs


def _flush_retrying_deadlocks(self: TransactionTestCase) -> None:
    """A transactional test's flush, tried again when PostgreSQL ends it as a deadlock.

    A worker kept from one test to the next (tests/worker_pool.py, a module's own) may still be
    ending a job of the test when its data is flushed: the flush locks table after table while the
    worker's transaction holds some job rows and waits for another, and PostgreSQL ends one of the
    two. Ending the flush leaves nothing behind (it runs in one transaction), and by the next try
    the worker's transaction has ended (its rows then found gone, as the worker's docstring says).
    Any other error of the flush, or a fourth deadlock, fails the teardown as before."""
    for attempt in range(4):
        try:
            _fixture_teardown(self)
            return
        except CommandError as exc:
            if attempt == 3 or not _is_deadlock(exc):
                raise
            time.sleep(0.2 * (attempt + 1))


def _is_deadlock(exc: BaseException) -> bool:
    """Whether PostgreSQL's deadlock error is the cause of `exc` (Django wraps psycopg's error, and
    the flush command wraps Django's)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, psycopg.errors.DeadlockDetected):
            return True
        cause = cause.__cause__
    return False


TransactionTestCase._fixture_teardown = _flush_retrying_deadlocks  # type: ignore[attr-defined]


def pytest_report_header(config: pytest.Config) -> str | None:
    """The PostgreSQL the run is on: `make test` runs part of the suite again on production's major."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return None
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        return f"PostgreSQL: not reached ({type(exc).__name__})"
    return f"PostgreSQL: {row[0] if row else '?'}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture of the test (module-scoped ones included): the kept worker meets only the
    # tests that ask for it (tests/worker_pool.py).
    if worker_pool.FIXTURE not in getattr(item, "fixturenames", ()):
        worker_pool.release()


def pytest_sessionfinish(session: pytest.Session) -> None:
    worker_pool.release()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Under xdist, each process's test database is a copy of one migrated template (tests/parallel.py)."""
    template = os.environ.get(parallel.TEMPLATE_VAR)
    if template and os.environ.get(parallel.WORKER_VAR):
        settings.DATABASES["default"].setdefault("TEST", {})["TEMPLATE"] = parallel.migrated_template(
            os.environ["DATABASE_URL"], template)


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Rate-limit windows are shared through Redis; each test starts with none used."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter("rl:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    silence.forget()  # a server a test left silent (a faked time-out) answers the next test
    publishing.unsent.forget()  # and what a test left held is not done during the next
    stream.unstreamed.forget()
    # Nothing outside a request sees a balance until a seat says so: no test inherits what an
    # earlier one's request left in this thread.
    show_balances(False)


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(email: str | None = None, **extra: Any) -> User:
        if email:
            extra["email"] = email
        return UserFactory.create(**extra)

    return make


@pytest.fixture
def user(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def make_token() -> Callable[..., str]:
    """A token with the given claims over sane defaults; `key`/`alg` to forge bad ones."""

    def make(*, key: Any = None, alg: str = "HS256", headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "sub": str(uuid.uuid4()),
            "email": f"tok-{uuid.uuid4().hex[:8]}@example.com",
            "aud": "authenticated",
            "exp": int((now + timedelta(hours=1)).timestamp()),
            "iat": int(now.timestamp()),
            "iss": settings.AUTEUR_JWT_ISSUER or None,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, settings.AUTEUR_JWT_SECRET if key is None else key, algorithm=alg, headers=headers)

    return make


@pytest.fixture
def api_client() -> APIClient:
    return APIClient(raise_request_exception=False)


@pytest.fixture
def auth_client(user: User) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}")
    return client


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    def make(user: User) -> APIClient:
        client = APIClient(raise_request_exception=False)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}")
        return client

    return make


@pytest.fixture
def superuser_client(make_user: Callable[..., User]) -> Client:
    """The admin as a superuser sees it (signed in without the login form)."""
    client = Client()
    client.force_login(make_user(email="boss@example.com", is_staff=True, is_superuser=True))
    return client
