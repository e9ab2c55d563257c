"""`GET /api/v1/usage`: the workspace's usage of its credits, as JSON, CSV or a FOCUS 1.0 file.

`?format=` names the answer's format here, not a renderer: DRF's own use of the parameter is
switched off for this view, whose errors still answer as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import ApiView, request_user
from auteur.core.schema import raises
from auteur.users.workspace_context import seat_of
from credits.usage import GROUPINGS, FocusExport, usage_csv, usage_range, usage_report

FORMATS = ("json", "csv", "focus")


class _FormatIsNotARenderer(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, str(renderer.media_type)


class UsageQuerySerializer(serializers.Serializer):
    # `from` is a Python keyword: declared as from_ and renamed in get_fields.
    from_ = serializers.DateField(required=False, help_text="First UTC day counted (YYYY-MM-DD), included. "
                                                            "Default: the first day of the month of the last day.")
    to = serializers.DateField(required=False, help_text="The UTC day the range ends at (YYYY-MM-DD), excluded. "
                                                         "Default: tomorrow, so that today is counted.")
    group_by = serializers.ChoiceField(choices=list(GROUPINGS), default="day")
    format = serializers.ChoiceField(
        choices=list(FORMATS), default="json",
        help_text="`csv`: one row per group; `focus`: a FinOps FOCUS 1.0 file, one row per day, job type and "
                  "member (group_by does not apply).")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class UsageCountsSerializer(serializers.Serializer):
    charged = serializers.IntegerField(help_text="Credits charged to jobs in the range.")
    refunded = serializers.IntegerField(help_text="Credits refunded in the range (for jobs charged in it or before).")
    net = serializers.IntegerField(help_text="charged - refunded")
    jobs = serializers.IntegerField(help_text="Jobs charged in the range.")


class UsageGroupSerializer(UsageCountsSerializer):
    key = serializers.CharField(allow_null=True, help_text="The day, the job type, the member's id or the key's id; "
                                                           "null: no job record, no member recorded, or people.")
    # A field named as Field's own attribute: the serializer's metaclass takes it off the class.
    label = serializers.CharField()  # type: ignore[assignment]


class UsageOutputSerializer(serializers.Serializer):
    # `from` is a Python keyword: declared as from_ and renamed in get_fields.
    from_ = serializers.DateField(source="range.start")
    to = serializers.DateField(source="range.end", help_text="Excluded.")
    group_by = serializers.ChoiceField(choices=list(GROUPINGS))
    groups = UsageGroupSerializer(many=True)
    total = UsageCountsSerializer()

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    class Meta:
        ref_name = "Usage"


def _csv_response(lines: Any, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@raises("invalid_range")
class UsageApi(ApiView):
    """The workspace's usage of its credits over whole UTC days, counted from its ledger: what jobs
    were charged and what was refunded in the range (other credit movements, such as grants and
    purchases, are not usage), by day, job type, member or API key. The groups add up to the total.
    `to` is excluded; by default, this month so far. A range is at most 366 days (400 `invalid_range`
    for more, or for one that ends before it starts)."""

    workspace_actions = {"GET": "credits.view"}
    content_negotiation_class = _FormatIsNotARenderer

    @extend_schema(
        parameters=[UsageQuerySerializer],
        responses={
            (200, "application/json"): UsageOutputSerializer,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV: a header, then one row per "
                                               "group; or, with format=focus, a FOCUS 1.0 cost and usage file"),
        },
        summary="Usage of the workspace's credits",
    )
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        user = request_user(request)
        period = usage_range(start=params.get("from"), end=params.get("to"), today=timezone.now().date())
        stem = f"usage-{period.start}-{period.end}"
        # People are named to whom may see the members (an API key sees their ids).
        seat = seat_of(request._request)
        named = seat is None or seat.personal or seat.may("members.view")
        if params["format"] == "focus":
            return _csv_response(FocusExport(user=user, period=period, people_named=named), f"{stem}-focus.csv")
        report = usage_report(user=user, period=period, group_by=params["group_by"], people_named=named)
        if params["format"] == "csv":
            return _csv_response(usage_csv(report), f"{stem}-by-{report.group_by}.csv")
        return Response(UsageOutputSerializer(report).data)

