"""A job input's fields are copied for each serializer by sharing what no request changes
(jobs.inputs.JobInput.get_fields) instead of DRF's deep copy: each copy must be the field DRF
would have made, bound to its own serializer, and nothing one request does may reach another's."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.utils.serializer_helpers import BindingDict

from jobs.inputs import JobInput
from jobs.specs import JOB_SPECS, JobSpec, JobType

SPECS = sorted(JOB_SPECS.values(), key=lambda spec: str(spec.type))


def _state(field: Any) -> dict[str, Any]:
    """What a bound field decides with: its attributes, less its binding to one serializer."""
    # (`_creation_counter` orders a class's declared fields when the class is made; DRF's deep copy
    # draws a new one, which nothing reads.)
    skip = ("parent", "_validators", "child", "_creation_counter")
    state = {k: v for k, v in vars(field).items() if k not in skip}
    # A validator's message is a lazy string (compared as what it says); its constructor's
    # arguments hold that same string.
    state["validators"] = [(type(v), {k: str(x) for k, x in vars(v).items() if k != "_constructor_args"})
                           for v in field.validators]
    # (A ListField's `child` argument, kept for a later deep copy, is compared as a field.)
    state["_kwargs"] = {k: _state(v) if isinstance(v, serializers.Field) else v for k, v in field._kwargs.items()}
    if isinstance(field, serializers.ListField):
        state["child"] = _state(field.child)
    return state


def _drf_fields(serializer: serializers.Serializer) -> dict[str, Any]:
    """The fields as DRF's own Serializer.get_fields makes them, bound to `serializer`."""
    fields = copy.deepcopy(type(serializer)._declared_fields)
    for name, field in fields.items():
        field.bind(field_name=name, parent=serializer)
    return fields


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: str(spec.type))
def test_each_field_is_the_one_drfs_deep_copy_makes(spec: JobSpec) -> None:
    serializer = spec.input()
    drf = _drf_fields(spec.input())
    assert list(serializer.fields) == list(drf)
    for name, field in serializer.fields.items():
        assert type(field) is type(drf[name]), name
        assert _state(field) == _state(drf[name]), name


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: str(spec.type))
def test_each_serializer_has_fields_of_its_own_bound_to_it(spec: JobSpec) -> None:
    first, second = spec.input(), spec.input()
    for name, field in first.fields.items():
        other: Any = second.fields[name]
        assert field is not other and field is not type(first)._declared_fields[name]
        assert field.parent is first and other.parent is second
        if isinstance(field, serializers.ListField):
            assert field.child is not other.child
            assert field.child.parent is field and other.child.parent is other


def test_a_request_changing_what_a_field_returned_leaves_the_next_requests_alone() -> None:
    first = JOB_SPECS[JobType.TTS].input().fields["webhook_events_filter"]
    value = first.run_validation(["completed"])
    value.append("start")
    value.append("nope")
    second = JOB_SPECS[JobType.TTS].input().fields["webhook_events_filter"]
    assert second.run_validation(["completed"]) == ["completed"]
    with pytest.raises(ValidationError):
        second.run_validation(["completed", "start", "progress", "completed"])  # max_length 3, as declared
    with pytest.raises(ValidationError):
        second.run_validation(["nope"])


class _WithMutableDefaults(JobInput):
    tags = serializers.ListField(child=serializers.CharField(), default=list)  # called: a new list each time
    names = serializers.ListField(child=serializers.CharField(), default=["a"])  # a request could change it
    title = serializers.CharField(default="x")


def test_a_field_whose_default_a_request_could_change_is_deep_copied() -> None:
    first, second = _WithMutableDefaults(), _WithMutableDefaults()
    assert first.fields["names"].default == ["a"]
    assert first.fields["names"].default is not second.fields["names"].default
    assert first.fields["names"].default is not _WithMutableDefaults._declared_fields["names"].default
    valid = _WithMutableDefaults(data={})
    valid.is_valid(raise_exception=True)
    valid.validated_data["names"].append("b")
    valid.validated_data["tags"].append("t")
    again = _WithMutableDefaults(data={})
    again.is_valid(raise_exception=True)
    assert again.validated_data["names"] == ["a"] and again.validated_data["tags"] == []
    assert again.validated_data["title"] == "x"


def test_the_copies_refuse_what_drfs_refuse() -> None:
    spec = JOB_SPECS[JobType.TTS]
    for body in ({"text": ""}, {"text": "x", "priority": "urgent"}, {"text": "x", "webhook_events_filter": []},
                 {"text": "x", "webhook_events_filter": ["start", "nope"]}, {"text": "x", "speed": "fast"},
                 {"text": "x", "project_id": "not-a-uuid"}, {"text": "x", "start_within_seconds": 0},
                 {"text": "x", "cache": "maybe"}, {"text": "x", "quote_id": str(uuid.uuid4()), "extra": 1}):
        ours = spec.input(data=body)
        drf = spec.input(data=body)
        drf.__dict__["fields"] = BindingDict(drf)  # DRF's own copies, instead of ours
        for name, field in copy.deepcopy(spec.input._declared_fields).items():
            drf.fields[name] = field
        assert ours.is_valid() is False and drf.is_valid() is False, body
        assert ours.errors == drf.errors, body
