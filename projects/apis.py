from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import (
    ApiView,
    KeyedPagination,
    StrictSerializer,
    paginated_response,
    request_member_id,
    request_user,
)
from auteur.core.schema import raises
from projects.edl.apis import EdlSerializer
from projects.edl.selectors import edl_get
from projects.models import Project, validate_resolution
from projects.selectors import project_get, project_list
from projects.services import project_create, project_delete, project_update


class ProjectOutputSerializer(serializers.ModelSerializer[Project]):
    class Meta:
        model = Project
        fields: tuple[str, ...] = (
            "id",
            "name",
            "description",
            "resolution",
            "frame_rate",
            "edl_id",
            "thumbnail_url",
            "auto_transcribe",
            "transcript_to_edl",
            "is_library",
            "created_at",
            "updated_at",
        )


class ProjectDetailOutputSerializer(ProjectOutputSerializer):
    """A project with its timeline, as GET answers it."""

    edl = EdlSerializer(read_only=True)

    class Meta(ProjectOutputSerializer.Meta):
        fields = (*ProjectOutputSerializer.Meta.fields, "edl")


class ProjectInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=255)
    description = serializers.CharField(max_length=10_000, required=False, allow_blank=True)
    resolution = serializers.CharField(max_length=20, required=False, validators=[validate_resolution])
    frame_rate = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=Decimal("1"), max_value=Decimal("240"), required=False
    )
    thumbnail_url = serializers.URLField(max_length=2000, required=False, allow_blank=True)
    auto_transcribe = serializers.BooleanField(required=False)
    transcript_to_edl = serializers.BooleanField(
        required=False,
        help_text="When on (the default), a completed transcription of a file writes its words into the "
        "timeline's transcript, at the times where the clips that use the file play them.",
    )


class ProjectListApi(ApiView):
    """The user's projects, most recently updated first; `?page=`, `?page_size=` (max 100).

    POST creates one; 403 `quota_exceeded` once the user has as many as this server allows.
    """

    workspace_actions = {"GET": "projects.view", "POST": "projects.edit"}

    pagination_class = KeyedPagination.of("projects")

    @extend_schema(summary="List projects", responses=ProjectOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        projects = project_list(user=request_user(request))
        return paginated_response(request, self, projects, ProjectOutputSerializer)

    @extend_schema(summary="Create a project", request=ProjectInputSerializer, responses={201: ProjectOutputSerializer})
    @raises("edl_unavailable", "quota_exceeded")
    def post(self, request: Request) -> Response:
        serializer = ProjectInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = project_create(user=request_user(request), member_id=request_member_id(request),
                                 **serializer.validated_data)
        return Response(ProjectOutputSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(ApiView):
    """One project with its timeline (`edl`); PUT replaces the editable fields, PATCH some of them."""

    workspace_actions = {"GET": "projects.view", "PUT": "projects.edit", "PATCH": "projects.edit",
                         "DELETE": "projects.edit"}

    @extend_schema(summary="Get a project, with its timeline", responses=ProjectDetailOutputSerializer)
    @raises("edl_unavailable")
    def get(self, request: Request, project_id: str) -> Response:
        project = project_get(user=request_user(request), project_id=project_id)
        return Response({**ProjectOutputSerializer(project).data, "edl": edl_get(project=project)})

    def _update(self, request: Request, project_id: str, *, partial: bool) -> Response:
        project = project_get(user=request_user(request), project_id=project_id)
        serializer = ProjectInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        project = project_update(project=project, data=dict(serializer.validated_data))
        return Response(ProjectOutputSerializer(project).data)

    @extend_schema(summary="Replace a project's settings", request=ProjectInputSerializer,
                   responses=ProjectOutputSerializer)
    def put(self, request: Request, project_id: str) -> Response:
        return self._update(request, project_id, partial=False)

    @extend_schema(summary="Change some of a project's settings", request=ProjectInputSerializer,
                   responses=ProjectOutputSerializer)
    def patch(self, request: Request, project_id: str) -> Response:
        return self._update(request, project_id, partial=True)

    @extend_schema(summary="Delete a project, its media and its timeline", responses={204: None})
    def delete(self, request: Request, project_id: str) -> Response:
        project_delete(project=project_get(user=request_user(request), project_id=project_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
