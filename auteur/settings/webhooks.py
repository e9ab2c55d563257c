"""Webhooks: outbound deliveries of job events."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from auteur.settings.environment import DEBUG, env

# ---- Webhooks (webhooks/): outbound deliveries of job events, signed (Standard Webhooks).
# Plain http and loopback targets are refused unless this is on (development and the tests'
# local receiver); private, link-local and reserved addresses are refused always.
AUTEUR_WEBHOOK_ALLOW_LOOPBACK = env.bool("AUTEUR_WEBHOOK_ALLOW_LOOPBACK", default=DEBUG)
# One attempt's wall-clock deadline (connect, TLS, request and answer together); at most 30 s, so
# that it always ends well inside the delivery task's soft time limit (60 s).
AUTEUR_WEBHOOK_TIMEOUT_SECONDS = env.float("AUTEUR_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
if not 0 < AUTEUR_WEBHOOK_TIMEOUT_SECONDS <= 30:
    raise ImproperlyConfigured("AUTEUR_WEBHOOK_TIMEOUT_SECONDS must be above 0 and at most 30.")
# A webhook host's name resolution is given up after this long (the URL is then refused).
AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS = env.float("AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS", default=5.0)
# A failed attempt is retried after base * 2**(n-1) seconds (with jitter, at most 10 minutes)
# for 24 hours; a target failing for 24 hours is disabled.
AUTEUR_WEBHOOK_RETRY_BASE_SECONDS = env.float("AUTEUR_WEBHOOK_RETRY_BASE_SECONDS", default=5.0)
AUTEUR_WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("AUTEUR_WEBHOOK_SWEEP_INTERVAL_SECONDS", default=15.0)
