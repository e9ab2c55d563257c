"""EDL endpoints: read, save (guarded by the version the client last saw), undo and redo.

The EDL body is validated by ``projects.edl.validation`` (field paths in every error) and returned
as the service builds it: a DRF serializer would add tens of milliseconds on a 2,000-clip
timeline and check nothing new. The serializers below describe the shape for the OpenAPI schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import ApiView, StrictSerializer
from auteur.core.collector import collector_paused
from auteur.core.errors import ApplicationError
from auteur.core.schema import raises
from auteur.users.models import User
from media.models import MediaStatus
from media.selectors import media_get
from projects.edl.documents import edl_limits
from projects.edl.effects import EFFECTS
from projects.edl.fillers import DEFAULT_MIN_PAUSE_MS, FILLERS, edl_remove_fillers, language_code
from projects.edl.history import edl_redo, edl_undo
from projects.edl.media_swap import edl_replace_media
from projects.edl.selectors import edl_get, edl_get_json
from projects.edl.services import edl_replace, edl_replace_json
from projects.errors import EdlInvalid, EdlTooLarge
from projects.models import Project
from projects.selectors import project_get

# ----------------------------------------------------------------------------- schema


class EdlResolutionSerializer(serializers.Serializer):
    width = serializers.IntegerField(min_value=16, max_value=7680)
    height = serializers.IntegerField(min_value=16, max_value=7680)


class EdlSettingsSerializer(serializers.Serializer):
    resolution = EdlResolutionSerializer()
    frame_rate = serializers.FloatField(min_value=1, max_value=240)
    duration_ms = serializers.IntegerField(
        read_only=True, help_text="Computed on save: the end of the last non-deleted clip."
    )


def _effect_param_field(name: str) -> serializers.Field:
    """One parameter of the effect vocabulary, as the schema shows it (every type that takes it)."""
    users = [(spec.name, spec.params[name]) for spec in EFFECTS.values() if name in spec.params]
    param = users[0][1]
    help_text = "Of " + ", ".join(kind for kind, _ in users) + "."
    if param.kind == "int":
        return serializers.IntegerField(required=False, help_text=help_text)
    if param.kind == "number":
        return serializers.FloatField(required=False, help_text=help_text)
    if param.kind == "choice":
        choices = sorted({c for _, p in users for c in p.choices})
        return serializers.ChoiceField(choices=choices, required=False, help_text=help_text)
    return serializers.CharField(required=False, help_text=help_text)


# Built from the vocabulary, so that a new effect needs no change here; docs/editing.md lists each
# type's parameters and bounds.
EdlEffectSerializer = type(
    "EdlEffectSerializer",
    (serializers.Serializer,),
    {
        "type": serializers.ChoiceField(choices=sorted(EFFECTS)),
        **{name: _effect_param_field(name) for name in sorted({n for e in EFFECTS.values() for n in e.params})},
    },
)


class EdlClipSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=64)
    media_file_id = serializers.UUIDField(help_text="A ready media file of this project.")
    track_id = serializers.CharField(max_length=64, required=False, help_text="Its track's id (filled if omitted).")
    start_ms = serializers.IntegerField(min_value=0, help_text="Position on the timeline.")
    duration_ms = serializers.IntegerField(
        min_value=0, help_text="Equals out_point_ms - in_point_ms, or round((out - in) / rate) with a speed effect."
    )
    in_point_ms = serializers.IntegerField(min_value=0, help_text="Source start trim.")
    out_point_ms = serializers.IntegerField(min_value=0, help_text="Source end trim, > in_point_ms.")
    effects = serializers.ListField(
        child=EdlEffectSerializer(), required=False, max_length=32,
        help_text="Applied in the render; at most one speed, crop and fit each. Unknown types or keys: 422.",
    )
    deleted = serializers.BooleanField(required=False, default=False)


class EdlTrackSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=64)
    type = serializers.ChoiceField(choices=["video", "audio"])
    name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    clips = EdlClipSerializer(many=True, required=False, help_text="Non-deleted clips may not overlap.")


class EdlWordSerializer(serializers.Serializer):
    word = serializers.CharField(max_length=255)
    start_ms = serializers.IntegerField(min_value=0, help_text="Timeline time, before cuts.")
    end_ms = serializers.IntegerField(min_value=0)
    confidence = serializers.FloatField(min_value=0, max_value=1)
    deleted = serializers.BooleanField(required=False, default=False, help_text="Cut from every track.")


class EdlSegmentSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=64)
    media_file_id = serializers.UUIDField(
        allow_null=True, required=False, help_text="The file it was transcribed from (a transcription writes it)."
    )
    clip_id = serializers.CharField(
        max_length=64, allow_null=True, required=False, help_text="The clip that plays it on the timeline."
    )
    language = serializers.CharField(max_length=16, allow_null=True, required=False)
    speaker = serializers.CharField(max_length=255, allow_null=True, required=False)
    start_ms = serializers.IntegerField(min_value=0)
    end_ms = serializers.IntegerField(min_value=0)
    text = serializers.CharField(required=False, allow_blank=True)
    words = EdlWordSerializer(many=True, required=False)
    deleted = serializers.BooleanField(required=False, default=False)
    edited_text = serializers.CharField(allow_null=True, required=False, allow_blank=True)


class EdlPauseSerializer(serializers.Serializer):
    start_ms = serializers.IntegerField(min_value=0)
    end_ms = serializers.IntegerField(min_value=0)
    deleted = serializers.BooleanField(required=False, default=True)


class EdlTranscriptSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField(allow_null=True, required=False)
    segments = EdlSegmentSerializer(many=True, required=False)
    pauses = EdlPauseSerializer(many=True, required=False, help_text="Silences between words; deleted ones are cut.")


class EdlHistorySerializer(serializers.Serializer):
    undo = serializers.IntegerField(help_text="How many steps undo can go back.")
    redo = serializers.IntegerField(help_text="How many steps redo can go forward.")


class EdlSerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True)
    project_id = serializers.UUIDField(read_only=True)
    user_id = serializers.UUIDField(read_only=True)
    version = serializers.IntegerField(
        min_value=1, help_text="On PUT: the version you last read (or send If-Match)."
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    settings = EdlSettingsSerializer()
    tracks = EdlTrackSerializer(many=True)
    transcript = EdlTranscriptSerializer()
    history = EdlHistorySerializer(read_only=True)
    undo_stack = serializers.ListField(
        child=serializers.IntegerField(), read_only=True,
        help_text="The versions undo returns to, the next one last; kept by the server (ignored on PUT).")
    redo_stack = serializers.ListField(
        child=serializers.IntegerField(), read_only=True,
        help_text="The versions redo returns to, the next one last; kept by the server (ignored on PUT).")


_CONFLICT = OpenApiResponse(description="Saved since you read it (`edl_conflict`: details.current_version).")
_IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description='The version you last read, as its ETag ("3") or bare (3).',
)

# ----------------------------------------------------------------------------- helpers

_View = TypeVar("_View", bound=Callable[..., Response])
_Saved = TypeVar("_Saved")

_ETAG_RE = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')


def _project(request: Request, project_id: UUID) -> Project:
    assert isinstance(request.user, User)
    return project_get(user=request.user, project_id=project_id)


def _edl_response(edl: dict[str, Any], status: int = 200) -> Response:
    return Response(edl, status=status, headers={"ETag": f'"{edl["version"]}"'})


def _edl_json_response(version: int, body: bytes) -> HttpResponse:
    """A timeline's answer rendered already (as _edl_response would render it)."""
    return HttpResponse(body, content_type="application/json", headers={"ETag": f'"{version}"'})


def _render_edl(edl: dict[str, Any]) -> bytes:
    """A timeline (plain JSON values) as the API's JSON renderer writes it: compact, UTF-8, with
    U+2028 and U+2029 escaped so that the answer is also safe as JavaScript. Written by msgspec, a
    few times faster than the json module on a large timeline (bench/edl_latency.py, GET and PUT);
    the same JSON values (tests/projects/test_edl_api.py)."""
    return msgspec.json.encode(edl).replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")


def _body_released(request: Request) -> None:
    """The request's parsed body dropped once the save has used it (read again, it is empty)."""
    request._full_data = request._data = {}  # type: ignore[attr-defined]


def _if_match(request: Request) -> int | None:
    header = request.headers.get("If-Match")
    if header is None:
        return None
    match = _ETAG_RE.match(header)
    if match is None:
        # "*" and lists of tags included: a save must name the one version it was edited from.
        raise ApplicationError(
            'If-Match must be the version you last read, e.g. "3".', code="invalid_if_match"
        )
    return int(match[1])


def _one_version(header: int | None, body: int | None, field: str) -> int | None:
    """The version a write was made from, named by If-Match or a body field (or neither)."""
    if header is not None and body is not None and header != body:
        raise ApplicationError(
            f"If-Match and {field} name different versions.",
            code="version_mismatch",
            details={"if_match": header, field: body},
        )
    return header if header is not None else body


def _check_content_length(request: Request) -> None:
    """Refuse an oversize body before it is read and parsed (the service checks the size too)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = edl_limits().max_bytes
    if length > limit:
        raise EdlTooLarge(
            f"The request body is {length} bytes; the limit for a timeline is {limit}.",
            details={"size_bytes": length, "max_bytes": limit},
        )


# ----------------------------------------------------------------------------- views


class EdlDetailApi(ApiView):
    """GET reads the project's timeline; PUT replaces it whole, guarded by the version."""

    workspace_actions = {"GET": "projects.view", "PUT": "projects.edit"}

    @extend_schema(summary="Get a project's timeline (EDL)", responses={200: EdlSerializer})
    @raises("edl_unavailable")
    def get(self, request: Request, project_id: UUID) -> HttpResponse:
        project = _project(request, project_id)
        if ";" in (request.accepted_media_type or ""):  # e.g. `; indent=2`: rendered as asked
            return _edl_response(edl_get(project=project))
        return _edl_json_response(*edl_get_json(project=project, render=_render_edl))

    @extend_schema(
        summary="Save a project's timeline (EDL)",
        parameters=[_IF_MATCH],
        request=EdlSerializer,
        responses={
            200: EdlSerializer,
            400: OpenApiResponse(description="Malformed JSON or If-Match, or If-Match and version disagree."),
            409: _CONFLICT,
            413: OpenApiResponse(description="`edl_too_large`."),
            422: OpenApiResponse(description="`edl_invalid`: details.errors lists {path, message}; "
                                             "`edl_limit_exceeded`: details give the `limit`, `max` and `count`."),
            428: OpenApiResponse(description="`version_required`: send If-Match or a version field."),
        },
    )
    @raises("invalid_if_match", "invalid_version", "version_mismatch", "edl_conflict", "edl_too_large", "edl_invalid",
            "edl_limit_exceeded", "version_required", "edl_unavailable")
    def put(self, request: Request, project_id: UUID) -> HttpResponse:
        project = _project(request, project_id)
        _check_content_length(request)
        header_version = _if_match(request)
        # The body is read, checked, saved and the answer rendered without the cyclic collector's
        # passes over what they make: bounded by the size checked above (auteur/core/collector.py).
        with collector_paused():
            if ";" in (request.accepted_media_type or ""):  # e.g. `; indent=2`: rendered as asked
                return _edl_response(self._save(request, project, header_version, edl_replace))
            # Rendered while the save's history snapshot is written.
            version, body = self._save(request, project, header_version, partial(edl_replace_json, render=_render_edl))
            # What the save made (the parsed body and the saved timeline: about 40,000 dicts and
            # lists at 2,000 clips) is freed by reference counting before the collector is back
            # on, else its first pass (due at once, after so many allocations) walks it all.
            _body_released(request)
        return _edl_json_response(version, body)

    @staticmethod
    def _save(request: Request, project: Project, header_version: int | None, save: Callable[..., _Saved]) -> _Saved:
        data = request.data
        if not isinstance(data, dict):
            raise EdlInvalid(
                "The timeline must be a JSON object.",
                details={"errors": [{"path": "$", "message": "Must be an object."}]},
            )
        body_version = data.get("version")
        if body_version is not None and (isinstance(body_version, bool) or not isinstance(body_version, int)):
            raise ApplicationError("version must be an integer.", code="invalid_version")
        version = _one_version(header_version, body_version, "version")
        if version is None:
            raise ApplicationError(
                "Send the version you last read, in If-Match or a version field.",
                code="version_required",
            )
        return save(project=project, expected_version=version, data=data)


def _step_schema(summary: str, nothing_code: str, description: str) -> Callable[[_View], _View]:
    """The OpenAPI description of undo or redo: no body, If-Match optional, 409 when there is no step."""
    schema = extend_schema(
        summary=summary,
        description=description,
        parameters=[_IF_MATCH],
        request=None,
        responses={200: EdlSerializer, 409: OpenApiResponse(description="No step to take, or a stale If-Match.")},
    )
    errors = raises(nothing_code, "edl_conflict", "invalid_if_match", "edl_unavailable")
    return lambda view: schema(errors(view))


_UNDO_DESCRIPTION = (
    "Writes a new version whose content is the one before the last change. "
    "If-Match is optional: when sent, a stale version gets 409 edl_conflict."
)
_REDO_DESCRIPTION = (
    "Writes a new version whose content is the one the last undo took back. "
    "Any save other than undo/redo clears what can be redone."
)


def _edl_step(request: Request, project_id: UUID, step: Callable[..., dict[str, Any]]) -> Response:
    project = _project(request, project_id)
    return _edl_response(step(project=project, expected_version=_if_match(request)))


class EdlUndoApi(ApiView):
    workspace_actions = {"POST": "projects.edit"}
    @_step_schema("Undo the last change to a timeline", "nothing_to_undo", _UNDO_DESCRIPTION)
    def post(self, request: Request, project_id: UUID) -> Response:
        return _edl_step(request, project_id, edl_undo)


class EdlRedoApi(ApiView):
    workspace_actions = {"POST": "projects.edit"}
    @_step_schema("Redo the last undone change to a timeline", "nothing_to_redo", _REDO_DESCRIPTION)
    def post(self, request: Request, project_id: UUID) -> Response:
        return _edl_step(request, project_id, edl_redo)


class FillerWordSerializer(serializers.Serializer):
    segment_id = serializers.CharField()
    index = serializers.IntegerField(help_text="The word's position in its segment's words.")
    word = serializers.CharField()
    start_ms = serializers.IntegerField()
    end_ms = serializers.IntegerField()


class SpanSerializer(serializers.Serializer):
    start_ms = serializers.IntegerField()
    end_ms = serializers.IntegerField()


class RemoveFillersOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The timeline's version now (unchanged when nothing was marked).")
    words = FillerWordSerializer(many=True, help_text="The filler words marked deleted.")
    pauses = SpanSerializer(many=True, help_text="The pauses added to transcript.pauses, deleted.")
    skipped_languages = serializers.ListField(
        child=serializers.CharField(), help_text="Languages of segments left alone: no filler list."
    )


class EdlRemoveFillersApi(ApiView):
    """Mark filler words ("um", "uh", ...) and long pauses of the transcript deleted: one undo step."""

    workspace_actions = {"POST": "projects.edit"}

    class InputSerializer(StrictSerializer):
        language = serializers.CharField(
            max_length=16, required=False,
            help_text="Whose fillers: " + ", ".join(sorted(FILLERS)) + ". Default: each segment's own "
            "language, else en.",
        )
        min_pause_ms = serializers.IntegerField(
            min_value=0, max_value=3_600_000, required=False, default=DEFAULT_MIN_PAUSE_MS,
            help_text="Pauses between kept words longer than this are marked deleted; 0 marks none.",
        )
        expected_version = serializers.IntegerField(
            min_value=1, required=False, help_text="The version you last read (or If-Match); 409 when stale.",
        )

        def validate_language(self, value: str) -> str:
            code = language_code(value)
            if code not in FILLERS:
                raise serializers.ValidationError(
                    f"No filler list for {value!r}; supported: {', '.join(sorted(FILLERS))}."
                )
            return code

    @extend_schema(
        summary="Remove filler words and long pauses from a timeline's transcript",
        parameters=[_IF_MATCH],
        request=InputSerializer,
        responses={200: RemoveFillersOutputSerializer, 409: _CONFLICT},
    )
    @raises("invalid_if_match", "version_mismatch", "edl_conflict", "edl_invalid", "edl_limit_exceeded",
            "edl_too_large", "edl_unavailable")
    def post(self, request: Request, project_id: UUID) -> Response:
        project = _project(request, project_id)
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        saved, marked = edl_remove_fillers(
            project=project, language=data.get("language"), min_pause_ms=data["min_pause_ms"],
            expected_version=_one_version(_if_match(request), data.get("expected_version"), "expected_version"),
        )
        version = saved["version"] if saved is not None else edl_get(project=project)["version"]
        return Response(
            {"version": version, "words": marked.words, "pauses": marked.pauses,
             "skipped_languages": sorted(marked.skipped_languages)},
            headers={"ETag": f'"{version}"'},
        )


class EdlReplaceMediaApi(ApiView):
    """Play another file of the project wherever the timeline plays one (a compressed version for
    its source, say): every clip of it, from the same points, and its transcript's segments, which
    keep their words and edits. One undo step. 404 `media_not_found` for a file not of this
    project, 422 `wrong_media_type` when the two are not of one kind, `media_not_ready` when the
    other is not ready, `media_too_short` when it ends before a clip's out point (by more than
    250 ms: a re-encode's padding is allowed for)."""

    workspace_actions = {"POST": "projects.edit"}

    class InputSerializer(StrictSerializer):
        media_id = serializers.UUIDField(help_text="The file the timeline plays now")
        with_media_id = serializers.UUIDField(help_text="The file to play instead")
        expected_version = serializers.IntegerField(
            min_value=1, required=False, help_text="The version you last read (or If-Match); 409 when stale.",
        )

    class OutputSerializer(serializers.Serializer):
        version = serializers.IntegerField(help_text="The timeline's version now (unchanged when no clip played it).")
        clips = serializers.IntegerField(help_text="How many clips now play the other file")

    @extend_schema(
        summary="Play another file wherever the timeline plays one",
        parameters=[_IF_MATCH],
        request=InputSerializer,
        responses={200: OutputSerializer, 409: _CONFLICT},
    )
    @raises("invalid_if_match", "version_mismatch", "edl_conflict", "edl_invalid", "edl_limit_exceeded",
            "edl_too_large", "edl_unavailable", "media_not_found", "wrong_media_type", "media_not_ready",
            "media_too_short")
    def post(self, request: Request, project_id: UUID) -> Response:
        project = _project(request, project_id)
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        assert isinstance(request.user, User)
        media = media_get(user=request.user, project_id=project.pk, media_id=data["media_id"])
        other = media_get(user=request.user, project_id=project.pk, media_id=data["with_media_id"])
        if other.type != media.type:
            raise ApplicationError(
                f"A {media.type} file can be replaced by a {media.type} file only, not {other.type}.",
                code="wrong_media_type", details={"type": media.type, "with_type": other.type})
        if other.status != MediaStatus.READY:
            raise ApplicationError(f"The other file is not ready (status: {other.status}).", code="media_not_ready",
                                   details={"media_id": str(other.pk), "status": other.status})
        saved, clips = edl_replace_media(
            project=project, media_id=str(media.pk), replacement_id=str(other.pk),
            replacement_duration_ms=other.duration_ms,
            expected_version=_one_version(_if_match(request), data.get("expected_version"), "expected_version"),
        )
        version = saved["version"] if saved is not None else edl_get(project=project)["version"]
        return Response({"version": version, "clips": clips}, headers={"ETag": f'"{version}"'})
