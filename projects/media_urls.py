"""Media of a project, included under /api/v1/ by auteur/urls.py."""

from django.urls import path

from projects.caption_apis import MediaCaptionsApi
from projects.media_apis import (
    ProjectMediaConfirmApi,
    ProjectMediaDetailApi,
    ProjectMediaListApi,
    ProjectMediaPartsApi,
    ProjectMediaPublishApi,
    ProjectMediaUploadUrlApi,
)

urlpatterns = [
    path("projects/<uuid:project_id>/media", ProjectMediaListApi.as_view(), name="project-media-list"),
    path(
        "projects/<uuid:project_id>/media/upload-url",
        ProjectMediaUploadUrlApi.as_view(),
        name="project-media-upload-url",
    ),
    path(
        "projects/<uuid:project_id>/media/<uuid:media_id>",
        ProjectMediaDetailApi.as_view(),
        name="project-media-detail",
    ),
    path(
        "projects/<uuid:project_id>/media/<uuid:media_id>/confirm",
        ProjectMediaConfirmApi.as_view(),
        name="project-media-confirm",
    ),
    path(
        "projects/<uuid:project_id>/media/<uuid:media_id>/parts",
        ProjectMediaPartsApi.as_view(),
        name="project-media-parts",
    ),
    path(
        "projects/<uuid:project_id>/media/<uuid:media_id>/publish",
        ProjectMediaPublishApi.as_view(),
        name="project-media-publish",
    ),
    path(
        "projects/<uuid:project_id>/media/<uuid:media_id>/captions",
        MediaCaptionsApi.as_view(),
        name="project-media-captions",
    ),
]
