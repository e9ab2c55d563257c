"""Migration 0002 on jobs that existed before it: refunds were whole, failure text moves to staff."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from jobs.failures import failure_message

BEFORE, AFTER = [("jobs", "0001_initial")], [("jobs", "0002_refund_amount_and_error_detail")]
RAW = "ffmpeg failed: /srv/var/gpu-local/local-0/work/in.mp4: moov atom not found https://s3/x?X-Amz-Signature=abc"


@pytest.mark.django_db(transaction=True)
def test_jobs_from_before_get_their_whole_refund_and_the_codes_sentence(user: Any) -> None:
    executor = MigrationExecutor(connection)
    try:
        check_old_rows_migrate(executor, user)
    finally:
        # Going back to jobs 0001 also unapplied every migration that depends on it (other apps'
        # too); the database is left at the project's latest state for the tests that follow.
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def check_old_rows_migrate(executor: MigrationExecutor, user: Any) -> None:
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps.get_model("jobs", "Job")
    failed = old.objects.create(user_id=user.pk, type="compression", credits_cost=3, status="failed",
                                credits_refunded=True, error_code="invalid_media", error_message=RAW)
    done = old.objects.create(user_id=user.pk, type="compression", credits_cost=3, status="completed")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("jobs", "Job")
    failed, done = new.objects.get(pk=failed.pk), new.objects.get(pk=done.pk)
    assert (failed.credits_refund, done.credits_refund) == (3, 0)
    assert failed.error_message == failure_message("invalid_media")
    assert "moov atom not found" in failed.error_detail and "X-Amz-Signature=abc" not in failed.error_detail
