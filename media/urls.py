"""The local storage backend's signed URLs, mounted at /storage/ by auteur/urls.py.

Outside /api/: they authenticate by signature, not by bearer token, like S3's presigned URLs.
With an S3/R2 bucket configured they answer 404.
"""

from django.urls import path

from media.storage import local_views

urlpatterns = [
    path("upload/<path:key>", local_views.upload, name="storage-upload"),
    path("part/<str:upload_id>/<int:number>", local_views.upload_part, name="storage-upload-part"),
    path("download/<path:key>", local_views.download, name="storage-download"),
]
