from django.urls import include, path

from projects.apis import ProjectDetailApi, ProjectListApi
from projects.comment_apis import CommentDetailApi, CommentListApi

urlpatterns = [
    path("projects", ProjectListApi.as_view(), name="project-list"),
    path("projects/<str:project_id>", ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<uuid:project_id>/comments", CommentListApi.as_view(), name="comment-list"),
    path("projects/<uuid:project_id>/comments/<str:comment_id>", CommentDetailApi.as_view(), name="comment-detail"),
    path("", include("projects.edl.urls")),
]
