"""Every job type is declared once, whole: each spec has every part the rest of the code reads."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.fields import ChoiceField

from auteur.core.queues import ALL_QUEUES, TASK_ROUTES
from credits.models import Plan
from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.engines import load_engine
from gpu_tasks.types import JOB_TYPES, GpuClass
from jobs.inputs import JobInput, MediaRef
from jobs.life.publish import Step
from jobs.pricing import EstimatedGpuSeconds, FieldValue, MediaDuration, TextLength, TimelineDuration
from jobs.specs import JOB_SPECS, Family, JobSpec, JobType, OutputKind, job_spec
from jobs.tasks import STEP_TASKS


def test_every_job_type_has_one_spec_and_one_gpu_row():
    assert set(JOB_SPECS) == set(JobType) == set(JOB_TYPES)


@pytest.mark.parametrize("spec", JOB_SPECS.values(), ids=lambda s: s.type.value)
def test_each_spec_has_every_part(spec: JobSpec):
    assert spec.description
    # Input: a shape-only serializer that takes the project, with its references declared.
    assert issubclass(spec.input, JobInput) and "project_id" in spec.input().fields
    fields = spec.input().fields
    # Price: a positive rule whose measure reads a field the input has (or the timeline it snapshots).
    assert spec.price.credits > 0 and spec.price.per > 0 and spec.price.unit
    measure = spec.price.measure
    if isinstance(measure, MediaDuration):
        assert isinstance(fields[measure.field], MediaRef)
    elif isinstance(measure, FieldValue | TextLength):
        assert measure.field in fields
    elif isinstance(measure, TimelineDuration):
        assert spec.timeline
    elif isinstance(measure, EstimatedGpuSeconds):
        assert {"resolution", "duration_sec", "steps", "guidance"} <= set(fields)
    else:
        assert measure is None
    assert spec.plan is None or spec.plan in Plan.values
    assert callable(spec.payload)
    # Queue family: three named step tasks, routed to a declared queue.
    assert spec.family in Family
    for step in Step:
        task = STEP_TASKS[spec.family, step]
        assert task.name == f"jobs.{spec.family}.{step}"
        assert TASK_ROUTES[f"jobs.{spec.family}.*"]["queue"] in ALL_QUEUES
    # The GPU side's half: class, limit, containers, output kind; the engines it names exist.
    engine = spec.engine
    assert engine.gpu in GpuClass and engine.time_limit_s > 0 and engine.max_concurrency > 0
    assert spec.output in OutputKind
    for where, target in (("local", engine.local_engine), ("modal", engine.modal_engine)):
        if target is not None:
            assert callable(load_engine(spec.type, where))
    # What the noop backend answers, and the submission route.
    assert fixed_result(spec.type)
    assert reverse(f"job-submit-{spec.type.value}").endswith(f"/jobs/{spec.type.value}")


def test_the_video_sizes_offered_are_the_ones_the_declared_model_was_trained_at():
    from gpu_tasks.engines import video_generation

    field = JOB_SPECS[JobType.VIDEO_GENERATION].input().fields["resolution"]
    assert isinstance(field, ChoiceField)
    assert set(field.choices) == set(video_generation.ALLOWED_RESOLUTIONS)


def test_the_step_tasks_are_exactly_the_families_steps():
    assert set(STEP_TASKS) == {(family, step) for family in Family for step in Step}
    assert {f for f in Family} == {s.family for s in JOB_SPECS.values()}, "no family without a job type"


@pytest.mark.parametrize(("resolution", "fps", "weight", "credits"), [
    ((1280, 720), 30, 1.0, 4),  # below the reference: as 1080p30
    ((1920, 1080), 30, 1.0, 4),
    ((1920, 1080), 60, 2.0, 6),
    ((3840, 2160), 60, 8.0, 24),
    ((7680, 4320), 120, 64.0, 192),
])
def test_a_render_is_priced_by_its_output_pixels_per_second(resolution, fps, weight, credits):
    spec = job_spec("render")
    edl = {"settings": {"resolution": {"width": resolution[0], "height": resolution[1]}, "frame_rate": fps,
                        "duration_ms": 90_000}, "tracks": []}
    quantities = spec.price.quantities({"edl": edl}, {})
    assert quantities == {"duration_ms": 90_000, "output_weight": weight}
    # 2 credits per started minute at 1080p30: 90 s weighs 1.5 minutes times the weight, rounded up.
    assert spec.price.cost(quantities) == credits
    assert "1080p" in spec.price.describe()
