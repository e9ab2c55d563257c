from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class MediaType(models.TextChoices):
    VIDEO = "video"
    AUDIO = "audio"
    IMAGE = "image"
    CAPTIONS = "captions"  # a subtitle file (SRT, WebVTT) a render delivered beside its video


class MediaStatus(models.TextChoices):
    UPLOADING = "uploading"  # upload URL issued, object not confirmed yet
    PROCESSING = "processing"  # confirmed; being probed
    READY = "ready"
    REJECTED = "rejected"  # not decodable, or not what it claimed to be (see rejection_reason)


class MediaFile(models.Model):
    """A file in object storage that belongs to a project (uploaded, or produced by a job)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # By string: media imports no other app.
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="media_files")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="media_files")
    # The person who made it: a team workspace's member, or a personal workspace's owner (none for
    # one the workspace made itself, or from before workspaces). Not shown by the API.
    member_id = models.UUIDField(null=True, blank=True, editable=False)
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=10, choices=MediaType.choices)
    mime_type = models.CharField(max_length=100)
    status = models.CharField(max_length=12, choices=MediaStatus.choices, default=MediaStatus.UPLOADING)
    rejection_reason = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    file_size_bytes = models.BigIntegerField()
    storage_key = models.CharField(max_length=500, unique=True)  # the object in S3/R2 or local storage
    thumbnail_key = models.CharField(max_length=500, blank=True, default="")
    caption_key = models.CharField(max_length=500, blank=True, default="")  # transcript JSON, if any
    metadata = models.JSONField(default=dict, blank=True)  # width, height, codecs, sample rate...
    # The SHA-256 of its bytes, once known (probed uploads, job outputs; "" before, and for files
    # stored before it was recorded): the result cache identifies a job's inputs by it.
    content_sha256 = models.CharField(max_length=64, blank=True, default="", db_default="")
    # A multipart upload in progress (media/services/uploads.py): the store's upload id and the size
    # of every part but the last; cleared once it is completed.
    upload_id = models.CharField(max_length=1024, blank=True, default="", db_default="")
    part_size = models.BigIntegerField(null=True, blank=True)
    # The file this one is a version of (a compression's source); null when the source is deleted.
    derived_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    # Set when a job produced this file: a redelivered store step finds it instead of adding another.
    source_job_id = models.UUIDField(null=True, blank=True)
    # Published (media/services/publishing.py): the keys of its public copies in the public store,
    # under a folder named by a random token (never this key layout, which names the project), and
    # when. "" and null while unpublished.
    public_key = models.CharField(max_length=500, blank=True, default="", db_default="")
    public_thumbnail_key = models.CharField(max_length=500, blank=True, default="", db_default="")
    published_at = models.DateTimeField(null=True, blank=True)
    # A publication in progress: the key its copy is being made under (by the ``media.publish``
    # task) and since when; "" and null otherwise. Never set beside public_key.
    publishing_key = models.CharField(max_length=500, blank=True, default="", db_default="")
    publishing_since = models.DateTimeField(null=True, blank=True)
    # Unpublished while its copy was being made: the copy is deleted when it ends, and until then
    # the publication still counts against its owner's publications in progress.
    publishing_canceled = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "media_files"
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=["project", "-created_at"], name="media_project_created"),
            models.Index(fields=["user", "status"], name="media_user_status"),
            # Retention of job outputs finds those past the window (media/services/retention.py).
            models.Index(
                fields=["created_at"], name="media_job_outputs_created",
                condition=models.Q(source_job_id__isnull=False),
            ),
            # The files whose hash the backfill has yet to read (media.probing.service).
            models.Index(
                fields=["created_at"], name="media_unhashed",
                condition=models.Q(status="ready", content_sha256=""),
            ),
            # A file's versions (`?derived_from=`), and the rows to unlink when it is deleted.
            models.Index(
                fields=["derived_from"], name="media_derived_from",
                condition=models.Q(derived_from__isnull=False),
            ),
            # The publications in progress: a user's count (their limit) and the sweep's stale ones.
            models.Index(
                fields=["user", "publishing_since"], name="media_publishing",
                condition=~models.Q(publishing_key=""),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(file_size_bytes__gte=0), name="media_size_non_negative"),
            models.CheckConstraint(
                condition=~models.Q(status="rejected") | ~models.Q(rejection_reason=""),
                name="media_rejected_has_reason",
            ),
            models.CheckConstraint(
                condition=models.Q(public_key="", public_thumbnail_key="", published_at__isnull=True)
                | (~models.Q(public_key="") & models.Q(published_at__isnull=False)),
                name="media_published_has_key_and_time",
            ),
            models.CheckConstraint(
                condition=models.Q(publishing_key="", publishing_since__isnull=True)
                | (~models.Q(publishing_key="") & models.Q(publishing_since__isnull=False, public_key="")),
                name="media_publishing_has_key_and_time",
            ),
            # One output per (job, name): the store step of a job is idempotent by construction.
            models.UniqueConstraint(
                fields=["source_job_id", "name"],
                condition=models.Q(source_job_id__isnull=False),
                name="media_one_output_per_job_and_name",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PendingObjectDeletion(models.Model):
    """A storage key to delete once `due_at` has passed (beat's ``media.sweep`` does it).

    An upload URL stays valid until it expires, and S3 cannot revoke a presigned URL: a PUT can
    still write the upload key of a file already confirmed or deleted. The row is written in the
    transaction that closes the upload, so the deletion survives restarts and lost messages.
    """

    key = models.CharField(max_length=500)
    due_at = models.DateTimeField(db_index=True)
    # A lease: objects copied for a user before their rows exist (a result cache hit's copies).
    # The ``storage_bytes`` quota counts `bytes` against `user` until the rows replace the lease
    # (in one transaction) or the sweep deletes the objects. Other deletions count nothing.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    bytes = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return self.key


class ConsentKind(models.TextChoices):
    VOICE = "voice"  # a speaker agrees to have their voice cloned
    LIKENESS = "likeness"  # a person agrees to have their face used (lip sync, performance cloning, gaze)


class ConsentStatus(models.TextChoices):
    VERIFIED = "verified"  # every check passed: usable
    # An owner or admin attested that they hold the person's consent (a likeness, under the workspace's
    # `attested` policy only): usable while the policy stays `attested`.
    ATTESTED = "attested"
    FAILED = "failed"  # a check failed: never usable
    REVOKED = "revoked"  # withdrawn by its speaker, the workspace or staff: never usable again


class ConsentRevoker(models.TextChoices):
    SUBJECT = "subject"  # the speaker, through the link issued with the consent
    MEMBER = "member"  # a member of the workspace
    STAFF = "staff"


class ConsentChallenge(models.Model):
    """A phrase the server issued for one consent recording: single use (claimed by the one
    verification job that reads it), for a short time, by the workspace member it was issued to."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    member_id = models.UUIDField(null=True, blank=True)
    kind = models.CharField(max_length=16, choices=ConsentKind.choices)
    words = models.JSONField()  # the fresh words, in the order they are read
    statement = models.TextField()
    language = models.CharField(max_length=8, default="en")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_by_job_id = models.UUIDField(null=True, blank=True, unique=True)

    class Meta:
        db_table = "consent_challenges"
        indexes = [models.Index(fields=["user", "expires_at"], name="consent_challenges_open",
                                condition=models.Q(used_by_job_id__isnull=True))]
        constraints = [models.CheckConstraint(condition=models.Q(expires_at__gt=models.F("created_at")),
                                              name="consent_challenge_expires_after_creation")]

    def __str__(self) -> str:
        return f"{self.kind} challenge {self.pk}"


class Consent(models.Model):
    """The outcome of one verified consent recording, with every figure its checks measured (for
    staff; the owner is told only which checks passed), or an attestation (`ConsentAttestation`). A
    voice consent binds the clone sample it was checked against by its SHA-256: only a voice made
    from that sample may use it. A likeness consent covers the files its subjects name by their
    SHA-256 (`ConsentSubject`): only those files' faces may be used under it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    member_id = models.UUIDField(null=True, blank=True)
    kind = models.CharField(max_length=16, choices=ConsentKind.choices)
    status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    # The challenge read and the verification job (none for an attestation).
    challenge_id = models.UUIDField(unique=True, null=True, blank=True)
    job_id = models.UUIDField(unique=True, null=True, blank=True)
    recording_media_id = models.UUIDField(null=True, blank=True)
    sample_sha256 = models.CharField(max_length=64, blank=True, default="")  # a voice's sample
    # {"phrase": ..., "speaker": ...} of a voice, {"phrase", "face", "speaking"} of a likeness, each
    # "passed" or "failed"; {} for an attestation, which checks nothing. The figures below are None
    # for an attestation, and the similarity for a likeness whose recording or subject shows no face.
    checks = models.JSONField()
    challenge_wer = models.FloatField(null=True, blank=True)
    phrase_wer = models.FloatField(null=True, blank=True)
    similarity = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)  # the speaker's (or face's) similarity a pass needed
    # The least similar stretch (about 4 s) of either file to the other, and the least a pass needed.
    stretch_similarity = models.FloatField(null=True, blank=True)
    stretch_threshold = models.FloatField(null=True, blank=True)
    max_wer = models.FloatField(null=True, blank=True)  # the word error rate a pass allowed
    # A likeness verification's face counts and speaking check: {"recording_faces": n, "subject_faces": n,
    # "liveness": {"sync", "mouth_motion", "frames", "min_sync", "min_mouth_motion"}} (the figures and
    # bounds of gpu_tasks.engines.likeness_consent; "liveness" absent from consents verified before it).
    faces = models.JSONField(null=True, blank=True)
    models_used = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=16, choices=ConsentRevoker.choices, blank=True, default="")
    revoked_by_member = models.UUIDField(null=True, blank=True)

    class Meta:
        db_table = "consents"
        ordering = ("-created_at",)
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status="revoked", revoked_at__isnull=False) | (
                    ~models.Q(status="revoked") & models.Q(revoked_at__isnull=True)),
                name="consent_revoked_when_revoked_at"),
            # A verification names its challenge and job; only a likeness may be attested (without them).
            models.CheckConstraint(
                condition=models.Q(challenge_id__isnull=False, job_id__isnull=False)
                | models.Q(kind="likeness", challenge_id__isnull=True, job_id__isnull=True),
                name="consent_verified_by_a_job_or_attested"),
            models.CheckConstraint(condition=~models.Q(status="attested") | models.Q(kind="likeness"),
                                   name="consent_attested_is_a_likeness"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} consent {self.pk} ({self.status})"


class ConsentSubject(models.Model):
    """A file whose face a likeness consent covers, by the SHA-256 of its bytes (a copy of the file
    is covered too; a version of it, re-encoded, is not). `similarity`: the verification's face
    match of the file to the recording (None for an attested one: nothing was compared)."""

    id = models.BigAutoField(primary_key=True)
    consent = models.ForeignKey(Consent, on_delete=models.CASCADE, related_name="subjects")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    content_sha256 = models.CharField(max_length=64)
    media_id = models.UUIDField(null=True, blank=True)  # the file it was made for (it may be deleted since)
    similarity = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "consent_subjects"
        # The check at submission: a workspace's consents covering one file's bytes.
        indexes = [models.Index(fields=["user", "content_sha256"], name="consent_subjects_by_content")]
        constraints = [
            models.UniqueConstraint(fields=["consent", "content_sha256"], name="consent_subject_once"),
            models.CheckConstraint(condition=models.Q(content_sha256__regex=r"^[0-9a-f]{64}$"),
                                   name="consent_subject_is_a_sha256"),
        ]

    def __str__(self) -> str:
        return f"{self.content_sha256[:12]} of consent {self.consent_id}"


class ConsentAttestation(models.Model):
    """Who attested a likeness consent, when, and what consent they say they hold (shown with the
    consent to its workspace and to staff)."""

    consent = models.OneToOneField(Consent, on_delete=models.CASCADE, primary_key=True, related_name="attestation")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    attested_by = models.UUIDField()  # the person (an owner or admin of the workspace)
    person_name = models.CharField(max_length=200)  # whose face
    consent_obtained_at = models.DateTimeField()
    evidence = models.TextField()  # what they hold: a signed release, its reference, where it is kept
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "consent_attestations"

    def __str__(self) -> str:
        return f"attestation of consent {self.consent_id}"


class VoiceClone(models.Model):
    """A voice for text-to-speech, cloned from a sample the user uploaded."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="voice_clones")
    # The person who made it: a team workspace's member, or a personal workspace's owner (none for
    # one the workspace made itself, or from before workspaces). Not shown by the API.
    member_id = models.UUIDField(null=True, blank=True, editable=False)
    name = models.CharField(max_length=255)
    # The sample is copied to its own key: deleting the project or media keeps the voice working.
    sample_key = models.CharField(max_length=500)
    sample_duration_ms = models.PositiveIntegerField()
    source_media = models.ForeignKey(MediaFile, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # The speaker's verified consent: a voice is usable only with one, or within the grace given
    # to the voices made before consents existed (`consent_grace_until`).
    consent = models.OneToOneField(Consent, on_delete=models.RESTRICT, null=True, blank=True, related_name="voice")
    consent_grace_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "voice_clones"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.name
