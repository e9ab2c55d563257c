"""Timeline interchange endpoints: export the timeline as an editor's file, import one back.

`?format=` names the file's format here, not a renderer: DRF's own use of the parameter is switched
off for the export, whose answers (and errors) are JSON unless `download=true` asks for the file.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import ApiView, request_user
from auteur.core.errors import ApplicationError
from auteur.core.schema import raises
from auteur.users.selectors import require_seat
from auteur.users.workspace_context import seat_of
from projects.caption_apis import _FormatIsNotARenderer
from projects.edl.cuts import DEFAULT_PADDING_MS
from projects.edl.interchange.export import timeline_export
from projects.edl.interchange.formats import FORMATS, IMPORT_EXTENSIONS, max_import_bytes
from projects.edl.interchange.importing import import_format, timeline_import
from projects.selectors import project_get

REPORT_HEADER = "Auteur-Interchange-Dropped"
MAX_GIVEN_MEDIA, MAX_GIVEN_MEDIA_BYTES = 1000, 200_000

_FORMAT_HELP = "; ".join(f"`{f.name}` (.{f.extension}): {f.editors}" for f in FORMATS.values())


class DroppedSerializer(serializers.Serializer):
    feature = serializers.CharField(help_text="What was not carried: speed, fades, volume, text, crop, fit, "
                                              "markers, audio_tracks, extra_video_tracks, effects, transitions, ...")
    count = serializers.IntegerField(help_text="How many (clips, tracks or cuts).")
    message = serializers.CharField()
    clip_ids = serializers.ListField(child=serializers.CharField(), help_text="The first 20 clips it concerns.")


class TimelineExportApi(ApiView):
    """The timeline as the render plays it, as a file for a professional editor: each piece the
    transcript's cuts leave is one clip with its own source in and out points, placed where the
    render places it. Speed, fades, volume, text, crop and fit go as far as the format carries them;
    what it cannot carry is listed in `dropped` (and, with `download=true`, in the
    `Auteur-Interchange-Dropped` header as JSON). Media is named by a stable name and referenced by
    the relink path `media/<name>`, or by a signed download URL with `media_urls=signed` (they expire:
    `expires_at`). 422 `edl_limit_exceeded` when the cuts make more pieces than an export takes."""

    workspace_actions = {"GET": "projects.view"}

    content_negotiation_class = _FormatIsNotARenderer

    class QuerySerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=list(FORMATS), help_text=_FORMAT_HELP)
        cut_padding_ms = serializers.IntegerField(
            min_value=0, max_value=1000, default=DEFAULT_PADDING_MS,
            help_text="As the render's: the silence kept beside a kept word where deletions are cut (ms).")
        markers = serializers.BooleanField(default=False, help_text="Mark each transcript cut with a marker.")
        media_urls = serializers.ChoiceField(
            choices=["path", "signed"], default="path",
            help_text="`path`: clips reference `media/<name>` to relink; `signed`: signed download URLs.")
        download = serializers.BooleanField(
            default=False, help_text="Answer the file itself (Content-Disposition) instead of JSON.")
        timecode = serializers.ChoiceField(
            choices=["drop_frame", "non_drop_frame"], required=False,
            help_text="At 29.97 and 59.94: drop-frame timecode (the default) or non-drop. Other rates have "
                      "non-drop only. A CMX 3600 list's times and its `FCM:` line follow it; the XML formats "
                      "show it (their times are frames or seconds either way).")

    class OutputSerializer(serializers.Serializer):
        class MediaSerializer(serializers.Serializer):
            media_file_id = serializers.UUIDField()
            name = serializers.CharField(help_text="The stable name the file's clips carry.")
            path = serializers.CharField(help_text="The relink path clips reference (without media_urls=signed).")
            url = serializers.CharField(allow_null=True, help_text="The signed URL, with media_urls=signed.")
            expires_at = serializers.DateTimeField(allow_null=True)
            missing = serializers.BooleanField(help_text="The file was deleted from the project.")

        format = serializers.ChoiceField(choices=list(FORMATS))
        filename = serializers.CharField()
        content_type = serializers.CharField()
        encoding = serializers.ChoiceField(choices=["utf-8", "base64"], help_text="base64 for AAF (binary).")
        content = serializers.CharField(help_text="The file.")
        version = serializers.IntegerField(help_text="The timeline version exported.")
        frame_rate = serializers.FloatField(help_text="The timeline's frame rate, which the file counts frames at "
                                                      "(29.97 is 30000/1001 exactly).")
        drop_frame = serializers.BooleanField(help_text="Whether the file's timecode is drop-frame.")
        pieces = serializers.IntegerField(help_text="Clips the cuts made, as the render plays them.")
        duration_ms = serializers.IntegerField(help_text="The edited timeline's length, as the render's.")
        dropped = DroppedSerializer(many=True)
        media = MediaSerializer(many=True)

    @extend_schema(
        summary="Export the timeline for Premiere, Final Cut, Resolve or Avid",
        parameters=[QuerySerializer],
        responses={200: OutputSerializer,
                   (200, "application/octet-stream"): OpenApiResponse(
                       OpenApiTypes.BINARY, description="With download=true: the file, as an attachment named "
                                                        "with its format's extension.")},
    )
    @raises("edl_limit_exceeded", "edl_unavailable")
    def get(self, request: Request, project_id: uuid.UUID) -> Response | HttpResponse:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        seat = seat_of(request._request)
        if q["media_urls"] == "signed" and seat is not None:
            # Signed URLs download the media: what the seat may see of the media, not only of projects.
            require_seat(seat, "media.view")
        export = timeline_export(user=user, project=project, fmt=q["format"], padding_ms=q["cut_padding_ms"],
                                 markers=q["markers"], signed_urls=q["media_urls"] == "signed",
                                 drop_frame=q["timecode"] == "drop_frame" if "timecode" in q else None)
        if q["download"]:
            # One media type for every format's file, as the schema declares it: an OTIO file is
            # JSON, but not the JSON this endpoint's other answer is (the extension names the format).
            response = HttpResponse(export.data, content_type="application/octet-stream")
            response["Content-Disposition"] = content_disposition_header(True, export.filename) or ""
            response[REPORT_HEADER] = json.dumps([{k: d[k] for k in ("feature", "count")} for d in export.dropped])
            return response
        encoding, content = export.content()
        body: dict[str, Any] = {
            "format": export.format, "filename": export.filename, "content_type": export.content_type,
            "encoding": encoding, "content": content, "version": export.version, "pieces": export.pieces,
            "frame_rate": export.frame_rate, "drop_frame": export.drop_frame,
            "duration_ms": export.duration_ms, "dropped": export.dropped,
            "media": [m.__dict__ for m in export.media],
        }
        return Response(self.OutputSerializer(body).data)


class TimelineImportApi(ApiView):
    """Replace the timeline's tracks by those of an editor's file (multipart field `file`:
    .otio, .fcpxml, .xml for FCP7 XML, .edl for CMX 3600, .aaf), as one new version (one undo step).
    Each clip's media is matched to a file of the project by id (files this API exported carry
    it), else by name; 422 `media_unmatched` lists the names that match none, and nothing is
    saved. The file's cuts are the timeline's edits now: the transcript keeps the words the imported
    clips play, at their new times (`transcript_words`), and drops the deleted ones and those no
    clip plays (`transcript_words_dropped`); what the timeline cannot hold is listed in `dropped`. 413
    `file_too_large` over the import limit, 422 `interchange_invalid` for a file that cannot be read,
    `input_too_complex` for one that takes more to read than a request may (the file is read in a
    confined child, its shape and references checked before anything is built)."""

    workspace_actions = {"POST": "projects.edit"}

    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="The timeline file: " + ", ".join(sorted(IMPORT_EXTENSIONS)))
        format = serializers.ChoiceField(
            choices=sorted(n for n, f in FORMATS.items() if f.importable), required=False,
            help_text="Default: from the file's extension.")
        expected_version = serializers.IntegerField(
            min_value=1, required=False, help_text="The version you last read; 409 when stale.")
        frame_rate = serializers.FloatField(
            min_value=1, max_value=240, required=False,
            help_text="The rate a CMX 3600 list is read at (it states none): 23.976, 24, 25, 29.97, 30, 50, "
                      "59.94, 60 or any other. Default: the timeline's. Other formats state their own.")
        media = serializers.CharField(
            max_length=MAX_GIVEN_MEDIA_BYTES, required=False, trim_whitespace=False,
            help_text="JSON: a name the file gives a clip (its clip, file or reel name) -> the id of a file of "
                      "this project, for names that match no file's name (`media_unmatched` lists them with "
                      "the files they could mean).")

        def validate_media(self, text: str) -> dict[str, str]:
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):  # nested past the reader's recursion: not a list of names
                raise serializers.ValidationError("Not a JSON object of names and media file ids.") from None
            if not isinstance(value, dict) or len(value) > MAX_GIVEN_MEDIA:
                raise serializers.ValidationError(f"An object of at most {MAX_GIVEN_MEDIA} names.")
            checked: dict[str, str] = {}
            for name, media_id in value.items():
                try:
                    checked[str(name)[:255]] = str(uuid.UUID(str(media_id)))
                except ValueError:
                    raise serializers.ValidationError(f"Not a media file id: {str(media_id)[:64]!r}.") from None
            return checked

    class OutputSerializer(serializers.Serializer):
        class MatchedSerializer(serializers.Serializer):
            media_file_id = serializers.UUIDField()
            name = serializers.CharField()
            clips = serializers.IntegerField()

        version = serializers.IntegerField(help_text="The timeline's new version.")
        frame_rate = serializers.FloatField(help_text="The file's frame rate (a CMX 3600 list's: the one it was "
                                                      "read at), which the timeline takes.")
        tracks = serializers.IntegerField()
        clips = serializers.IntegerField()
        matched = MatchedSerializer(many=True)
        dropped = DroppedSerializer(many=True)
        transcript_words = serializers.IntegerField(help_text="The transcript's words kept on the imported clips.")
        transcript_words_dropped = serializers.IntegerField(
            help_text="Words deleted before the import (the file's cuts) or that no imported clip plays.")

    @extend_schema(
        summary="Import an editor's timeline file as a new version of the timeline",
        request={"multipart/form-data": InputSerializer},
        responses={200: OutputSerializer},
    )
    @raises("file_too_large", "interchange_invalid", "media_unmatched", "edl_conflict", "edl_invalid",
            "edl_limit_exceeded", "edl_too_large", "edl_unavailable", "input_too_complex", "feature_unavailable")
    def post(self, request: Request, project_id: uuid.UUID) -> Response:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        _check_upload_length(request)
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        upload = data["file"]
        fmt = import_format(filename=upload.name or "", fmt=data.get("format"))
        result = timeline_import(user=user, project=project, data=_read_upload(upload), fmt=fmt,
                                 expected_version=data.get("expected_version"), frame_rate=data.get("frame_rate"),
                                 media=data.get("media"))
        return Response(self.OutputSerializer(result.__dict__).data, headers={"ETag": f'"{result.version}"'})


def _check_upload_length(request: Request) -> None:
    """Refuse an oversize upload before it is parsed (the service checks the file's size too)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = max_import_bytes() + 64 * 1024  # the multipart framing and the other fields
    if length > limit:
        raise ApplicationError(f"The upload is {length} bytes; the limit for an import is {max_import_bytes()}.",
                               code="file_too_large", details={"size_bytes": length, "max_bytes": max_import_bytes()})


def _read_upload(upload: Any) -> bytes:
    limit = max_import_bytes()
    data: bytes = upload.read(limit + 1)
    if len(data) > limit:
        raise ApplicationError(f"The file is over the limit for an import ({limit} bytes).", code="file_too_large",
                               details={"max_bytes": limit})
    return data
