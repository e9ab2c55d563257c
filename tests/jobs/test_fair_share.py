"""Fair share between users on a full job type: its capacity holds, the next free unit goes to
the waiting user with the least virtual time (weighted by plan), and plain arrival order is
the alternative an operator may choose."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits.models import Subscription
from credits.services.ledger import credit_grant
from jobs.inputs import Scheduling
from jobs.intake import submission
from jobs.life import fairshare, slots
from jobs.life import publish as pipeline
from jobs.life import status as lifecycle
from jobs.life.status import job_inference_ended
from jobs.models import FairShare, Job, JobEvent, JobStatus, TypeClock
from jobs.selectors.requests import JobRequest
from jobs.specs import job_spec
from tests.factories import MediaFileFactory, ProjectFactory
from tests.jobs.conftest import wait_for, wait_terminal
from tests.jobs.support import jobs_url

pytestmark = pytest.mark.django_db

PRICE = 5  # a 30 s transcription


@pytest.fixture(autouse=True)
def _two_units(settings):
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 2}
    settings.AUTEUR_JOB_CONCURRENCY = {None: 10, "starter": 10, "pro": 10}  # the type's units bind, not the slots


@pytest.fixture
def started(monkeypatch) -> list[Any]:
    """The jobs whose start is published, in order."""
    published: list[Any] = []
    def start(job_id: Any, job_type: str, trace: str = "") -> bool:
        published.append(job_id)
        return True

    monkeypatch.setattr(pipeline, "start", start)
    return published


class Account:
    def __init__(self, make_user, plan: str | None = None) -> None:
        self.user = make_user()
        credit_grant(user=self.user, amount=1000, type="bonus", description="test")
        if plan:
            now = timezone.now()
            Subscription.objects.create(user=self.user, plan=plan, current_period_start=now,
                                        current_period_end=now + timedelta(days=30), status="active")
        self.project = ProjectFactory.create(user=self.user, name="p")
        self.audio = MediaFileFactory.create(project=self.project, name="a.wav", type="audio", duration_ms=30_000)

    def submit(self, **scheduling: Any) -> Job:
        params: dict[str, Any] = {"project_id": str(self.project.pk), "media_id": str(self.audio.pk),
                                  "_quantities": {"duration_ms": 30_000}}
        with TestCase.captureOnCommitCallbacks(execute=False):  # no broker publish: claims are made here
            request = JobRequest(project=self.project, input_params=params, quantities=params["_quantities"],
                                 media_ids=[self.audio.pk])
            job, _ = submission.job_submit(user=self.user, spec=job_spec("transcription"), request=request,
                                           scheduling=Scheduling(**scheduling))
        return job


def claim(job: Job) -> bool:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return lifecycle.job_claim(job_id=job.pk) is not None


def end_inference(job: Job) -> None:
    """The job's call ended: its unit frees, and the next job's start is published."""
    job = Job.objects.get(pk=job.pk)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert job_inference_ended(job=job)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED, completed_at=timezone.now())


def in_inference() -> int:
    return Job.objects.filter(type="transcription", status=JobStatus.PROCESSING,
                              inference_ended_at__isnull=True).count()


def waited_for(job: Job) -> str | None:
    """Why the job waits, as its `queued` event said it and as the job says it now (the same)."""
    event = JobEvent.objects.filter(job_id=job.pk, type="queued").first()
    if event is None:
        return None
    assert Job.objects.get(pk=job.pk).waiting_for == event.data["waiting_for"]
    return str(event.data["waiting_for"])


def test_a_full_type_queues_the_next_job_until_a_unit_frees(make_user, started):
    heavy = Account(make_user)
    jobs = [heavy.submit() for _ in range(3)]
    assert [claim(job) for job in jobs] == [True, True, False]
    assert in_inference() == 2 and waited_for(jobs[2]) == "capacity"
    end_inference(jobs[0])
    assert started == [jobs[2].pk]
    assert claim(jobs[2]) and in_inference() == 2


def test_the_next_unit_goes_to_the_light_user_not_the_heavy_users_backlog(make_user, started):
    heavy, light = Account(make_user), Account(make_user)
    backlog = [heavy.submit() for _ in range(6)]
    assert [claim(job) for job in backlog] == [True, True, False, False, False, False]
    mine = light.submit()
    assert not claim(mine) and waited_for(mine) == "capacity"
    end_inference(backlog[0])
    assert started == [mine.pk]
    # The heavy user's next job, delivered first, hands the unit over instead of taking it...
    started.clear()
    assert not claim(backlog[2])
    assert started == [mine.pk]
    # ... and the light user's takes it.
    assert claim(mine)
    end_inference(backlog[1])
    assert started[-1] == backlog[2].pk  # nobody else waits: the heavy user goes on


def test_while_units_are_free_for_every_waiting_user_nobody_waits(make_user, started, settings):
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 3}
    first, second = Account(make_user), Account(make_user)
    assert claim(first.submit())  # first is ahead in virtual time now
    theirs, mine = second.submit(), first.submit()
    # second goes before first in the order, but two units are free for the two of them.
    assert claim(mine) and claim(theirs)
    assert started == []  # nothing handed over, nothing published


def test_a_turned_away_claim_publishes_only_the_queued_jobs_due(make_user, started, settings):
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 1}
    heavy, light = Account(make_user), Account(make_user)
    backlog = [heavy.submit() for _ in range(4)]
    assert [claim(job) for job in backlog] == [True, False, False, False]
    mine = light.submit()
    assert not claim(mine)  # full: queued
    started.clear()
    end_inference(backlog[0])
    assert started == [mine.pk]  # one unit: one start
    # The heavy user's next job, delivered first, hands that one unit over: one message; the one
    # behind it waits for it, and sends nothing.
    assert not claim(backlog[1]) and not claim(backlog[2])
    assert started == [mine.pk] * 2
    assert claim(mine) and not claim(backlog[1])
    assert started == [mine.pk] * 2  # full again: nothing more is sent


def test_in_arrival_order_the_heavy_users_backlog_goes_first(make_user, started, settings):
    settings.AUTEUR_FAIR_SHARE = "arrival"
    heavy, light = Account(make_user), Account(make_user)
    backlog = [heavy.submit() for _ in range(4)]
    assert [claim(job) for job in backlog] == [True, True, False, False]
    mine = light.submit()
    assert not claim(mine)
    end_inference(backlog[0])
    assert started == [backlog[2].pk]
    assert not claim(mine) and claim(backlog[2])
    assert not FairShare.objects.exists()  # arrival order keeps no virtual times


def run_turns(accounts: dict[str, Account], turns: int) -> list[str]:
    """With every account backlogged on one unit, start `turns` jobs one after another: whose each was."""
    by_user = {account.user.pk: name for name, account in accounts.items()}
    order = []
    for _ in range(turns):
        due = fairshare.turn_of("transcription").due
        assert due
        job = Job.objects.get(pk=due[0].job_id)
        assert claim(job)
        order.append(by_user[job.user_id])
        end_inference(job)
    return order


def test_a_pro_user_gets_four_times_a_free_users_share(make_user, started, settings):
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 1}
    accounts = {"pro": Account(make_user, plan="pro"), "free": Account(make_user)}
    for account in accounts.values():
        for _ in range(12):
            account.submit()
    shares = Counter(run_turns(accounts, 10))
    assert shares == {"pro": 8, "free": 2}


def test_equal_users_alternate_and_a_pause_earns_no_burst(make_user, started, settings):
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 1}
    a, b = Account(make_user), Account(make_user)
    for _ in range(4):
        a.submit()
    assert run_turns({"a": a}, 4) == ["a"] * 4  # alone, a runs as fast as the unit allows
    for _ in range(3):
        a.submit()
        b.submit()
    # b has never run: it starts from the type's clock, not from zero, so it does not get the
    # next four units for the four a had alone.
    order = run_turns({"a": a, "b": b}, 6)
    assert order in (["b", "a"] * 3, ["a", "b"] * 3)


def test_virtual_times_are_rows_that_a_new_process_reads(make_user, started, settings):
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 1}
    pro, free = Account(make_user, plan="pro"), Account(make_user)
    pro.submit(), free.submit(), pro.submit()
    # Both start from 0 (the older head first); then free, at 5 (its price over weight 1), is
    # behind pro, at 1.25 (over weight 4): pro goes again.
    assert run_turns({"pro": pro, "free": free}, 3) == ["pro", "free", "pro"]
    times = dict(FairShare.objects.filter(type="transcription").values_list("user_id", "virtual_time"))
    assert times == {pro.user.pk: 2 * PRICE / 4, free.user.pk: PRICE / 1}
    # The clock stands where the last job started: pro's virtual time before it.
    assert TypeClock.objects.get(type="transcription").virtual_time == PRICE / 4


def test_a_user_without_a_free_slot_of_their_own_is_passed_over(make_user, started, settings):
    settings.AUTEUR_JOB_CONCURRENCY = {None: 1, "starter": 10, "pro": 10}
    heavy, light = Account(make_user, plan="pro"), Account(make_user)
    light_running, light_waiting = light.submit(), light.submit()
    backlog = [heavy.submit() for _ in range(3)]
    assert claim(light_running) and claim(backlog[0])
    assert not claim(light_waiting) and waited_for(light_waiting) == "slot"
    assert not claim(backlog[1])
    started.clear()
    end_inference(backlog[0])  # light's slot is still taken by its running job (still processing)
    assert started == [backlog[1].pk]


def test_priority_still_orders_a_users_own_jobs_on_a_full_type(make_user, started):
    user = Account(make_user)
    first, second = user.submit(), user.submit()
    assert claim(first) and claim(second)
    batch, urgent = user.submit(priority=0), user.submit(priority=2)
    assert not claim(batch) and not claim(urgent)
    end_inference(first)
    assert started == [urgent.pk]


def test_a_canceled_running_job_frees_its_unit_for_the_next(make_user, started, client_for):
    owner, other = Account(make_user), Account(make_user)
    running = [owner.submit() for _ in range(2)]
    assert all(claim(job) for job in running)
    theirs = other.submit()
    assert not claim(theirs)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client_for(owner.user).post(jobs_url(f"/{running[0].pk}/cancel"))
    assert response.status_code == 200, response.json()
    assert started == [theirs.pk]  # the cancel reads across users to hand the unit on


def test_a_failed_running_job_frees_its_unit_for_the_next(make_user, started):
    user = Account(make_user)
    jobs = [user.submit() for _ in range(3)]
    assert [claim(job) for job in jobs] == [True, True, False]
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert lifecycle.job_fail(job_id=jobs[0].pk, code="internal", detail="boom", retryable=True)
    assert started[-1] == jobs[2].pk


def test_staff_read_the_virtual_times_and_clocks_and_cannot_edit_them(make_user, started, settings,
                                                                       superuser_client):
    from django.urls import reverse

    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 1}
    user = Account(make_user)
    user.submit()
    run_turns({"u": user}, 1)
    share = FairShare.objects.get()
    listing = reverse("admin:jobs_fairshare_changelist")
    for url in (listing, listing + "?type=transcription", reverse("admin:jobs_fairshare_change", args=[share.pk]),
                reverse("admin:jobs_typeclock_changelist")):
        page = superuser_client.get(url)
        assert page.status_code == 200, url
    assert user.user.email in superuser_client.get(listing).content.decode()
    edit = superuser_client.post(reverse("admin:jobs_fairshare_change", args=[share.pk]), {"virtual_time": "0"})
    assert edit.status_code == 403 and FairShare.objects.get().virtual_time == share.virtual_time


def test_no_capacity_means_no_limit(make_user, started, settings):
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 0}
    user = Account(make_user)
    assert all(claim(user.submit()) for _ in range(5))
    assert not FairShare.objects.exists()


def test_a_type_not_named_takes_its_containers(settings):
    settings.AUTEUR_TYPE_CAPACITY = {}
    assert fairshare.type_capacity("lip-sync") == job_spec("lip-sync").engine.max_concurrency > 0


@pytest.mark.parametrize(("name", "value", "message"), [
    ("AUTEUR_FAIR_SHARE", "random", "weighted or arrival"),
    ("AUTEUR_TYPE_CAPACITY", "tts=-1", "a number of jobs"),
    ("AUTEUR_FAIR_SHARE_WEIGHT_PRO", "0", "above 0"),
])
def test_a_bad_setting_stops_the_start(name, value, message):
    from tests.auteur.test_settings import PROD_ENV, load_settings

    result = load_settings({**PROD_ENV, name: value})
    assert result.returncode != 0 and message in result.stderr


# ----------------------------------------------------------------------------- through a worker


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_through_a_worker_the_unit_is_never_shared_and_the_light_user_goes_first(start_worker, make_user,
                                                                                   client_for):
    """One unit of TTS: the heavy user's backlog runs one job at a time, and the light user's job,
    submitted after it, starts at the next free unit."""
    heavy, light = Account(make_user), Account(make_user)
    start_worker(AUTEUR_TYPE_CAPACITY="tts=1", AUTEUR_JOB_CONCURRENCY_FREE="10")

    def submit(account: Account) -> str:
        response = client_for(account.user).post(
            jobs_url("/tts"), {"project_id": str(account.project.pk), "text": "Hello world"}, format="json")
        assert response.status_code == 202, response.json()
        return response.json()["job_id"]

    backlog = [submit(heavy) for _ in range(5)]
    wait_for(lambda: Job.objects.filter(pk__in=backlog, status=JobStatus.QUEUED).count() >= 3, timeout=60)
    mine = submit(light)
    jobs = [wait_terminal(job_id) for job_id in [*backlog, mine]]
    assert all(job.status == JobStatus.COMPLETED for job in jobs), [(j.error_code, j.error_detail) for j in jobs]
    spans = sorted((job.started_at, job.inference_ended_at) for job in jobs)
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans)), "one unit, one job"
    light_job = jobs[-1]
    waiting_when_light_came = [j for j in jobs[:-1] if j.started_at > light_job.created_at]
    assert waiting_when_light_came, "the heavy user still had jobs waiting"
    # Of the heavy user's jobs waiting when it came, at most the one given the unit first ran before it.
    assert sum(j.started_at < light_job.started_at for j in waiting_when_light_came) <= 1


def test_a_claim_on_a_limited_type_holds_the_types_lock_and_the_users(make_user):
    from django.db import connection, transaction

    from jobs.life.slots import user_lock_key

    user = Account(make_user).user
    with transaction.atomic():
        fairshare.locks("transcription", user_lock_key(user.pk))
        with connection.cursor() as cursor:
            cursor.execute("SELECT classid, objid, objsubid FROM pg_locks WHERE locktype = 'advisory' "
                           "AND pid = pg_backend_pid() AND granted")
            held = cursor.fetchall()
    key = user_lock_key(user.pk)
    assert (key >> 32, key & 0xFFFF_FFFF, 1) in held  # the user's (one bigint)
    assert any(objsubid == 2 and classid == 0x4A0B for classid, _, objsubid in held)  # the type's (two int4)


def _in_pieces(job: Job, running: int) -> None:
    """The job runs as pieces (jobs.life.pieces), `running` of them at once."""
    from jobs.models import PIECES, JobPiece

    Job.objects.filter(pk=job.pk).update(gpu_call_id=PIECES)
    JobPiece.objects.bulk_create([
        JobPiece(job=job, index=i, start_ms=i * 1000, end_ms=(i + 1) * 1000, audio_start_ms=i * 1000,
                 audio_end_ms=(i + 1) * 1000, state="running", call_id=f"call-{i}") for i in range(running)])


def test_each_running_piece_of_a_long_file_holds_a_unit(make_user, started):
    heavy, light = Account(make_user), Account(make_user)
    long_file = heavy.submit()
    assert claim(long_file)
    _in_pieces(long_file, running=2)
    waiting = light.submit()
    assert not claim(waiting) and waited_for(waiting) == "capacity", "two pieces fill the two units"
    assert fairshare.units_in_use("transcription") == 2 and fairshare.units_free("transcription") == 0

    from jobs.models import JobPiece
    JobPiece.objects.filter(job=long_file, index=0).update(state="succeeded")
    fairshare.start_due("transcription")  # as the piece's end does
    assert started == [waiting.pk]
    assert claim(waiting) and fairshare.units_in_use("transcription") == 2


def test_a_long_file_spreads_only_over_units_nobody_else_waits_for(make_user, started, settings):
    from jobs.life.pieces import in_flight

    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 4}
    heavy, light, other = Account(make_user), Account(make_user), Account(make_user)
    long_file = heavy.submit()
    assert claim(long_file)
    _in_pieces(long_file, running=1)
    assert in_flight(Job.objects.get(pk=long_file.pk)) == 4, "idle units: all of them"
    light.submit()
    assert in_flight(Job.objects.get(pk=long_file.pk)) == 3, "one unit left for the waiting user"
    running = other.submit()
    assert claim(running)
    assert in_flight(Job.objects.get(pk=long_file.pk)) == 2
    assert fairshare.units_in_use("transcription", excluding=long_file.pk) == 1


# ----------------------------------------------------------------------------- batches leave headroom


def as_batch_item(job: Job) -> Job:
    """The job as a batch's item (jobs.intake.batches inserts them so): it leaves headroom."""
    from jobs.models import Batch

    batch = Batch.objects.create(user=job.user, item_count=1, credits_cost=job.credits_cost)
    Job.objects.filter(pk=job.pk).update(batch=batch, priority=0)
    return Job.objects.get(pk=job.pk)


def test_the_headroom_is_a_share_of_the_units_at_least_one_never_all(settings):
    settings.AUTEUR_BATCH_HEADROOM_PERCENT = 10
    assert [fairshare.batch_headroom(n) for n in (0, 1, 2, 4, 10, 11, 50)] == [0, 0, 1, 1, 1, 2, 5]


def test_a_batch_never_takes_the_last_unit_of_a_full_type_and_another_users_job_starts_at_once(make_user, started,
                                                                                               settings):
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 4}
    heavy, light = Account(make_user), Account(make_user)
    backlog = [as_batch_item(heavy.submit()) for _ in range(5)]
    assert [claim(job) for job in backlog] == [True, True, True, False, False]
    assert in_inference() == 3 and waited_for(backlog[3]) == "capacity"
    mine = light.submit()
    assert claim(mine) and in_inference() == 4  # the headroom's unit: no wait
    started.clear()
    end_inference(mine)
    # The unit freed is the headroom again: no batch item is due for it.
    assert started == []
    end_inference(backlog[0])
    assert started == [backlog[3].pk] and claim(backlog[3])


def test_a_freed_slot_publishes_no_start_a_batch_items_claim_would_turn_away(make_user, started, settings):
    """A batch's item starts only while more of its type's units are free than the headroom: a slot
    of its user's that frees while only the headroom is free publishes none of their items' starts
    (each would be a message and a claim under the type's lock, for nothing); they wait for a unit,
    and the next unit that frees starts one."""
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 4}
    heavy = Account(make_user)
    backlog = [as_batch_item(heavy.submit()) for _ in range(5)]
    assert [claim(job) for job in backlog[:3]] == [True, True, True]
    behind = [job.pk for job in backlog[3:]]
    Job.objects.filter(pk__in=behind).update(status=JobStatus.QUEUED, waiting_for="slot")  # as a batch inserts them
    started.clear()
    slots.start_waiting(heavy.user.pk)
    assert started == []
    assert set(Job.objects.filter(pk__in=behind).values_list("waiting_for", flat=True)) == {"capacity"}
    end_inference(backlog[0])  # two units free: one more than the headroom
    assert started == [backlog[3].pk]


def test_a_unit_that_frees_while_a_batch_item_is_held_back_is_handed_to_it(make_user, started, settings, monkeypatch):
    """The units are counted before the items held back are marked waiting for one: a unit that
    frees in between finds none waiting, so the type's turn is read again once they are."""
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 4}
    heavy = Account(make_user)
    backlog = [as_batch_item(heavy.submit()) for _ in range(5)]
    assert [claim(job) for job in backlog[:3]] == [True, True, True]
    Job.objects.filter(pk__in=[job.pk for job in backlog[3:]]).update(status=JobStatus.QUEUED, waiting_for="slot")
    # A call ends (its unit free, its own hand-over seeing nobody waiting for capacity) just after
    # the slot's release counted one unit free: only the headroom.
    Job.objects.filter(pk=backlog[0].pk).update(inference_ended_at=timezone.now())
    monkeypatch.setattr(slots, "units_free", lambda job_type: 1)
    started.clear()
    slots.start_waiting(heavy.user.pk)
    assert started == [backlog[3].pk]


def test_a_batch_leaves_a_slot_of_its_users_own_for_their_interactive_job(make_user, started, settings):
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 0}
    settings.AUTEUR_JOB_CONCURRENCY = {None: 3, "starter": 3, "pro": 3}
    user = Account(make_user)
    items = [as_batch_item(user.submit()) for _ in range(4)]
    assert [claim(job) for job in items] == [True, True, False, False]
    interactive = user.submit()  # normal priority: ahead of the batch's low items
    assert claim(interactive)


def test_on_a_single_slot_a_batch_still_runs(make_user, started, settings):
    settings.AUTEUR_TYPE_CAPACITY = {"transcription": 1}
    settings.AUTEUR_JOB_CONCURRENCY = {None: 1, "starter": 1, "pro": 1}
    item = as_batch_item(Account(make_user).submit())
    assert claim(item)


def test_a_freed_slot_publishes_as_many_starts_as_the_user_has_free_slots(make_user, started, settings):
    """A user's backlog (a burst, a batch) is started one free slot at a time: a start published
    beyond the free slots is a step that runs only to queue its job again, and every end and every
    start of the backlog used to send five."""
    settings.AUTEUR_TYPE_CAPACITY = {}
    settings.AUTEUR_JOB_CONCURRENCY = {None: 3, "starter": 3, "pro": 3}
    user = Account(make_user)
    jobs = [user.submit() for _ in range(8)]
    assert [claim(job) for job in jobs[:5]] == [True, True, True, False, False]
    queued = [job.pk for job in jobs[3:5]]
    Job.objects.filter(pk__in=[job.pk for job in jobs[5:]]).update(status=JobStatus.QUEUED)  # the rest wait too
    started.clear()

    slots.start_waiting(user.user.pk)  # every slot taken
    assert started == []

    Job.objects.filter(pk=jobs[0].pk).update(status=JobStatus.COMPLETED, completed_at=timezone.now())
    slots.start_waiting(user.user.pk)
    assert started == queued[:1]  # one slot free: the oldest waiting job, not five

    Job.objects.filter(pk=jobs[1].pk).update(status=JobStatus.COMPLETED, completed_at=timezone.now())
    started.clear()
    slots.start_waiting(user.user.pk, if_free=True)
    assert started == queued  # two free: the two oldest, in order
    assert claim(jobs[3]) and claim(jobs[4])
    assert not claim(jobs[5])  # the slots it was not published for are taken


def test_a_single_waiting_job_is_published_without_counting_the_slots(make_user, started, settings):
    """One waiting job is published as before (its claim decides), with no count of the user's
    running jobs: an end with nothing or one job behind it pays no more than it did."""
    settings.AUTEUR_TYPE_CAPACITY = {}
    settings.AUTEUR_JOB_CONCURRENCY = {None: 1, "starter": 1, "pro": 1}
    user = Account(make_user)
    first, second = user.submit(), user.submit()
    assert claim(first) and not claim(second)
    started.clear()
    slots.start_waiting(user.user.pk)  # warm: prepared statements
    started.clear()
    with CaptureQueriesContext(connection) as queries:
        slots.start_waiting(user.user.pk)
    assert started == [second.pk]
    assert len(queries) == 2  # the waiting jobs, and the type's free units (as before)
    assert not any("COUNT(" in query["sql"].upper() for query in queries)
