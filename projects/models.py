from __future__ import annotations

import re
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

RESOLUTION_RE = re.compile(r"^(\d{2,5})x(\d{2,5})\Z")
MAX_DIMENSION = 7680  # 8K UHD


def validate_resolution(value: str) -> None:
    match = RESOLUTION_RE.match(value)
    if not match:
        raise ValidationError("Resolution must look like 1920x1080.", code="invalid_resolution")
    width, height = int(match[1]), int(match[2])
    if not (16 <= width <= MAX_DIMENSION and 16 <= height <= MAX_DIMENSION) or width % 2 or height % 2:
        raise ValidationError(
            f"Width and height must be even numbers between 16 and {MAX_DIMENSION}.", code="invalid_resolution"
        )


def parse_resolution(value: str) -> tuple[int, int]:
    match = RESOLUTION_RE.match(value)
    if not match:
        raise ValueError(value)
    return int(match[1]), int(match[2])


class Project(models.Model):
    """A user's editing project. Its timeline (the EDL) is a MongoDB document; edl_id names it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="projects")
    # The person who made it: a team workspace's member, or a personal workspace's owner (none for
    # one the workspace made itself, or from before workspaces). Not shown by the API.
    member_id = models.UUIDField(null=True, blank=True, editable=False)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="", max_length=10_000)
    resolution = models.CharField(max_length=20, default="1920x1080", validators=[validate_resolution])
    frame_rate = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("30.00"),
        validators=[MinValueValidator(Decimal("1")), MaxValueValidator(Decimal("240"))],
    )
    edl_id = models.CharField(max_length=255, blank=True, default="")
    thumbnail_url = models.TextField(blank=True, default="")
    # A confirmed audio/video file starts a transcription job (charged as any). On for projects
    # made since it became the default; a project made before keeps what it had (off unless its
    # owner turned it on), and the Library never transcribes on its own.
    auto_transcribe = models.BooleanField(default=True)
    # A completed transcription of one of the project's files writes its words into the EDL's
    # transcript (projects.edl.transcripts); off, the transcript stays with the job and the file.
    transcript_to_edl = models.BooleanField(default=True)
    # The user's default project ("Library"), made on first use: where the outputs of a job
    # submitted without a project go. At most one per user (the constraint below).
    is_library = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "projects"
        ordering = ("-updated_at",)
        indexes = [models.Index(fields=["user", "-updated_at"], name="projects_user_updated")]
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=models.Q(is_library=True), name="projects_one_library_per_user"
            ),
        ]

    def __str__(self) -> str:
        return self.name


COMMENT_MAX_CHARS = 5000


class Comment(models.Model):
    """A member's comment on a project's timeline at a time range, as they saw it (the timeline's
    version), or a reply to one (no range of its own). A thread is resolved as a whole, by any
    member who may comment."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comments")
    # The account that owns the project (its workspace's), for row-level security and scoping.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    member_id = models.UUIDField()  # who wrote it
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True, related_name="replies")
    start_ms = models.PositiveIntegerField(null=True, blank=True)
    end_ms = models.PositiveIntegerField(null=True, blank=True)
    edl_version = models.PositiveIntegerField(null=True, blank=True)
    text = models.TextField(max_length=COMMENT_MAX_CHARS)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "project_comments"
        ordering = ("created_at", "id")
        indexes = [models.Index(fields=("project", "created_at"), name="comments_by_project")]
        constraints = [
            # A thread's first comment has its range and version; a reply has none.
            models.CheckConstraint(
                condition=(models.Q(parent__isnull=True, start_ms__isnull=False, end_ms__isnull=False,
                                    edl_version__isnull=False, end_ms__gte=models.F("start_ms"))
                           | models.Q(parent__isnull=False, start_ms__isnull=True, end_ms__isnull=True,
                                      edl_version__isnull=True)),
                name="comment_range_or_reply",
            ),
        ]

    def __str__(self) -> str:
        return self.text[:40]
