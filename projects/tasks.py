"""Projects tasks: thin, one service call each."""

from __future__ import annotations

from celery import shared_task

from auteur.core.retention import TASK_TIME_BUDGET_SECONDS, run_sweep


@shared_task(name="projects.retention.deleted_project_objects", acks_late=True)
def retention_deleted_project_objects() -> str:
    """Beat: storage folders of projects that no longer exist (projects/retention.py)."""
    return run_sweep("deleted_project_objects", time_budget=TASK_TIME_BUDGET_SECONDS).describe()


@shared_task(name="projects.retention.deleted_project_edls", acks_late=True)
def retention_deleted_project_edls() -> str:
    """Beat: EDL documents and history of projects that no longer exist (projects/retention.py)."""
    return run_sweep("deleted_project_edls", time_budget=TASK_TIME_BUDGET_SECONDS).describe()
