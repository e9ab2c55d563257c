"""Job event streams (SSE), included under /api/v1/ by auteur/urls.py.

Served by the ASGI server: Caddy routes */stream there; under gunicorn these views answer 503.
"""

from django.urls import path

from realtime.sse import events_stream, job_stream

urlpatterns = [
    path("jobs/<str:job_id>/stream", job_stream, name="job-stream"),
    path("events/stream", events_stream, name="events-stream"),
]
