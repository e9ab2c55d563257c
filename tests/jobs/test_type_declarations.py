"""A job type is declared in the specs alone: adding one changes no model (no migration), the admin
offers the types the specs declare, and a type that no spec declares is refused before anything
is charged or stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from django.urls import reverse

from jobs import admin as jobs_admin
from jobs import inputs
from jobs.pricing import PriceRule
from jobs.specs import JOB_SPECS, Family, JobSpec, JobType
from tests.jobs.support import error_code, jobs_url, ledger_state, submit

ROOT = Path(__file__).resolve().parents[2]
THROWAWAY = "throwaway-test-type"

# A new type as a feature adds it: a member of JobType and one spec. It must be declared before the
# models load (a model reads its declarations once, at import), so it runs in a fresh interpreter,
# where `makemigrations --check --dry-run` runs in-process: exit status 1 and the operation it
# would write, had the new type changed any model.
NEW_TYPE_SCRIPT = f"""
import enum
import sys
from types import MappingProxyType

import gpu_tasks.types as gpu_types

members = {{m.name: m.value for m in gpu_types.JobType}}
gpu_types.JobType = enum.StrEnum("JobType", {{**members, "THROWAWAY": {THROWAWAY!r}}})

import django

django.setup()

from django.core.management import call_command

from jobs import inputs, specs
from jobs.pricing import PriceRule

extra = specs.JobSpec(gpu_types.JobType.THROWAWAY, "Test only", specs.Family.AUDIO, inputs.TtsInput,
                      PriceRule(1, "call"))
specs.JOB_SPECS = MappingProxyType({{**specs.JOB_SPECS, extra.type: extra}})
assert {THROWAWAY!r} in dict(specs.JOB_TYPE_CHOICES), "the new type is not declared"
call_command("makemigrations", "--check", "--dry-run", verbosity=1)
print("NO CHANGES")
"""


def test_a_new_job_type_needs_no_migration():
    command = [sys.executable, "-W", "ignore::RuntimeWarning", "-c", NEW_TYPE_SCRIPT]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": "auteur.settings"})
    assert done.returncode == 0 and "NO CHANGES" in done.stdout, done.stdout + done.stderr


def test_no_model_field_takes_its_choices_from_the_job_types():
    types = {t.value for t in JobType}
    bad = [
        f"{model._meta.label}.{field.name}"
        for model in apps.get_models()
        for field in model._meta.fields
        if field.choices and types & {str(v) for v, _ in field.flatchoices}
    ]
    assert bad == []


@pytest.fixture
def throwaway_spec(monkeypatch: pytest.MonkeyPatch) -> JobSpec:
    """One more spec, registered for this test only (its type is a plain string: no enum member)."""
    spec = JobSpec(THROWAWAY, "Test only", Family.AUDIO, inputs.TtsInput, PriceRule(1, "call"))  # type: ignore[arg-type]
    monkeypatch.setattr(jobs_admin, "JOB_SPECS", MappingProxyType({**JOB_SPECS, THROWAWAY: spec}))
    return spec


@pytest.mark.django_db
def test_the_admin_filters_by_the_types_the_specs_declare_now(make_user: Any, throwaway_spec: JobSpec):
    client = Client()
    client.force_login(make_user(email="boss@example.com", is_staff=True, is_superuser=True))
    response = client.get(reverse("admin:jobs_job_changelist"))
    assert response.status_code == 200
    [type_filter] = [f for f in response.context["cl"].filter_specs if f.title == "type"]
    offered = [c["display"] for c in type_filter.choices(response.context["cl"])][1:]  # after "All"
    assert offered == sorted([*(t.value for t in JobType), THROWAWAY])


@pytest.mark.django_db
def test_a_type_no_spec_declares_is_refused_and_nothing_is_charged(auth_client, funded, project):
    before = ledger_state(funded)
    for name in ("teleportation", "x" * 40, "TTS", "tts-"):
        response = submit(auth_client, name, {"project_id": str(project.pk), "text": "Hello"})
        assert response.status_code == 404, (name, response.content)
        assert error_code(response) == "unknown_job_type"
        assert response.json()["error"]["details"]["types"] == sorted(t.value for t in JobType)
    assert ledger_state(funded) == before  # no charge, no ledger row, no job
    listed = auth_client.get(jobs_url(), {"type": "teleportation"})
    assert listed.status_code == 400 and error_code(listed) == "validation_error"
