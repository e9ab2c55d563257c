"""Reads of media files and voices, always scoped to their owner.

Another user's file or voice is indistinguishable from none: 404, never 403.
"""

from __future__ import annotations

import uuid

from django.db.models import OuterRef, QuerySet, Subquery, Sum

from auteur.users.models import User
from media.errors import MediaNotFound, VoiceNotFound
from media.models import MediaFile, MediaStatus, PendingObjectDeletion, VoiceClone

# A file's newest ready version (a compression of it): what the file stands for now. The owner's
# files only, whatever a row's link says.
_LATEST_VERSION = Subquery(
    MediaFile.objects.filter(derived_from_id=OuterRef("pk"), user_id=OuterRef("user_id"), status=MediaStatus.READY)
    .order_by("-created_at", "-id").values("pk")[:1]
)


def media_latest_version_id(*, media: MediaFile) -> uuid.UUID | None:
    """The id of the file's newest ready version; read from the row when a selector annotated it."""
    if hasattr(media, "latest_version_id"):
        return media.latest_version_id
    return MediaFile.objects.filter(pk=media.pk).values_list(_LATEST_VERSION, flat=True).first()


def media_list(
    *, user: User, project_id: uuid.UUID, status: str | None = None, type: str | None = None,
    derived_from: uuid.UUID | None = None,
) -> QuerySet[MediaFile]:
    qs = MediaFile.objects.filter(project_id=project_id, user=user).annotate(latest_version_id=_LATEST_VERSION)
    if status:
        qs = qs.filter(status=status)
    if type:
        qs = qs.filter(type=type)
    if derived_from:
        qs = qs.filter(derived_from_id=derived_from)
    return qs.order_by("-created_at", "-id")


def media_get(*, user: User, project_id: uuid.UUID, media_id: uuid.UUID | str) -> MediaFile:
    try:
        return MediaFile.objects.annotate(latest_version_id=_LATEST_VERSION).get(
            pk=media_id, project_id=project_id, user=user)
    except (MediaFile.DoesNotExist, ValueError, TypeError):
        raise MediaNotFound("No such media file.") from None


def media_get_for_user(*, user: User, media_id: uuid.UUID | str) -> MediaFile:
    """A media file of any of the user's projects (voice samples are chosen this way)."""
    try:
        return MediaFile.objects.get(pk=media_id, user=user)
    except (MediaFile.DoesNotExist, ValueError, TypeError):
        raise MediaNotFound("No such media file.") from None


def voice_list(*, user: User) -> QuerySet[VoiceClone]:
    return VoiceClone.objects.filter(user=user).order_by("-created_at", "-id")


def voice_get(*, user: User, voice_id: uuid.UUID | str) -> VoiceClone:
    try:
        return VoiceClone.objects.get(pk=voice_id, user=user)
    except (VoiceClone.DoesNotExist, ValueError, TypeError):
        raise VoiceNotFound("No such voice.") from None


def media_bytes_used(*, user_id: uuid.UUID, excluding: uuid.UUID | None = None) -> int:
    """What the ``storage_bytes`` quota counts: the sizes of all the user's media files, and the
    bytes of the objects leased for the user whose rows do not exist yet (a result cache hit's
    copies: media.services.outputs).

    Every state counts: an upload in progress has reserved its declared size, a rejected file
    keeps its object until the user deletes it, and a lease holds its copies until its rows
    replace it or the sweep deletes them.
    """
    qs = MediaFile.objects.filter(user_id=user_id)
    if excluding is not None:
        qs = qs.exclude(pk=excluding)
    files = qs.aggregate(total=Sum("file_size_bytes"))["total"] or 0
    leased = PendingObjectDeletion.objects.filter(user_id=user_id).aggregate(total=Sum("bytes"))["total"] or 0
    return int(files) + int(leased)


def upload_is_open(*, key: str) -> bool:
    """Whether a signed PUT may still write ``key``: only while its file is ``uploading``."""
    return MediaFile.objects.filter(storage_key=key, status=MediaStatus.UPLOADING).exists()
