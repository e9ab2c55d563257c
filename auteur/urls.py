from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from auteur import health

api_v1 = [
    path("", include("auteur.users.urls")),
    path("", include("credits.urls")),
    path("", include("projects.urls")),
    path("", include("projects.media_urls")),
    path("", include("jobs.urls")),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include(api_v1)),
    # The local storage backend's signed upload/download URLs (unused with S3/R2).
    path("storage/", include("media.urls")),
]
