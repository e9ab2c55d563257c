"""The local storage backend's signed URLs, mounted at /storage/ by auteur/urls.py.

Outside /api/: they authenticate by signature, not by bearer token, like S3's presigned URLs.
With an S3/R2 bucket configured they answer 404.
"""

from django.urls import path

from media import local_storage

urlpatterns = [
    path("upload/<path:key>", local_storage.upload, name="storage-upload"),
    path("download/<path:key>", local_storage.download, name="storage-download"),
]
