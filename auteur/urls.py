from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from auteur import health, metrics
from auteur.index import api_index
from realtime.schema_view import events_schema, outputs_schema

# Patterns are tried in order and no two overlap: the API's busiest (job submissions and polls)
# come first, so resolving them does not walk the admin's and the others' patterns first.
api_v1: list[URLPattern | URLResolver] = [
    path("", include("jobs.urls")),
    path("", include("realtime.urls")),  # the event streams (SSE)
    path("", include("auteur.users.urls")),
    path("", include("credits.urls")),
    path("", include("projects.urls")),
    path("", include("projects.media_urls")),
    path("", include("media.voice_urls")),
    path("", include("webhooks.urls")),
    path("", include("billing.urls")),
    path("", api_index, name="api-index"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The job events' JSON Schema (SSE, WebSocket, webhooks), linked from the OpenAPI document.
    path("api/schema/events/", events_schema, name="events-schema"),
    # A completed job's output_data per job type (JSON Schema), linked from the OpenAPI document.
    path("api/schema/outputs/", outputs_schema, name="outputs-schema"),
    # The split view serves Swagger UI's initialisation as a script file, not inline, so the
    # page works under a Content-Security-Policy without 'unsafe-inline'.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # The local storage backend's signed upload/download URLs (unused with S3/R2).
    path("storage/", include("media.urls")),
    # Published files' public copies with the local backend (AUTEUR_CDN_BASE_URL points here, or a
    # CDN pulls from here); 404 with S3/R2, whose public bucket the CDN serves itself.
    path("public/", include("media.public_urls")),
]
