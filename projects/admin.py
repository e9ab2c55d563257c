from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from projects.models import Project
from projects.services import project_delete


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    """Deleting, one project or a selection, goes through project_delete: unfinished jobs are
    canceled and refunded, storage objects and the EDL document deleted, as from the API."""

    list_display = ("name", "user", "resolution", "frame_rate", "media_count", "transcribes", "writes_edl",
                    "updated_at")
    list_filter = ("auto_transcribe", "transcript_to_edl", "resolution")
    search_fields = ("name", "id", "user__email")
    readonly_fields = ("id", "user", "edl_id", "created_at", "updated_at")
    list_select_related = ("user",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return super().get_queryset(request).annotate(_media_count=Count("media_files", distinct=True))

    @admin.display(description="transcribes", ordering="auto_transcribe", boolean=True)
    def transcribes(self, obj: Project) -> bool:
        return obj.auto_transcribe

    @admin.display(description="writes EDL", ordering="transcript_to_edl", boolean=True)
    def writes_edl(self, obj: Project) -> bool:
        return obj.transcript_to_edl

    @admin.display(description="media", ordering="_media_count")
    def media_count(self, obj: Project) -> int:
        return getattr(obj, "_media_count", 0)

    def delete_model(self, request: HttpRequest, obj: Project) -> None:
        project_delete(project=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        for project in queryset:
            project_delete(project=project)
