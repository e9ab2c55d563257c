from django.urls import include, path

from projects.apis import ProjectDetailApi, ProjectListApi

urlpatterns = [
    path("projects", ProjectListApi.as_view(), name="project-list"),
    path("projects/<str:project_id>", ProjectDetailApi.as_view(), name="project-detail"),
    path("", include("projects.edl.urls")),
]
