"""The retention sweeps' queries on tables of a realistic size, without and with their indexes.

    .venv/bin/python bench/retention_sweep.py [--jobs 200000] [--events-per-job 10] [--days 60] [--projects 5000]

On a throwaway stack (migrated: the indexes exist), each table is filled by one
INSERT ... SELECT generate_series: `--jobs` jobs created evenly over `--days` days in
`--projects` projects (each ended 20 s after it started; the newest 200 still processing),
`--events-per-job` events each, one idempotency record per job (a quarter of them the automatic
transcription's, kept for ever), one output (a media file) per completed job and, for media.sweep,
`--jobs` pending storage deletions (1 % due). Then, for each
sweep, in the same run, the plan (EXPLAIN ANALYZE, BUFFERS) and the median time of one batch as
`delete_in_batches` runs it (select `batch` ids, delete them; rolled back, so every repetition
sees the same rows), without the sweep's index ("before") and with it ("after"), in these states:

- backlog: nothing swept yet (half the job events are due);
- steady (job events only): the hourly runs before left nothing older than an hour before the
  cutoff; a whole run, every batch to the last partial one, is timed too;
- swept: nothing due, the batch that ends every run.

The "before" of job events is the query the sweep ran before its index (no condition on the
event's own time), as it would run on a table without the index.

Prints the figures and writes bench/results/retention_sweep.json; the plans go to
bench/results/retention_sweep_plans.txt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR, django_stack, load_average


class Rollback(Exception):
    """Raised to undo a timed batch, so that every repetition deletes the same rows."""


def sql(statement: str, params: Any = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)  # no params: a literal '%' (a LIKE in an index) is not a placeholder


def delete_selected(queryset: Any) -> None:
    """Delete what `queryset` selects in one statement, set-based (no signals, no batches): the
    state the sweep would have left, made quickly."""
    select, params = queryset.order_by().values("pk").query.sql_with_params()
    sql(f"DELETE FROM {queryset.model._meta.db_table} WHERE id IN ({select})", params)  # noqa: S608 - compiled by Django


def fill(*, jobs: int, events_per_job: int, days: int, projects: int, now: datetime) -> dict[str, float]:
    """The tables, one INSERT ... SELECT each; returns the seconds each took."""
    from auteur.users.models import User
    from jobs.intake.transcribe import AUTO_TRANSCRIBE_KEY_PREFIX
    from projects.models import Project

    user = User.objects.create_user(email="retention@bench.invalid")
    # Many projects, as a real table has: an index led by the project (media_project_created) is
    # no shortcut to every project's old files.
    made = Project.objects.bulk_create(Project(user=user, name=f"p{i}") for i in range(projects))
    p = {"user": user.pk, "projects": [str(project.pk) for project in made], "k": projects, "now": now, "days": days,
         "n": jobs, "per": events_per_job, "auto": AUTO_TRANSCRIBE_KEY_PREFIX}
    took = {}
    statements = {
        "jobs": """
            INSERT INTO jobs (id, user_id, project_id, type, status, credits_cost, credits_refunded, credits_refund,
                              input_params, output_data, error_code, error_message, error_detail, retryable,
                              progress, attempts, gpu_backend, gpu_call_id, idempotency_key,
                              created_at, updated_at, started_at, completed_at)
            SELECT gen_random_uuid(), %(user)s, (%(projects)s::uuid[])[1 + g %% %(k)s], 'tts',
                   CASE WHEN g > %(n)s - 200 THEN 'processing' WHEN g %% 100 < 90 THEN 'completed'
                        WHEN g %% 100 < 97 THEN 'failed' ELSE 'canceled' END,
                   1, false, 0, '{"text": "hello"}', '{}', '', '', '', false, 100, 1, 'noop', '', '',
                   t, t + interval '20 s', t + interval '1 s',
                   CASE WHEN g > %(n)s - 200 THEN NULL ELSE t + interval '20 s' END
            FROM (SELECT g, %(now)s::timestamptz - interval '1 minute'
                            - (%(days)s * interval '1 day') * (1 - g::float8 / %(n)s) AS t
                  FROM generate_series(1, %(n)s) g) s""",
        "job_events": """
            INSERT INTO job_events (job_id, type, data, created_at)
            SELECT j.id, 'progress', jsonb_build_object('progress', k * 10), j.created_at + k * interval '1 s'
            FROM jobs j CROSS JOIN generate_series(1, %(per)s) k ORDER BY j.created_at, k""",
        "job_idempotency_keys": """
            INSERT INTO job_idempotency_keys (user_id, key, request_hash, job_id, created_at)
            SELECT %(user)s, CASE WHEN n %% 4 = 0 THEN %(auto)s || j.id::text ELSE 'client-' || j.id::text END,
                   md5(j.id::text), j.id, j.created_at
            FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at) AS n FROM jobs) j
            ORDER BY j.created_at""",
        "media_files": """
            INSERT INTO media_files (id, project_id, user_id, name, type, mime_type, status, rejection_reason,
                                     file_size_bytes, storage_key, thumbnail_key, caption_key, metadata,
                                     source_job_id, created_at, updated_at)
            SELECT gen_random_uuid(), j.project_id, %(user)s, 'speech.wav', 'audio', 'audio/wav', 'ready', '',
                   100000, 'projects/x/' || j.id::text || '/speech.wav', '', '', '{}', j.id,
                   j.completed_at, j.completed_at
            FROM jobs j WHERE j.status = 'completed' ORDER BY j.completed_at""",
    }
    for table, statement in statements.items():
        started = time.perf_counter()
        sql(statement, p)
        took[table] = round(time.perf_counter() - started, 1)
    sql("VACUUM ANALYZE jobs, job_events, job_idempotency_keys, media_files")
    return took


def index_definition(name: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
        row = cursor.fetchone()
    if row is None:
        raise SystemExit(f"index {name} does not exist: is its migration applied?")
    return str(row[0])


def timed_batch(queryset: Any, batch: int, repeat: int = 5) -> float:
    """Median ms of the batch `delete_in_batches` runs (its statements, in its transaction)."""
    from django.db import transaction

    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            with transaction.atomic():
                ids = queryset.order_by("pk").values("pk")[:batch]
                queryset.model._default_manager.filter(pk__in=ids).delete()
                times.append(time.perf_counter() - started)
                raise Rollback
        except Rollback:
            pass
    return round(statistics.median(times) * 1000, 2)


def timed_run(run: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Median ms of a whole sweep run, rolled back each time; and its last result."""
    from django.db import transaction

    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            with transaction.atomic():
                result = run()
                times.append(time.perf_counter() - started)
                raise Rollback
        except Rollback:
            pass
    return round(statistics.median(times) * 1000, 2), result


def plan(queryset: Any, batch: int) -> str:
    return str(queryset.order_by("pk").values("pk")[:batch].explain(analyze=True, buffers=True))


def measure(label: str, queryset: Any, batch: int, plans: list[str], page: bool = False) -> dict[str, Any]:
    """A batch's plan and median time: select-and-delete as `delete_in_batches` runs it, or (`page`)
    the select of one page of ids alone."""
    text = (str(queryset.values("pk")[:batch].explain(analyze=True, buffers=True)) if page
            else plan(queryset, batch))
    plans.append(f"### {label}\n{text}\n")
    if page:
        ms = _timed_select(lambda: list(queryset.values_list("pk", flat=True)[:batch]))
    else:
        ms = timed_batch(queryset, batch)
    return {"ms": ms, "plan": plan_nodes(text)}


def plan_nodes(text: str) -> str:
    """The plan's nodes, outermost first, without their figures: what the planner chose."""
    nodes = []
    for line in text.splitlines():
        stripped = line.strip().removeprefix("->").strip()
        if line == text.splitlines()[0] or line.lstrip().startswith("->"):
            nodes.append(stripped.split("  (", 1)[0])
    return " > ".join(nodes)


def with_index(name: str, present: bool, definition: str) -> None:
    sql(f"DROP INDEX IF EXISTS {name}")
    if present:
        sql(definition)
    sql("ANALYZE jobs, job_events, job_idempotency_keys, media_files, media_pendingobjectdeletion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--events-per-job", type=int, default=10)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=5000)
    args = parser.parse_args()

    with django_stack():
        from django.conf import settings
        from django.db import connection
        from django.utils import timezone

        from auteur.core.retention import sweep_context
        from jobs import retention as jobs_retention
        from jobs.models import JobEvent
        from media.models import PendingObjectDeletion
        from media.services import retention as media_retention

        now = timezone.now()
        ctx = sweep_context(now=now, batch_size=args.batch)
        event_cutoff = now - timedelta(days=settings.AUTEUR_RETENTION_JOB_EVENTS_DAYS)
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            server = cursor.fetchone()[0]
        took = fill(jobs=args.jobs, events_per_job=args.events_per_job, days=args.days, projects=args.projects,
                    now=now)
        plans: list[str] = []
        report: dict[str, Any] = {
            "jobs": args.jobs, "events": args.jobs * args.events_per_job, "days": args.days, "batch": args.batch,
            "projects": args.projects, "load_average": {"start": load_average()},
            "postgres": server, "fill_seconds": took,
        }

        def compare(what: str, index: str, before_query: Any, after_query: Any, page: bool = False,
                    batch: int = args.batch) -> dict[str, Any]:
            """One batch without the index (and, for job events, with main's query) and with it."""
            definition = index_definition(index)
            row: dict[str, Any] = {"due": after_query.count()}
            for side, query in (("before", before_query), ("after", after_query)):
                with_index(index, side == "after", definition)
                row[side] = measure(f"{what}, {side}", query, batch, plans, page=page)
            row["ratio"] = round(row["before"]["ms"] / row["after"]["ms"], 1)
            return row

        # ---- Job events: the query main ran (no predicate on the event itself) without an index,
        # against the sweep's own query with the index its migration creates.
        events_index = "job_events_created"
        old_query = JobEvent.objects.filter(job__status__in=jobs_retention.TERMINAL_STATUSES,
                                            job__completed_at__lt=event_cutoff)
        new_query = jobs_retention.job_events_due(event_cutoff)
        events: dict[str, Any] = {"index": index_definition(events_index)}
        events["backlog"] = compare("job events, backlog (nothing swept yet)", events_index, old_query, new_query)
        # What the previous hourly runs leave: nothing older than an hour before the cutoff.
        sql("DELETE FROM job_events e USING jobs j WHERE e.job_id = j.id AND j.completed_at < %(c)s",
            {"c": event_cutoff - timedelta(hours=1)})
        sql("VACUUM ANALYZE job_events")
        steady = compare("job events, steady (an hour due)", events_index, old_query, new_query)
        with_index(events_index, False, events["index"])
        steady["before"]["run_ms"] = timed_run(lambda: _delete_all("job_events", old_query, ctx))[0]
        with_index(events_index, True, events["index"])
        steady["after"]["run_ms"], result = timed_run(lambda: jobs_retention.job_events_sweep(ctx))
        steady["run_deleted"] = result.count
        steady["run_ratio"] = round(steady["before"]["run_ms"] / steady["after"]["run_ms"], 1)
        events["steady"] = steady
        # And once those are gone: the batch that finds nothing, which ends every run.
        sql("DELETE FROM job_events e USING jobs j WHERE e.job_id = j.id AND j.completed_at < %(c)s",
            {"c": event_cutoff})
        sql("VACUUM ANALYZE job_events")
        events["swept"] = compare("job events, swept (nothing due)", events_index, old_query, new_query)
        events["events_left"] = JobEvent.objects.count()
        report["job_events"] = events

        # ---- Idempotency records: every record past the window but the automatic transcription's
        # (a quarter of them here), which stay for ever.
        idem_index = "job_idempotency_created"
        idem_query = jobs_retention.idempotency_records_due(
            now - timedelta(seconds=settings.AUTEUR_IDEMPOTENCY_WINDOW_SECONDS))
        idem: dict[str, Any] = {"index": index_definition(idem_index)}
        idem["backlog"] = compare("idempotency records, backlog", idem_index, idem_query, idem_query)
        delete_selected(idem_query)
        sql("VACUUM ANALYZE job_idempotency_keys")
        idem["swept"] = compare("idempotency records, swept (nothing due)", idem_index, idem_query, idem_query)
        report["idempotency_keys"] = idem

        # ---- Job outputs (opt-in): one page of the sweep's keyset walk (a select; each file then
        # goes through media_delete), with a window of 30 days, so that half the table is due.
        media_index = "media_job_outputs_created"
        media_query = media_retention.job_outputs_due(now - timedelta(days=30))
        outputs: dict[str, Any] = {"index": index_definition(media_index)}
        outputs["backlog"] = compare("job outputs, backlog", media_index, media_query, media_query, page=True)
        delete_selected(media_query)
        sql("VACUUM ANALYZE media_files")
        outputs["swept"] = compare("job outputs, swept (nothing due)", media_index, media_query, media_query,
                                   page=True)
        report["job_outputs"] = outputs

        # ---- Pending storage deletions (media.sweep): the due rows, oldest first, 500 at a time,
        # as media.services.sweep._delete_due_objects selects them; its index is `due_at`'s own.
        sql("""INSERT INTO media_pendingobjectdeletion (key, due_at, bytes)
               SELECT 'projects/x/' || g || '/upload', %(now)s::timestamptz + (g %% 1000 - 10) * interval '10 s', 0
               FROM generate_series(1, %(n)s) g""", {"now": now, "n": args.jobs})
        sql("VACUUM ANALYZE media_pendingobjectdeletion")
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'media_pendingobjectdeletion' "
                           "AND indexdef LIKE '%%(due_at)%%'")
            due_index = cursor.fetchone()[0]
        due_query = PendingObjectDeletion.objects.filter(due_at__lte=now).order_by("due_at")
        pending: dict[str, Any] = {"index": index_definition(due_index), "rows": args.jobs}
        pending["due"] = compare("pending storage deletions, 1 % due", due_index, due_query, due_query, page=True,
                                 batch=500)
        report["pending_deletions"] = pending

    report["load_average"]["end"] = load_average()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "retention_sweep_plans.txt").write_text("\n".join(plans))
    (RESULTS_DIR / "retention_sweep.json").write_text(json.dumps(report, indent=2))
    print("\n".join(plans))
    print(json.dumps(report, indent=2))


def _delete_all(name: str, queryset: Any, ctx: Any) -> Any:
    from auteur.core.retention import delete_in_batches

    return delete_in_batches(name, queryset, ctx)


def _timed_select(select: Callable[[], Any], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        select()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


if __name__ == "__main__":
    main()
