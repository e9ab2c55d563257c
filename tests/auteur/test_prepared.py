"""auteur.core.prepared: a read built once answers exactly what the ORM answers each time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Count, F, Q

from auteur.core.prepared import PreparedInsert, PreparedRead, PreparedUpdate
from jobs.models import Job, JobStatus
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

FIELDS = ("id", "type", "status", "credits_cost", "input_params", "output_data", "created_at", "gpu_seconds")


@pytest.fixture
def jobs(make_user):
    owner, other = make_user(), make_user()
    made = []
    for n, (user, status) in enumerate([(owner, "pending"), (owner, "processing"), (owner, "completed"),
                                        (other, "processing")]):
        project = ProjectFactory.create(user=user, name=f"p{n}")
        made.append(Job.objects.create(user=user, project=project, type="tts", status=status, credits_cost=n + 1,
                                       input_params={"text": f"t{n}", "nested": {"n": [n, 1.5]}},
                                       output_data={"é": "ü", "n": n} if n else {}, gpu_seconds=n / 2))
    return owner, other, made


BY_OWNER_AND_ID = PreparedRead(
    lambda user_id, pk: Job.objects.filter(user_id=user_id, pk=pk).values(*FIELDS),
    user_id=uuid.UUID(int=1), pk=uuid.UUID(int=2),
)


def test_a_prepared_read_gives_what_the_orm_gives_json_and_datetimes_included(jobs):
    owner, other, made = jobs
    for job in made:
        for user in (owner, other):
            expected = Job.objects.filter(user_id=user.pk, pk=job.pk).values(*FIELDS).first()
            assert BY_OWNER_AND_ID.first(user_id=user.pk, pk=job.pk) == expected
    read = BY_OWNER_AND_ID.first(user_id=owner.pk, pk=made[1].pk)
    assert read is not None and read["output_data"] == {"é": "ü", "n": 1}
    assert BY_OWNER_AND_ID.first(user_id=owner.pk, pk=uuid.uuid4()) is None


def test_a_slot_used_twice_gets_its_value_in_both_places_and_groups_read_as_rows(jobs):
    owner, _, made = jobs
    counts = PreparedRead(
        lambda user_id, at: Job.objects.filter(user_id=user_id).values("user_id").annotate(
            before=Count("pk", filter=Q(created_at__lt=at)), after=Count("pk", filter=Q(created_at__gt=at))),
        user_id=uuid.UUID(int=1), at=datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    )
    middle = made[1].created_at
    assert counts.rows(user_id=owner.pk, at=middle) == [{"user_id": owner.pk, "before": 1, "after": 1}]
    later = counts.first(user_id=owner.pk, at=middle + timedelta(days=1))
    assert later is not None and later["before"] == 3
    assert counts.rows(user_id=uuid.uuid4(), at=middle) == []


def test_a_slot_the_field_adapts_is_adapted_alike_each_time(jobs):
    made = jobs[2]
    # An integer field's value is compiled as psycopg's Int4, not as the int placeholder itself.
    read = PreparedRead(lambda cost: Job.objects.filter(credits_cost=cost, user__is_active=True).values("id"),
                        cost=1)
    assert read.rows(cost=2) == [{"id": made[1].pk}]


def test_a_slot_that_is_not_a_parameter_is_refused_when_first_run(jobs):
    read = PreparedRead(lambda user_id, status: Job.objects.filter(user_id=user_id, status=JobStatus.PENDING)
                        .values("id"), user_id=uuid.UUID(int=1), status="\x00status")
    with pytest.raises(AssertionError, match="status"):
        read.rows(user_id=uuid.uuid4(), status="queued")


def test_a_prepared_read_of_instances_gives_the_orms_instances(jobs):
    made = jobs[2]
    by_id = PreparedRead(lambda pk: Job.objects.filter(pk=pk), pk=uuid.UUID(int=1))
    for job in made:
        read = by_id.object(pk=job.pk)
        expected = Job.objects.get(pk=job.pk)
        assert read is not None and type(read) is Job
        assert {f.attname: getattr(read, f.attname) for f in Job._meta.concrete_fields} == {
            f.attname: getattr(expected, f.attname) for f in Job._meta.concrete_fields}
        assert read._state.adding is False and read._state.db == "default"
    assert by_id.object(pk=uuid.uuid4()) is None
    read = by_id.object(pk=made[1].pk)
    assert read is not None
    read.progress = 40
    read.save(update_fields=["progress"])  # a loaded instance saves as an UPDATE of its row
    assert Job.objects.get(pk=made[1].pk).progress == 40
    assert Job.objects.count() == len(made)


def test_a_read_across_a_join_of_instances_is_refused(jobs):
    joined = PreparedRead(lambda pk: Job.objects.select_related("user").filter(pk=pk), pk=uuid.UUID(int=1))
    with pytest.raises(AssertionError, match="only plain reads"):
        joined.object(pk=jobs[2][0].pk)


SET_OUTPUT = PreparedUpdate(
    lambda pk, status, **_: Job.objects.filter(pk=pk, status=status),
    lambda output, at, cost, seconds, **_: {"output_data": output, "completed_at": at, "credits_cost": cost,
                                            "gpu_seconds": seconds, "attempts": F("attempts") + 1},
    pk=uuid.UUID(int=1), status="\x00status", output={"\x00": "output"}, at=datetime(1, 1, 1, tzinfo=UTC),
    cost=-987_654_321, seconds=-1.0e-300,
)


def test_a_prepared_update_writes_what_the_orms_update_writes(jobs):
    _, _, made = jobs
    at = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
    values = {"output": {"text": "é", "n": [1, 2.5, None]}, "at": at, "cost": 7, "seconds": 1.25}
    assert SET_OUTPUT.run(pk=made[1].pk, status="processing", **values) == 1
    Job.objects.filter(pk=made[3].pk).update(output_data=values["output"], completed_at=at, credits_cost=7,
                                             gpu_seconds=1.25, attempts=F("attempts") + 1)
    fields = ("output_data", "completed_at", "credits_cost", "gpu_seconds", "attempts")
    assert Job.objects.filter(pk=made[1].pk).values(*fields).get() == \
        Job.objects.filter(pk=made[3].pk).values(*fields).get()
    assert Job.objects.get(pk=made[1].pk).attempts == 1
    # The filter's slots hold: another status or another job changes nothing.
    assert SET_OUTPUT.run(pk=made[0].pk, status="processing", **values) == 0
    assert SET_OUTPUT.run(pk=uuid.uuid4(), status="pending", **values) == 0
    assert Job.objects.get(pk=made[0].pk).output_data == {}


def test_a_failed_prepared_update_marks_its_transaction_for_rollback(jobs):
    from django.db import DatabaseError, transaction

    _, _, made = jobs
    with pytest.raises(DatabaseError), transaction.atomic():
        SET_OUTPUT.run(pk=made[1].pk, status="processing", output={}, at=datetime(2026, 1, 1, tzinfo=UTC),
                       cost=2**40, seconds=0.0)  # out of the column's range
    assert Job.objects.get(pk=made[1].pk).credits_cost == 2


def _row(model, pk):
    return {k: v for k, v in model.objects.filter(pk=pk).values().get().items() if k != "id"}


def test_a_prepared_insert_writes_what_the_orms_save_writes(jobs):
    from media.models import MediaFile

    owner, _, made = jobs
    common = dict(user=owner, project=made[0].project, type="tts", credits_cost=7, priority=5,
                  input_params={"text": "é", "n": [1, 2.5, None]}, idempotency_key="k", start_within_seconds=30,
                  start_deadline=datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC))
    by_orm = Job(**common)
    by_orm.save(force_insert=True)
    prepared = Job(**common)
    PreparedInsert(Job).run(prepared)
    assert not prepared._state.adding and prepared._state.db == "default"
    orm_row, prepared_row = _row(Job, by_orm.pk), _row(Job, prepared.pk)
    # auto_now and auto_now_add are the moment of each save, as the ORM stamps them
    for stamp in ("created_at", "updated_at"):
        assert abs(orm_row.pop(stamp) - prepared_row.pop(stamp)) < timedelta(seconds=5)
    assert prepared_row == orm_row and prepared.created_at is not None

    media = dict(project=made[0].project, user=owner, name="a.wav", type="audio", mime_type="audio/wav",
                 status="ready", file_size_bytes=3, storage_key="k/a.wav", metadata={"generation": {"seed": 7}})
    media_by_orm = MediaFile(**media)
    media_by_orm.save(force_insert=True)
    media_prepared = MediaFile(**{**media, "storage_key": "k/b.wav"})
    PreparedInsert(MediaFile).run(media_prepared)
    orm_row, prepared_row = _row(MediaFile, media_by_orm.pk), _row(MediaFile, media_prepared.pk)
    for stamp in ("created_at", "updated_at"):
        orm_row.pop(stamp, None), prepared_row.pop(stamp, None)
    assert prepared_row == {**orm_row, "storage_key": "k/b.wav"}


def test_the_models_inserted_by_a_prepared_insert_have_no_save_receivers():
    """PreparedInsert sends no pre_save/post_save: a receiver connected to these models later would
    never run for their hot inserts."""
    from django.db.models.signals import post_save, pre_save

    from media.models import MediaFile

    for model in (Job, MediaFile):
        assert not pre_save.has_listeners(model) and not post_save.has_listeners(model), model


def test_a_failed_prepared_insert_marks_its_transaction_for_rollback_and_an_expression_is_refused(jobs):
    from django.db import IntegrityError, transaction
    from django.db.models.functions import Now

    owner, _, made = jobs
    with pytest.raises(IntegrityError), transaction.atomic():
        PreparedInsert(Job).run(Job(pk=made[0].pk, user=owner, type="tts", credits_cost=1))  # its id is taken
    assert Job.objects.count() == len(made)
    with pytest.raises(ValueError, match="expression"):
        PreparedInsert(Job).run(Job(user=owner, type="tts", credits_cost=1, start_deadline=Now()))
