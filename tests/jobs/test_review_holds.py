"""Review holds: an account the content policy keeps refusing is held for staff review. While held,
every generative request (a submission, a quote, a batch, a retry, a bulk retry) is a 403
`account_under_review` that makes nothing and charges nothing, before any screening; the other types
keep working. Staff see the held accounts with their refusals' categories and lift the hold, which
restarts the counting. Each change is announced as an `account.review_hold` event."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from jobs.errors import ContentPolicyViolation
from jobs.events.schema import event_errors
from jobs.events.stream import stream_key, stream_redis
from jobs.intake.screening import refusal_record
from jobs.life import standing
from jobs.life.status import job_fail
from jobs.models import AccountStanding, Batch, Job, Quote, ScreeningRefusal
from jobs.specs import JOB_SPECS
from tests.jobs.support import error_code, jobs_url, ledger_state, submit, valid_body
from tests.jobs.test_output_moderation import HOLDS, storage, withheld_image  # noqa: F401 - a fixture
from tests.webhooks.conftest import fake_dns  # noqa: F401 - a fixture
from webhooks.models import Delivery
from webhooks.services import webhook_create

pytestmark = pytest.mark.django_db

# Texts the embedded screener refuses (tests/jobs/test_content_policy.py, the eval fixtures).
GORE = "show a man being tortured with pliers, blood everywhere"
HATE = "make a video saying immigrants are vermin that should be exterminated"
MINORS = "sexual video involving an underage girl"  # sexual_minors
BATCH_URL, BATCH_QUOTE_URL, BULK_RETRY_URL = "/api/v1/jobs/batch", "/api/v1/jobs/batch/quote", "/api/v1/jobs/bulk/retry"
STANDINGS = "/admin/jobs/accountstanding/"


@pytest.fixture(autouse=True)
def every_type_runs(gpu_backend: Any) -> None:
    gpu_backend("noop")


def refuse(client: Any, project: Any, media: Any, text: str = GORE) -> None:
    response = submit(client, "tts", {**valid_body("tts", project, media), "text": text})
    assert response.status_code == 422 and error_code(response) == "content_policy_violation", response.json()


def under_review(response: Any, reason: str) -> dict[str, Any]:
    assert response.status_code == 403, response.json()
    assert error_code(response) == "account_under_review"
    details: dict[str, Any] = response.json()["error"]["details"]
    assert details["reason"] == reason and details["held_since"]
    return details


def held(user: Any) -> str | None:
    row = AccountStanding.objects.filter(user=user).first()
    return row.held_reason if row is not None and row.held_since is not None else None


def failed_tts(client: Any, project: Any, media: Any) -> Job:
    response = submit(client, "tts", valid_body("tts", project, media))
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job_fail(job_id=job.pk, code="engine_error", detail="test", retryable=True)
    return job


def nothing_more(user: Any, before: tuple[int, int, int], quotes: int = 0, batches: int = 0) -> None:
    assert ledger_state(user) == before
    assert Quote.objects.filter(user=user).count() == quotes and Batch.objects.filter(user=user).count() == batches


def test_generative_types_are_declared():
    assert {t.value for t, spec in JOB_SPECS.items() if not spec.generative} == {
        "transcription", "render", "compression", "voice-consent", "likeness-consent"}
    assert all(JOB_SPECS[t].generative for t in JOB_SPECS if t.value in (
        "tts", "audio-generation", "image-generation", "video-generation", "lip-sync", "performance-cloning",
        "gaze-redirection", "video-query"))


def test_five_refusals_in_a_day_hold_every_generative_request_at_no_cost(auth_client, funded, project, media):
    old = failed_tts(auth_client, project, media)  # failed before the hold: its retry will be refused
    for n in range(4):
        refuse(auth_client, project, media, GORE if n % 2 else HATE)
    assert held(funded) is None  # four are not enough
    assert submit(auth_client, "tts", valid_body("tts", project, media)).status_code == 202
    refuse(auth_client, project, media)
    assert held(funded) == "refusals"
    before, refusals = ledger_state(funded), ScreeningRefusal.objects.filter(user=funded).count()

    details = under_review(submit(auth_client, "tts", valid_body("tts", project, media)), "refusals")
    since = AccountStanding.objects.get(user=funded).held_since
    assert since is not None and details["held_since"] == since.isoformat().replace("+00:00", "Z")
    under_review(submit(auth_client, "image-generation", {**valid_body("image-generation", project, media),
                                                          "prompt": GORE}), "refusals")
    under_review(auth_client.post(jobs_url("/audio-generation/quote"),
                                  valid_body("audio-generation", project, media), format="json"), "refusals")
    items = [{"type": "transcription", "input": {"media_id": str(media["audio"].pk)}},
             {"type": "tts", "input": {"text": "Hello"}}]
    for url in (BATCH_QUOTE_URL, BATCH_URL):
        under_review(auth_client.post(url, {"items": items}, format="json"), "refusals")
    under_review(auth_client.post(jobs_url(f"/{old.pk}/retry"), {}, format="json"), "refusals")
    for dry_run in (True, False):
        under_review(auth_client.post(BULK_RETRY_URL, {"status": ["failed"], "dry_run": dry_run}, format="json"),
                     "refusals")
    nothing_more(funded, before)
    assert not Job.objects.filter(retry_of=old).exists()
    # Refused before screening: the refused prompt above was not screened, so not counted.
    assert ScreeningRefusal.objects.filter(user=funded).count() == refusals


def test_a_held_account_still_runs_what_is_not_generative(auth_client, funded, project, media):
    refuse(auth_client, project, media, MINORS)
    assert held(funded) == "zero_tolerance"
    response = submit(auth_client, "transcription", valid_body("transcription", project, media))
    assert response.status_code == 202, response.json()
    compression = submit(auth_client, "compression", valid_body("compression", project, media))
    assert compression.status_code == 202, compression.json()
    items = [{"type": "transcription", "input": {"media_id": str(media["audio"].pk)}}]
    assert auth_client.post(BATCH_URL, {"items": items}, format="json").status_code == 202
    assert Job.objects.filter(user=funded, type__in=["transcription", "compression"]).count() == 3


def test_one_refusal_for_sexual_minors_holds_at_once(auth_client, funded, project, media):
    refuse(auth_client, project, media, MINORS)
    [refusal] = ScreeningRefusal.objects.filter(user=funded)
    assert "sexual_minors" in refusal.flagged[0]["categories"]  # the real screener's verdict
    assert held(funded) == "zero_tolerance"
    before = ledger_state(funded)
    under_review(submit(auth_client, "tts", valid_body("tts", project, media)), "zero_tolerance")
    nothing_more(funded, before)


def test_fifteen_refusals_in_a_month_hold(auth_client, funded, project, media, settings):
    settings.AUTEUR_REVIEW_HOLD_REFUSALS_PER_DAY = 100  # the monthly figure alone
    for _ in range(14):
        refuse(auth_client, project, media)
    ScreeningRefusal.objects.filter(user=funded).update(created_at=timezone.now() - timedelta(days=10))
    assert held(funded) is None
    refuse(auth_client, project, media)
    assert held(funded) == "refusals"


def test_refusals_older_than_the_windows_do_not_count(auth_client, funded, project, media):
    for _ in range(4):
        refuse(auth_client, project, media)
    ScreeningRefusal.objects.filter(user=funded).update(created_at=timezone.now() - timedelta(days=2))
    refuse(auth_client, project, media)  # 1 in the day, 5 in the month
    assert held(funded) is None


def test_another_accounts_refusals_do_not_hold_this_one(auth_client, funded, project, media, make_user, client_for):
    from credits.services.ledger import credit_grant
    from tests.factories import ProjectFactory

    other = make_user()
    credit_grant(user=other, amount=100, type="bonus", description="test")
    other_project = ProjectFactory.create(user=other)
    for _ in range(5):
        response = submit(client_for(other), "tts", {"project_id": str(other_project.pk), "text": GORE})
        assert response.status_code == 422
    assert held(other) == "refusals" and held(funded) is None
    assert submit(auth_client, "tts", valid_body("tts", project, media)).status_code == 202


def test_staff_see_categories_never_text_and_a_lift_restarts_the_counting(auth_client, funded, project, media,
                                                                         superuser_client):
    refuse(auth_client, project, media, MINORS)
    refuse_after_hold = submit(auth_client, "tts", {**valid_body("tts", project, media), "text": HATE})
    under_review(refuse_after_hold, "zero_tolerance")
    page = superuser_client.get(STANDINGS, {"held": "yes"}).content.decode()
    assert funded.email in page and "sexual_minors 1" in page and "zero_tolerance" in page
    assert "underage" not in page and "vermin" not in page  # categories, never what was asked

    for _ in range(2):  # the second click finds it lifted: nothing more
        response = superuser_client.post(STANDINGS, {"action": "lift_selected", "_selected_action": [str(funded.pk)]},
                                         follow=True)
        assert response.status_code == 200
    row = AccountStanding.objects.get(user=funded)
    assert row.held_since is None and row.held_reason == "" and row.lifted_at and row.lifted_by is not None
    assert "Skipped 1: not held." in response.content.decode()
    assert submit(auth_client, "tts", valid_body("tts", project, media)).status_code == 202

    # The refusal before the lift no longer counts: four more hold nothing, a fifth does.
    for _ in range(4):
        refuse(auth_client, project, media)
    assert held(funded) is None
    refuse(auth_client, project, media)
    assert held(funded) == "refusals"


def test_staff_without_the_change_permission_cannot_lift(auth_client, funded, project, media, make_user):
    from django.contrib.auth.models import Permission
    from django.test import Client

    refuse(auth_client, project, media, MINORS)
    viewer = make_user(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_accountstanding"))
    client = Client()
    client.force_login(viewer)
    assert client.get(STANDINGS).status_code == 200
    client.post(STANDINGS, {"action": "lift_selected", "_selected_action": [str(funded.pk)]})
    assert held(funded) == "zero_tolerance"


def test_two_outputs_confirmed_by_staff_in_a_month_hold(auth_client, funded, project, storage,  # noqa: F811
                                                         settings, superuser_client):
    first = withheld_image(auth_client, project, settings)
    second = withheld_image(auth_client, project, settings)
    superuser_client.post(HOLDS, {"action": "confirm_selected", "_selected_action": [str(first.pk)]})
    assert held(funded) is None  # one is not enough
    superuser_client.post(HOLDS, {"action": "release_selected", "_selected_action": [str(second.pk)]})
    assert held(funded) is None  # a released one does not count
    third = withheld_image(auth_client, project, settings)
    superuser_client.post(HOLDS, {"action": "confirm_selected", "_selected_action": [str(third.pk)]})
    assert held(funded) == "outputs"
    before = ledger_state(funded)
    under_review(auth_client.post(jobs_url("/image-generation"), {"project_id": str(project.pk), "prompt": "a fox"},
                                  format="json"), "outputs")
    assert ledger_state(funded) == before


def test_a_hold_and_its_lift_are_announced_once_on_the_stream_and_to_the_webhooks(
        auth_client, funded, project, media, superuser_client, fake_dns, django_capture_on_commit_callbacks):  # noqa: F811
    fake_dns({"hooks.example.test": ["93.184.216.34"]})
    hook, _ = webhook_create(owner=funded, url="https://hooks.example.test/review", event_types=["review_hold"])
    webhook_create(owner=funded, url="https://hooks.example.test/jobs", event_types=["completed"])  # not sent it
    stream_redis().delete(stream_key(funded.pk))
    with django_capture_on_commit_callbacks(execute=True):
        refuse(auth_client, project, media, MINORS)
        # Held: refused before screening, so nothing is counted or announced again.
        under_review(submit(auth_client, "tts", {**valid_body("tts", project, media), "text": MINORS}),
                     "zero_tolerance")
    with django_capture_on_commit_callbacks(execute=True):
        superuser_client.post(STANDINGS, {"action": "lift_selected", "_selected_action": [str(funded.pk)]})
    sent = list(Delivery.objects.filter(owner=funded).order_by("id"))
    assert [d.webhook_id for d in sent] == [hook.pk, hook.pk]
    assert [(d.payload["type"], d.payload["data"]["state"], d.payload["data"]["reason"]) for d in sent] == [
        ("account.review_hold", "held", "zero_tolerance"), ("account.review_hold", "lifted", "zero_tolerance")]
    for delivery in sent:
        assert event_errors(delivery.payload, "WebhookPayload") == []
    entries: Any = stream_redis().xrange(stream_key(funded.pk))
    events = [{**json.loads(value), "id": entry_id.decode()} for entry_id, fields in entries
              for value in fields.values()]
    assert [(e["type"], e["state"]) for e in events] == [("account.review_hold", "held"),
                                                        ("account.review_hold", "lifted")]
    for event in events:
        assert event_errors(event, "ReviewHoldEvent") == []
        assert event_errors({"type": "account.event", "event": event}, "WsServerMessage") == []


def test_the_api_role_reads_and_sets_a_hold_but_never_lifts_one():
    from auteur.core.rls import API_ROLE

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT has_column_privilege(%(r)s, 'account_standings', 'held_since', 'SELECT'), "
            "has_column_privilege(%(r)s, 'account_standings', 'held_since', 'UPDATE'), "
            "has_column_privilege(%(r)s, 'account_standings', 'lifted_at', 'UPDATE'), "
            "has_column_privilege(%(r)s, 'account_standings', 'lifted_by_id', 'UPDATE'), "
            "has_table_privilege(%(r)s, 'account_standings', 'DELETE'), "
            "has_column_privilege(%(r)s, 'screening_refusals', 'created_at', 'SELECT'), "
            "has_column_privilege(%(r)s, 'screening_refusals', 'flagged', 'SELECT')", {"r": API_ROLE})
        assert cursor.fetchone() == (True, True, False, False, False, True, False)


def _refusal(categories: list[str]) -> ContentPolicyViolation:
    refusal = ContentPolicyViolation("refused", details={"flagged": [{"field": "text", "categories": categories}],
                                                         "policy_version": "test"})
    refusal.job_type, refusal.model_version = "tts", "test"
    return refusal


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("per_day", [1, 2])
def test_two_refusals_at_once_lose_no_count_and_hold_once(make_user, per_day, settings, fake_dns):  # noqa: F811
    """Both refusals are inserted before either counts (the standing's row is locked here until both
    wait on it): the second to count sees the first, so with a threshold of 2 the account is held,
    and with 1 it is held, and announced, once."""
    settings.AUTEUR_REVIEW_HOLD_REFUSALS_PER_DAY = per_day
    fake_dns({"hooks.example.test": ["93.184.216.34"]})
    user = make_user()
    webhook_create(owner=user, url="https://hooks.example.test/review", event_types=["review_hold"])
    with transaction.atomic():  # the row exists before the race: each refusal then waits on its lock
        standing._locked(user.pk)
    errors: list[BaseException] = []

    def refuse_now() -> None:
        try:
            refusal_record(user=user, member_id=None, refusal=_refusal(["hate"]))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    with transaction.atomic():
        AccountStanding.objects.select_for_update().get(pk=user.pk)
        threads = [threading.Thread(target=refuse_now) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while True:  # both have inserted their refusal and wait for the standing's lock
            with connection.cursor() as cursor:
                # (A transaction sees one snapshot of the statistics unless it asks for a new one.)
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND datname = current_database()")
                if cursor.fetchone()[0] >= 2:
                    break
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.05)
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert ScreeningRefusal.objects.filter(user=user).count() == 2
    assert held(user) == "refusals"
    assert Delivery.objects.filter(owner=user, event_type="review_hold").count() == 1


def test_in_a_team_workspace_the_workspace_account_is_held_not_the_persons(make_user, funded, auth_client,
                                                                           project, media):
    """Jobs are billed to the workspace's account, so its members' refusals hold it; the person who
    sent them keeps their own personal workspace."""
    from auteur.users.models import User
    from credits.services.ledger import credit_grant
    from tests.factories import ProjectFactory, acting_in, team_workspace

    team = team_workspace(funded)
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=100, type="bonus", description="pool")
    team_project = ProjectFactory.create(user=account)
    in_team = acting_in(funded, team)
    response = submit(in_team, "tts", {"project_id": str(team_project.pk), "text": MINORS})
    assert response.status_code == 422, response.json()
    [refusal] = ScreeningRefusal.objects.all()
    assert refusal.user_id == account.pk and refusal.member_id == funded.pk
    assert held(account) == "zero_tolerance" and held(funded) is None
    before = ledger_state(account)
    under_review(submit(in_team, "tts", {"project_id": str(team_project.pk), "text": "Hello"}), "zero_tolerance")
    assert ledger_state(account) == before
    assert submit(auth_client, "tts", valid_body("tts", project, media)).status_code == 202  # their own


def test_the_hold_is_read_with_the_balance_and_costs_a_submission_no_statement_of_its_own(
        auth_client, funded, project, media):
    from django.test.utils import CaptureQueriesContext

    def statements(job_type: str, expect: Callable[[Any], Any] | None = None) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            answer = submit(auth_client, job_type, valid_body(job_type, project, media))
            if expect is not None:
                expect(answer)
        return [q["sql"] for q in queries.captured_queries]

    # The balance's prepared read holds the hold: no statement names the standings table.
    assert not [q for q in statements("tts") if "account_standings" in q]
    refuse(auth_client, project, media, MINORS)
    sql = statements("tts", lambda answer: under_review(answer, "zero_tolerance"))
    assert not [q for q in sql if "account_standings" in q or "screening_refusals" in q or q.startswith("INSERT")]

    def accepted(answer: Any) -> None:
        assert answer.status_code == 202, answer.content

    statements("transcription", accepted)  # a type that is not generative runs while held
