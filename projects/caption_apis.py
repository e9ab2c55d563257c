"""Caption files to download: a media file's (its latest transcription) and the edited timeline's.

`?format=` names the file's format here (srt, vtt or json), not a renderer: DRF's own use of the
parameter is switched off for these views, whose errors still answer as JSON.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

from auteur.core.api import ApiView, request_user
from auteur.core.schema import raises
from media.selectors import media_get
from media.services.captions import media_caption_read
from projects.captions import FORMATS, media_caption_file, timeline_caption_file
from projects.edl.cuts import DEFAULT_PADDING_MS
from projects.edl.selectors import edl_get
from projects.edl.validation import check_edl_limits
from projects.errors import CaptionsNotFound
from projects.selectors import project_get


class _FormatIsNotARenderer(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, str(renderer.media_type)


class CaptionWordSerializer(serializers.Serializer):
    text = serializers.CharField()
    start = serializers.FloatField(help_text="Seconds.")
    end = serializers.FloatField(help_text="Seconds.")
    speaker = serializers.CharField(required=False, allow_null=True, help_text="With `speakers=true`.")


class CaptionJsonSerializer(serializers.Serializer):
    duration = serializers.FloatField(help_text="Seconds.")
    language = serializers.CharField()
    words = CaptionWordSerializer(many=True)

    class Meta:
        ref_name = "Captions"


class CaptionQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=list(FORMATS), default="srt")
    speakers = serializers.BooleanField(default=False, help_text="Label each change of speaker (`Name: `).")


class TimelineCaptionQuerySerializer(CaptionQuerySerializer):
    cut_padding_ms = serializers.IntegerField(
        min_value=0, max_value=1000, default=DEFAULT_PADDING_MS,
        help_text="As the render's: the silence kept beside a kept word where deletions are cut (ms).")


_CAPTION_RESPONSES: dict[Any, Any] = {
    (200, FORMATS["srt"][0]): OpenApiResponse(OpenApiTypes.STR, description="SubRip"),
    (200, FORMATS["vtt"][0]): OpenApiResponse(OpenApiTypes.STR, description="WebVTT"),
    (200, FORMATS["json"][0]): CaptionJsonSerializer,
}


class _CaptionFileApi(ApiView):
    workspace_actions = {"GET": "projects.view"}
    content_negotiation_class = _FormatIsNotARenderer

    query_serializer: type[CaptionQuerySerializer] = CaptionQuerySerializer

    def query(self, request: Request) -> dict[str, Any]:
        query = self.query_serializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return dict(query.validated_data)

    @staticmethod
    def file_response(body: str, fmt: str, stem: str) -> HttpResponse:
        content_type, ext = FORMATS[fmt]
        response = HttpResponse(body.encode(), content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = content_disposition_header(True, f"{stem or 'captions'}.{ext}") or ""
        return response


@raises("captions_not_found")
class MediaCaptionsApi(_CaptionFileApi):
    """The captions of a media file, from its latest completed transcription, at the file's own
    times: SRT or WebVTT (lines of at most 42 characters, at most 2 lines a cue) or JSON
    (`{duration, language, words: [{text, start, end}]}`, in seconds). 404 `captions_not_found`
    when the file has never been transcribed."""

    workspace_actions = {"GET": "media.view"}

    @extend_schema(parameters=[CaptionQuerySerializer], responses=_CAPTION_RESPONSES,
                   summary="Download a media file's captions", tags=["media"])
    def get(self, request: Request, project_id: uuid.UUID, media_id: uuid.UUID) -> HttpResponse:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        media = media_get(user=user, project_id=project.pk, media_id=media_id)
        query = self.query(request)
        caption = media_caption_read(media=media)
        if caption is None:
            raise CaptionsNotFound("This file has no transcription yet.")
        body = media_caption_file(caption, query["format"], speakers=query["speakers"])
        return self.file_response(body, query["format"], Path(media.name).stem)


@raises("captions_not_found", "edl_unavailable", "edl_limit_exceeded")
class TimelineCaptionsApi(_CaptionFileApi):
    """The captions of the edited timeline, from the EDL's transcript, at the times they play in
    the render (with the same `cut_padding_ms`): deleted words and segments are gone (and the time
    they took), and a segment's `edited_text` is what its captions say. Formats as for a media file's captions. 404
    `captions_not_found` when the transcript is empty; 422 `edl_limit_exceeded` for a timeline saved
    before its limits were lowered, over them now."""

    query_serializer = TimelineCaptionQuerySerializer

    @extend_schema(parameters=[TimelineCaptionQuerySerializer], responses=_CAPTION_RESPONSES,
                   summary="Download the edited timeline's captions")
    def get(self, request: Request, project_id: uuid.UUID) -> HttpResponse:
        project = project_get(user=request_user(request), project_id=project_id)
        query = self.query(request)
        edl = edl_get(project=project)
        check_edl_limits(edl)  # one saved under other limits: refused before anything is computed
        if not (edl.get("transcript") or {}).get("segments"):
            raise CaptionsNotFound("The timeline has no transcript.")
        body = timeline_caption_file(edl, query["format"], speakers=query["speakers"],
                                     padding_ms=query["cut_padding_ms"])
        return self.file_response(body, query["format"], slugify(project.name))
