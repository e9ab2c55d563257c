from __future__ import annotations

from django.urls import path

from projects.caption_apis import TimelineCaptionsApi
from projects.edl.apis import EdlDetailApi, EdlRedoApi, EdlRemoveFillersApi, EdlReplaceMediaApi, EdlUndoApi
from projects.edl.interchange.apis import TimelineExportApi, TimelineImportApi

# <uuid:...>: a malformed project id matches no route, so it is a 404 like any unknown project.
urlpatterns = [
    path("projects/<uuid:project_id>/edl", EdlDetailApi.as_view(), name="project-edl"),
    path("projects/<uuid:project_id>/edl/undo", EdlUndoApi.as_view(), name="project-edl-undo"),
    path("projects/<uuid:project_id>/edl/redo", EdlRedoApi.as_view(), name="project-edl-redo"),
    path(
        "projects/<uuid:project_id>/edl/transcript/remove-fillers", EdlRemoveFillersApi.as_view(),
        name="project-edl-remove-fillers",
    ),
    path(
        "projects/<uuid:project_id>/edl/replace-media", EdlReplaceMediaApi.as_view(),
        name="project-edl-replace-media",
    ),
    path("projects/<uuid:project_id>/captions", TimelineCaptionsApi.as_view(), name="project-captions"),
    path("projects/<uuid:project_id>/timeline/export", TimelineExportApi.as_view(), name="project-timeline-export"),
    path("projects/<uuid:project_id>/timeline/import", TimelineImportApi.as_view(), name="project-timeline-import"),
]
