"""Staff views of media files, voice clones and the consents voices are made with.

Records are read-only here: files are created by uploads and jobs, and their state moves only
through the probe. Deleting goes through the services, so storage objects are removed too (after
commit) and a file a running job uses is refused. Staff may take a published file's public copies
down (a takedown) through the same service as its owner's unpublish.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from auteur.core.errors import ApplicationError
from media.hooks import media_in_use_reasons
from media.models import (
    Consent,
    ConsentAttestation,
    ConsentRevoker,
    ConsentStatus,
    ConsentSubject,
    MediaFile,
    VoiceClone,
)
from media.services.consents import consent_revoke
from media.services.deletion import media_delete
from media.services.downloads import media_urls
from media.services.publishing import media_unpublish, public_url
from media.services.voices import voice_delete, voice_sample_url


class _NoAddChange:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _UuidSearchMixin:
    """Search by a pasted id as well as by text: an exact match on the primary key."""

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any], search_term: str) -> Any:
        results, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        try:
            wanted = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        return results | queryset.filter(pk=wanted), may_have_duplicates


@admin.register(MediaFile)
class MediaFileAdmin(_NoAddChange, _UuidSearchMixin, admin.ModelAdmin):
    list_display = ("name", "type", "status", "size", "duration", "owner", "project", "created_at")
    list_filter = ("status", "type", "created_at")
    search_fields = ("name", "user__email", "=source_job_id")
    list_select_related = ("user", "project")
    date_hierarchy = "created_at"
    fields = (
        "id", "name", "project", "user", "type", "mime_type", "status", "rejection_reason", "size",
        "duration", "metadata", "object_link", "thumbnail", "storage_key", "thumbnail_key", "caption_key",
        "published", "published_at", "public_key", "public_thumbnail_key", "publishing_key", "publishing_since",
        "source_job_id", "in_use", "created_at", "updated_at",
    )
    readonly_fields = fields
    actions = ["delete_selected_media", "unpublish_selected_media"]

    @admin.display(description="size", ordering="file_size_bytes")
    def size(self, obj: MediaFile) -> str:
        return filesizeformat(obj.file_size_bytes)

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: MediaFile) -> str:
        return f"{obj.duration_ms / 1000:.2f} s" if obj.duration_ms is not None else "-"

    @admin.display(description="owner", ordering="user__email")
    def owner(self, obj: MediaFile) -> str:
        return obj.user.email

    @admin.display(description="object")
    def object_link(self, obj: MediaFile) -> str:
        urls = media_urls(media=obj)
        if not urls.download_url:
            return "not uploaded yet"
        # A signed URL, valid 15 minutes, rendered into this page only (never logged).
        return format_html('<a href="{}" rel="noreferrer">download</a> (link valid 15 minutes)', urls.download_url)

    @admin.display(description="thumbnail")
    def thumbnail(self, obj: MediaFile) -> str:
        urls = media_urls(media=obj)
        if not urls.thumbnail_url:
            return "-"
        return format_html('<img src="{}" alt="thumbnail" style="max-width:320px">', urls.thumbnail_url)

    @admin.display(description="public URL")
    def published(self, obj: MediaFile) -> str:
        url = public_url(obj.public_key)
        return format_html('<a href="{}" rel="noreferrer">{}</a>', url, url) if url else "-"

    @admin.display(description="in use by")
    def in_use(self, obj: MediaFile) -> str:
        # What deleting it would be refused for: the checks other apps register (media/hooks.py),
        # e.g. the projects whose timelines play it, found on the timelines' media_ids index.
        try:
            reasons = media_in_use_reasons(obj)
        except ApplicationError as exc:
            return f"unknown: {exc.message}"
        return "; ".join(reasons) or "-"

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # Django's bulk delete would skip the services
        return actions

    def delete_model(self, request: HttpRequest, obj: MediaFile) -> None:
        try:
            media_delete(media=obj)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        # Refuse before Django's view records a deletion in the admin log; the service checks
        # again under the row lock (a job may start in between).
        obj = self.get_object(request, object_id)
        if request.method == "POST" and obj is not None:
            try:
                reasons = media_in_use_reasons(obj)
            except ApplicationError as exc:  # a check could not tell (its store is down): keep the file
                reasons = [exc.message]
            if reasons:
                self.message_user(request, f"Not deleted: in use ({'; '.join(reasons)}).", messages.ERROR)
                return HttpResponseRedirect(reverse("admin:media_mediafile_change", args=[obj.pk]))
        return super().delete_view(request, object_id, extra_context)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        if MediaFile.objects.filter(pk=obj_id).exists():  # refused (in use): back to the file, no "deleted"
            return HttpResponseRedirect(reverse("admin:media_mediafile_change", args=[obj_id]))
        return super().response_delete(request, obj_display, obj_id)

    @admin.action(description="Delete selected media files (and their objects)", permissions=["delete"])
    def delete_selected_media(self, request: HttpRequest, queryset: QuerySet[MediaFile]) -> None:
        deleted, refused = 0, 0
        for media in queryset:
            try:
                media_delete(media=media)
                deleted += 1
            except ApplicationError:
                refused += 1
        self.message_user(request, f"Deleted {deleted} media file(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, f"{refused} file(s) are in use and were kept.", messages.WARNING)

    @admin.action(description="Unpublish selected media files (delete their public copies)", permissions=["delete"])
    def unpublish_selected_media(self, request: HttpRequest, queryset: QuerySet[MediaFile]) -> None:
        unpublished = 0
        for media in queryset.filter(~Q(public_key="") | ~Q(publishing_key="")):
            try:
                media_unpublish(media=media)
                unpublished += 1
            except ApplicationError:
                continue  # deleted meanwhile: its copies go with it
        self.message_user(
            request, f"Unpublished {unpublished} media file(s); a CDN may serve cached copies until their "
                     "max-age has passed unless it is purged.", messages.SUCCESS)


@admin.register(VoiceClone)
class VoiceCloneAdmin(_NoAddChange, _UuidSearchMixin, admin.ModelAdmin):
    list_display = ("name", "owner", "sample_seconds", "source_media", "created_at")
    search_fields = ("name", "user__email")
    list_select_related = ("user", "source_media")
    date_hierarchy = "created_at"
    fields = ("id", "name", "user", "sample_seconds", "sample_link", "sample_key", "source_media", "consent",
              "consent_grace_until", "created_at")
    readonly_fields = fields
    actions = ["delete_selected_voices"]

    @admin.display(description="owner", ordering="user__email")
    def owner(self, obj: VoiceClone) -> str:
        return obj.user.email

    @admin.display(description="sample", ordering="sample_duration_ms")
    def sample_seconds(self, obj: VoiceClone) -> str:
        return f"{obj.sample_duration_ms / 1000:.1f} s"

    @admin.display(description="sample object")
    def sample_link(self, obj: VoiceClone) -> str:
        return format_html('<a href="{}" rel="noreferrer">listen</a>', voice_sample_url(voice=obj).url)

    @admin.display(description="public URL")
    def published(self, obj: MediaFile) -> str:
        url = public_url(obj.public_key)
        return format_html('<a href="{}" rel="noreferrer">{}</a>', url, url) if url else "-"

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_model(self, request: HttpRequest, obj: VoiceClone) -> None:
        voice_delete(voice=obj)

    @admin.action(description="Delete selected voices (and their samples)", permissions=["delete"])
    def delete_selected_voices(self, request: HttpRequest, queryset: QuerySet[VoiceClone]) -> None:
        count = 0
        for voice in queryset:
            voice_delete(voice=voice)
            count += 1
        self.message_user(request, f"Deleted {count} voice(s).", messages.SUCCESS)


@admin.register(Consent)
class ConsentAdmin(_NoAddChange, _UuidSearchMixin, admin.ModelAdmin):
    """Every verification's outcome with the figures its checks measured and the bounds they were held
    to (the owner is told only which checks passed), and every attested likeness consent with who
    attested it, when, and what they hold; the files a likeness consent covers. Written by the worker
    that ran the check or by the attestation: read-only."""

    list_display = ("id", "kind", "status", "owner", "similarity", "challenge_wer", "phrase_wer", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("user__email",)
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    fields = ("id", "kind", "status", "user", "member_id", "checks", "similarity", "threshold", "challenge_wer",
              "phrase_wer", "max_wer", "faces", "models_used", "sample_sha256", "recording_media_id", "challenge_id",
              "job_id", "created_at", "revoked_at", "revoked_by", "revoked_by_member")
    readonly_fields = fields
    actions = ["revoke_selected"]

    class SubjectInline(admin.TabularInline):
        model = ConsentSubject
        fields = ("content_sha256", "media_id", "similarity", "created_at")
        readonly_fields = fields
        extra = 0
        can_delete = False

        def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
            return False

    class AttestationInline(admin.StackedInline):
        model = ConsentAttestation
        fields = ("attested_by", "person_name", "consent_obtained_at", "evidence", "created_at")
        readonly_fields = fields
        extra = 0
        can_delete = False

        def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
            return False

    inlines = [SubjectInline, AttestationInline]

    @admin.display(description="owner", ordering="user__email")
    def owner(self, obj: Consent) -> str:
        return obj.user.email

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        """Staff who may change consents (the model's change permission) may revoke them."""
        return bool(request.user.has_perm("media.change_consent"))

    @admin.action(description="Revoke selected consents (their voices refused, waiting jobs canceled and refunded)",
                  permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Consent]) -> None:
        revoked = canceled = 0
        for pk in queryset.exclude(status=ConsentStatus.REVOKED).values_list("pk", flat=True):
            _, jobs = consent_revoke(consent_id=pk, by=ConsentRevoker.STAFF)
            revoked, canceled = revoked + 1, canceled + jobs
        self.message_user(request, f"Revoked {revoked} consent(s); {canceled} waiting job(s) canceled and refunded.",
                          messages.SUCCESS)
