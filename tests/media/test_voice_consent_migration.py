"""Migration 0015 on voices made before consents existed: each keeps working for its grace, then is
refused until a consent is attached."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from credits.services.ledger import credit_grant
from jobs.models import Job
from media.models import VoiceClone

BEFORE, AFTER = [("media", "0014_members")], [("media", "0015_voice_consent")]


@pytest.mark.django_db(transaction=True)
def test_a_voice_from_before_speaks_for_30_days_then_needs_a_consent(user: Any, auth_client: Any) -> None:
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps.get_model("media", "VoiceClone")
        voice = old.objects.create(user_id=user.pk, name="Narrator", sample_key="voices/x/sample.wav",
                                   sample_duration_ms=5000)
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    voice = VoiceClone.objects.get(pk=voice.pk)
    assert voice.consent_id is None
    assert voice.consent_grace_until is not None
    left = voice.consent_grace_until - timezone.now()
    assert datetime.timedelta(days=29, hours=23) < left <= datetime.timedelta(days=30)
    shown = auth_client.get(f"/api/v1/voices/{voice.pk}").json()["voice"]
    assert shown["consent_status"] == "grace" and shown["consent_id"] is None

    credit_grant(user=user, amount=10, type="bonus", description="test")
    body = {"text": "Hello there.", "voice_id": str(voice.pk)}
    assert auth_client.post("/api/v1/jobs/tts", body, format="json").status_code == 202
    VoiceClone.objects.filter(pk=voice.pk).update(consent_grace_until=timezone.now() - datetime.timedelta(seconds=1))
    refused = auth_client.post("/api/v1/jobs/tts", body, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "consent_required"
    assert Job.objects.count() == 1
