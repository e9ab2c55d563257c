"""No deadlock in the money's paths: charges (submissions from members and API keys), refunds
(cancels), cap changes and role changes of one team workspace, raced from many connections, take
their locks in the one order of credits/lock_objects.py. PostgreSQL's own count of the deadlocks it
broke (pg_stat_database.deadlocks) must not move, and no answer is a 5xx (a deadlock is a 503)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
from django.db import connection

from auteur.users.key_services import api_key_create
from auteur.users.models import Membership, User
from auteur.users.workspace_services import member_set_role
from credits.selectors import credit_balance_get, ledger_check
from credits.services.budgets import key_cap_set, member_budget_set, workspace_cap_set
from credits.services.ledger import credit_grant
from tests.factories import acting_in, key_client, team_workspace

pytestmark = pytest.mark.django_db(transaction=True)

SUBMISSIONS, CANCELS, CAPS, ROLES = 40, 16, 8, 8


def deadlocks() -> int:
    """The deadlocks PostgreSQL broke in this database, once every other session of it has ended (a
    session reports its counts when it goes idle or ends)."""
    with connection.cursor() as cursor:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0] == 0:
                break
            time.sleep(0.1)
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def race(works: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(works))

    def run(work: Callable[[], Any]) -> Any:
        try:
            barrier.wait(timeout=60)
            return work()
        except BaseException as exc:  # collected and asserted on by the test
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(works)) as pool:
        return list(pool.map(run, works))


def test_charges_refunds_cap_and_role_changes_raced_deadlock_nowhere(make_user: Callable[..., User]):
    owner, editors, shifting = make_user(), [make_user(), make_user()], make_user()
    team = team_workspace(owner)
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=100_000, description="pool")
    for member in editors:
        Membership.objects.create(workspace=team, user=member, role="editor")
    Membership.objects.create(workspace=team, user=shifting, role="editor")
    seat = Membership.objects.get(workspace=team, user=owner)
    keys = [api_key_create(membership=seat, name=f"ci {i}", scopes=["jobs:write", "projects:write"])
            for i in range(2)]
    clients = [acting_in(member, team) for member in editors] + [key_client(text) for _, text in keys]
    project = clients[0].post("/api/v1/projects", {"name": "race"}, format="json").json()["id"]

    def body(i: int) -> dict[str, str]:
        # Each its own text (no cached result); every other one names no project: it goes to the
        # workspace's Library, which a submission finds or makes under the account's `users` row lock.
        # (A line the content policy passes for every i here: what is raced is the ledger, not the screener.)
        return {"text": f"Line {i} of the script."} | ({"project_id": project} if i % 4 == 3 else {})

    # Jobs to cancel during the race (a refund each).
    submitted = [clients[i % len(clients)].post("/api/v1/jobs/tts", body(-1 - i), format="json")
                 for i in range(CANCELS)]
    assert [answer.status_code for answer in submitted] == [202] * CANCELS, submitted[-1].content
    to_cancel = [answer.json()["job_id"] for answer in submitted]
    before = deadlocks()

    def submit(i: int) -> int:
        return clients[i % len(clients)].post("/api/v1/jobs/tts", body(i), format="json").status_code

    def cancel(i: int) -> int:
        return clients[i % len(clients)].post(f"/api/v1/jobs/{to_cancel[i]}/cancel", format="json").status_code

    def cap(i: int) -> int:
        limit = 50_000 + i
        if i % 3 == 0:
            workspace_cap_set(membership=seat, monthly_limit=limit)
        elif i % 3 == 1:
            key_cap_set(membership=seat, key_id=keys[i % 2][0].pk, monthly_limit=limit, job_limit=None)
        else:
            member_budget_set(membership=seat, user_id=editors[i % 2].pk, monthly_limit=limit)
        return 200

    def role(i: int) -> int:
        member_set_role(membership=seat, user_id=shifting.pk, role=("admin", "editor", "viewer")[i % 3])
        return 200

    works: list[Callable[[], Any]] = [partial(submit, i) for i in range(SUBMISSIONS)]
    works += [partial(cancel, i) for i in range(CANCELS)]
    works += [partial(cap, i) for i in range(CAPS)]
    works += [partial(role, i) for i in range(ROLES)]
    results = race(works)

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    answers = Counter(results)
    assert all(status < 500 for status in answers), answers
    assert answers[202] >= SUBMISSIONS  # every submission accepted (the pool and the caps cover them)
    assert deadlocks() == before
    assert ledger_check() == []


def test_the_count_sees_a_deadlock(make_user: Callable[..., User]):
    """The instrument: two transactions that lock two accounts in opposite orders are a deadlock
    that PostgreSQL breaks, and the count above moves."""
    from django.db import transaction

    from credits.lock_objects import credit_account_lock

    accounts = []
    for _ in range(2):
        user = make_user()
        accounts.append(credit_grant(user=user, amount=1, description="x").account_id)
    before = deadlocks()
    both_hold_one = threading.Barrier(2)

    def cross(first: int) -> None:
        with transaction.atomic():
            credit_account_lock(account_id=accounts[first])
            both_hold_one.wait(timeout=30)
            credit_account_lock(account_id=accounts[1 - first])

    results = race([partial(cross, 0), partial(cross, 1)])
    assert sum("deadlock detected" in str(r) for r in results) == 1, results
    assert deadlocks() == before + 1


def test_a_refund_meets_a_submission_holding_the_accounts_users_row_without_a_deadlock(
    make_user: Callable[..., User],
):
    """The order's step 3 before step 4: a submission to the Library holds the account's `users` row
    (the quota lock) and then waits for the account, which a refund holds while its ledger row's
    foreign key takes FOR KEY SHARE on that same `users` row (at its commit: the check is deferred; a
    charge's commit does the same). The quota lock is FOR NO KEY UPDATE, which that KEY SHARE does not
    wait for: the refund commits, then the charge."""
    from django.db import transaction

    from auteur.core.quotas import quota_lock
    from credits.services.ledger import credit_deduct_for_job, credit_refund_job

    user = make_user()
    credit_grant(user=user, amount=100, description="x")
    charged = uuid.uuid4()
    credit_deduct_for_job(user=user, job_id=charged, amount=10, description="job")
    before = deadlocks()
    submission_holds_the_users_row = threading.Event()
    refund_started = threading.Event()

    def submission() -> str:
        with transaction.atomic():
            quota_lock(user_id=user.pk)
            submission_holds_the_users_row.set()
            refund_started.wait(timeout=30)
            time.sleep(0.5)  # the refund holds the account by now, and its ledger row waits or is written
            credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=5, description="job", new_job=True)
        return "charged"

    def refund() -> str:
        submission_holds_the_users_row.wait(timeout=30)
        refund_started.set()
        credit_refund_job(job_id=charged, reason="canceled")
        return "refunded"

    results = race([submission, refund])
    assert results == ["charged", "refunded"], results
    assert deadlocks() == before
    assert credit_balance_get(user=user) == 100 - 10 + 10 - 5
    assert ledger_check() == []
