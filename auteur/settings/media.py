"""Media files: per-user quotas, the probe's limits and how long a file may stay unfinished."""

from __future__ import annotations

from auteur.settings.environment import env

AUTEUR_MEDIA_STALE_UPLOAD_SECONDS = env.int("AUTEUR_MEDIA_STALE_UPLOAD_SECONDS", default=24 * 3600)
AUTEUR_MEDIA_PROBE_RETRY_SECONDS = env.int("AUTEUR_MEDIA_PROBE_RETRY_SECONDS", default=30 * 60)
AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS = env.int("AUTEUR_MEDIA_PROBE_DEADLINE_SECONDS", default=2 * 3600)
# A voice's sample is stored as a mono 24 kHz WAV of at most this many seconds (the start of the file).
AUTEUR_VOICE_SAMPLE_MAX_SECONDS = env.int("AUTEUR_VOICE_SAMPLE_MAX_SECONDS", default=30)
# Voice consent: a challenge phrase is valid this long; a workspace holds at most this many unused
# ones at once; after this many failed verifications in a day it is issued no new one until the day
# has passed (so a threshold cannot be probed).
AUTEUR_CONSENT_CHALLENGE_TTL_SECONDS = env.int("AUTEUR_CONSENT_CHALLENGE_TTL_SECONDS", default=600)
AUTEUR_CONSENT_OPEN_CHALLENGES = env.int("AUTEUR_CONSENT_OPEN_CHALLENGES", default=10)
AUTEUR_CONSENT_FAILED_PER_DAY = env.int("AUTEUR_CONSENT_FAILED_PER_DAY", default=3)

# ---- Per-user quotas (auteur/core/quotas.py; EDL history is AUTEUR_EDL_HISTORY below)
AUTEUR_QUOTA_STORAGE_BYTES = env.int("AUTEUR_QUOTA_STORAGE_BYTES", default=50 * 1024**3)
AUTEUR_QUOTA_VOICES = env.int("AUTEUR_QUOTA_VOICES", default=20)
AUTEUR_QUOTA_PROJECTS = env.int("AUTEUR_QUOTA_PROJECTS", default=200)
# Team workspaces an account may create (its personal one does not count).
AUTEUR_QUOTA_WORKSPACES = env.int("AUTEUR_QUOTA_WORKSPACES", default=20)
# Members of one workspace, and its invitations pending at once.
AUTEUR_QUOTA_MEMBERS = env.int("AUTEUR_QUOTA_MEMBERS", default=100)
AUTEUR_QUOTA_INVITATIONS = env.int("AUTEUR_QUOTA_INVITATIONS", default=50)
# Comments (replies included) on one project's timeline.
AUTEUR_QUOTA_COMMENTS = env.int("AUTEUR_QUOTA_COMMENTS", default=5000)
# How long an invitation to a workspace can be accepted.
AUTEUR_INVITATION_TTL_SECONDS = env.int("AUTEUR_INVITATION_TTL_SECONDS", default=7 * 24 * 3600)
# The probe runs in a child process with these limits (media/probing/sandbox.py); a file it cannot
# examine within them is rejected. A picture above AUTEUR_MEDIA_MAX_PIXELS is refused before
# anything decodes it; a file whose probe keeps killing its worker is rejected after
# AUTEUR_MEDIA_PROBE_MAX_ATTEMPTS runs.
AUTEUR_MEDIA_PROBE_MEMORY_MB = env.int("AUTEUR_MEDIA_PROBE_MEMORY_MB", default=2048)
AUTEUR_MEDIA_PROBE_CPU_SECONDS = env.int("AUTEUR_MEDIA_PROBE_CPU_SECONDS", default=120)
AUTEUR_MEDIA_PROBE_TIMEOUT_SECONDS = env.float("AUTEUR_MEDIA_PROBE_TIMEOUT_SECONDS", default=300.0)
AUTEUR_MEDIA_PROBE_MAX_ATTEMPTS = env.int("AUTEUR_MEDIA_PROBE_MAX_ATTEMPTS", default=3)
AUTEUR_MEDIA_MAX_PIXELS = env.int("AUTEUR_MEDIA_MAX_PIXELS", default=8192 * 8192)
