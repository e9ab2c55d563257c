"""Each bound an engine declares (its module's INPUT_BOUNDS) is the bound of the type's API input,
and the engine's own check: at the edge both accept, one step past it both refuse. The API refuses
with 400 `validation_error` naming the field, before anything is charged."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from auteur.core.errors import api_exception_handler
from gpu_tasks.engines import (
    audio_generation,
    compression,
    gaze_redirection,
    image_generation,
    render_cuts,
    timeline,
    transcription,
    tts,
    video_generation,
    video_query,
    weights,
)
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Bound, Choices, InputBound, Resolution
from jobs.gpu_client import input_bounds
from jobs.specs import JOB_SPECS, JobSpec
from tests.jobs.support import error_code, ledger_state, submit, valid_body

EPSILON = 0.001  # a step past a bound on a number that need not be whole
_ID = str(uuid.UUID(int=1))

# A body each input accepts on its own (shape only: ids are not resolved here), the engine's
# payload likewise; the probed field is added to them.
INPUT_BASE: dict[str, dict[str, Any]] = {
    "transcription": {"media_id": _ID},
    "tts": {"text": "Hello"},
    "lip-sync": {"video_media_id": _ID, "audio_media_id": _ID},
    "performance-cloning": {"source_image_media_id": _ID, "driving_video_media_id": _ID},
    "gaze-redirection": {"video_media_id": _ID},
    "video-query": {"video_media_id": _ID, "question": "Why?"},
    # One short step: every bound alone then fits the time limit (the cost model refuses dear
    # combinations of them, test_video_generation.py and test_api_submit.py).
    "video-generation": {"prompt": "a cat", "steps": 1, "duration_sec": 1},
    "image-generation": {"prompt": "a cat"},
    "audio-generation": {"prompt": "rain"},
    "render": {"project_id": _ID},
    "compression": {"media_id": _ID},
    "voice-consent": {"challenge_id": _ID, "recording_media_id": _ID, "sample_media_id": _ID},
    "likeness-consent": {"challenge_id": _ID, "recording_media_id": _ID, "subject_media_id": _ID},
}


class Accepted(Exception):
    """The engine got past its checks of the payload to its first input."""


class _Context:
    def input_path(self, ref: Any, name: str, **span: Any) -> Any:
        raise Accepted

    def progress(self, percent: float) -> None:
        pass


def _render(payload: Mapping[str, Any]) -> None:
    # A render's size and rate replace its snapshot's settings, which parse_timeline checks.
    settings: dict[str, Any] = {}
    if "resolution" in payload:
        width, _, height = str(payload["resolution"]).partition("x")
        settings["resolution"] = {"width": int(width), "height": int(height)}
    if "frame_rate" in payload:
        settings["frame_rate"] = payload["frame_rate"]
    one_clip = [{"type": "video", "clips": [{"media_file_id": "m", "duration_ms": 1000}]}]
    timeline.parse_timeline({"settings": settings, "tracks": one_clip})
    render_cuts.crossfade_of(payload)


# How each type's engine checks a payload: returns (or raises Accepted) when it takes it, raises
# PermanentGpuError("invalid_input") when it does not.
ENGINE_CHECKS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "transcription": lambda p: transcription.run_local({"language": "en", **p}, _Context()),  # type: ignore[arg-type]
    "tts": lambda p: tts.validate({"text": "Hello", **p}),
    "gaze-redirection": gaze_redirection.validate,
    "video-query": lambda p: video_query.validate({"question": "Why?", **p}),
    # run() reads the seed after validate(), before any weights load.
    "video-generation": lambda p: (video_generation.validate({**INPUT_BASE["video-generation"], **p}),
                                   weights.seed_of(p)),
    "image-generation": lambda p: image_generation.validate({"prompt": "a cat", **p}),
    "audio-generation": lambda p: audio_generation.validate({"prompt": "rain", **p}),
    "render": _render,
    "compression": lambda p: compression.run(p, _Context()),  # type: ignore[arg-type]
}


def _nested(name: str, value: Any, bounds: Mapping[str, InputBound]) -> dict[str, Any]:
    """{name: value}, where a dotted name is a field of an object whose other fields take their least."""
    head, _, field = name.partition(".")
    if not field:
        return {name: value}
    siblings = {
        n.partition(".")[2]: b.low for n, b in bounds.items()
        if n.startswith(f"{head}.") and n != name and isinstance(b, Bound)
    }
    return {head: {**siblings, field: value}}


def probes(bound: InputBound) -> Iterator[tuple[Any, bool]]:
    """(value, taken?) at and one step past each edge of `bound`."""
    if isinstance(bound, Choices):
        yield from ((v, True) for v in bound.values)
        yield "none-of-these", False
    elif isinstance(bound, Resolution):
        least, w, h = bound.min_side, bound.max_width, bound.max_height
        yield from ((f"{w}x{h}", True), (f"{least}x{least}", True))
        yield from ((f"{w + 2}x{h}", False), (f"{w}x{h + 2}", False), (f"{least - 2}x{least}", False),
                    (f"{least + 1}x{least}", False))
    elif bound.kind == "text":
        assert bound.high is not None, "text without an upper bound"
        # A blank string is refused by every API input, whatever the engine takes.
        yield "x" * max(int(bound.low), 1), True
        yield "x" * int(bound.high), True
        yield "x" * (int(bound.high) + 1), False
        if bound.low >= 1:
            yield "x" * (int(bound.low) - 1), False
    else:
        step = 1 if bound.kind == "integer" else EPSILON
        yield bound.low, True
        yield bound.low - step, False
        if bound.high is not None:
            yield bound.high, True
            yield bound.high + step, False
        if bound.multiple_of:
            yield bound.low + bound.multiple_of // 2, False


CASES = [
    pytest.param(spec, name, bound, id=f"{spec.type.value}:{name}")
    for spec in JOB_SPECS.values()
    for name, bound in input_bounds(spec.type).items()
]


def input_verdict(spec: JobSpec, body: dict[str, Any]) -> tuple[bool, Any]:
    serializer = spec.input(data=body)
    try:
        serializer.is_valid(raise_exception=True)
    except ValidationError as exc:
        response = api_exception_handler(exc, {})
        assert response is not None
        error = response.data["error"]
        return False, (response.status_code, error["code"], set(error["details"]["fields"]))
    return True, None


def engine_verdict(spec: JobSpec, payload: dict[str, Any]) -> bool:
    try:
        ENGINE_CHECKS[spec.type.value](payload)
    except Accepted:
        return True
    except PermanentGpuError as exc:
        assert exc.code == "invalid_input", exc
        return False
    return True


def test_every_type_whose_engine_declares_bounds_is_probed():
    assert {spec.type.value for spec in JOB_SPECS.values() if input_bounds(spec.type)} == set(ENGINE_CHECKS)
    assert set(INPUT_BASE) == {t.value for t in JOB_SPECS}
    for spec in JOB_SPECS.values():
        assert input_verdict(spec, dict(INPUT_BASE[spec.type.value]))[0], spec.type


@pytest.mark.parametrize(("spec", "name", "bound"), CASES)
def test_the_input_and_its_engine_take_exactly_the_declared_bound(spec: JobSpec, name: str, bound: InputBound):
    top = name.partition(".")[0]
    assert top in spec.input().fields, f"{spec.type}: the engine bounds {name}, which the input does not name"
    bounds = input_bounds(spec.type)
    for value, taken in probes(bound):
        probe = _nested(name, value, bounds)
        accepted, refusal = input_verdict(spec, {**INPUT_BASE[spec.type.value], **probe})
        assert accepted is taken, (name, value, refusal)
        if not taken:
            status, code, fields = refusal
            assert (status, code) == (400, "validation_error") and any(f.split(".")[0] == top for f in fields)
        assert engine_verdict(spec, probe) is taken, (name, value, "engine")


@pytest.mark.parametrize(("spec", "name", "bound"), CASES)
def test_the_inputs_default_is_the_engines(spec: JobSpec, name: str, bound: InputBound):
    field = spec.input().fields[name.partition(".")[0]]
    declared = getattr(bound, "default", None)
    if field.default is not serializers.empty and declared is not None:
        assert field.default == declared
        assert type(field.default) is type(declared)


@pytest.mark.django_db
@pytest.mark.parametrize("job_type", sorted(t for t in ENGINE_CHECKS))
def test_a_request_past_an_engine_bound_is_a_400_and_charges_nothing(job_type, auth_client, funded, project, media):
    bounds = input_bounds(job_type)
    before = ledger_state(funded)
    for name, bound in bounds.items():
        for value, taken in probes(bound):
            if taken:
                continue
            body = {**valid_body(job_type, project, media), **_nested(name, value, bounds)}
            response = submit(auth_client, job_type, body)
            assert response.status_code == 400, (name, value, response.content)
            assert error_code(response) == "validation_error"
    assert ledger_state(funded) == before  # no charge, no ledger row, no job
