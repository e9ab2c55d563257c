"""Published files' public copies with the local backend, mounted at /public/ by auteur/urls.py.

Outside /api/ and without any credential: what a CDN in front of a public bucket serves. With an
S3/R2 bucket configured they answer 404 (the CDN serves the public bucket itself).
"""

from django.urls import path

from media.storage import local_views

urlpatterns = [
    path("<path:key>", local_views.public, name="storage-public"),
]
