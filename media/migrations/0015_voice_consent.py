"""Voice consent: issued challenges, verified consents, and a voice's consent.

Voices made before consents existed keep working for a grace of VOICE_CONSENT_GRACE_DAYS from
this migration (a verified consent attached to one makes it usable for good); voices made
after it need a consent to be made at all.
"""

import datetime
import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

from auteur.core.rls import api_grant, owner_policy

VOICE_CONSENT_GRACE_DAYS = 30


def grace_for_existing_voices(apps, schema_editor):
    until = timezone.now() + datetime.timedelta(days=VOICE_CONSENT_GRACE_DAYS)
    apps.get_model("media", "VoiceClone").objects.filter(consent__isnull=True).update(consent_grace_until=until)


class Migration(migrations.Migration):

    dependencies = [
        ('media', '0014_members'),
        ('users', '0005_api_grants'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='voiceclone',
            name='consent_grace_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name='Consent',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('member_id', models.UUIDField(blank=True, null=True)),
                ('kind', models.CharField(choices=[('voice', 'Voice')], max_length=16)),
                ('status', models.CharField(choices=[('verified', 'Verified'), ('failed', 'Failed'), ('revoked', 'Revoked')], max_length=16)),
                ('challenge_id', models.UUIDField(unique=True)),
                ('job_id', models.UUIDField(unique=True)),
                ('recording_media_id', models.UUIDField(blank=True, null=True)),
                ('sample_sha256', models.CharField(max_length=64)),
                ('checks', models.JSONField()),
                ('challenge_wer', models.FloatField()),
                ('phrase_wer', models.FloatField()),
                ('similarity', models.FloatField()),
                ('threshold', models.FloatField()),
                ('stretch_similarity', models.FloatField(blank=True, null=True)),
                ('stretch_threshold', models.FloatField(blank=True, null=True)),
                ('max_wer', models.FloatField()),
                ('models_used', models.JSONField(default=dict)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_by', models.CharField(blank=True, choices=[('subject', 'Subject'), ('member', 'Member'), ('staff', 'Staff')], default='', max_length=16)),
                ('revoked_by_member', models.UUIDField(blank=True, null=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'consents',
                'ordering': ('-created_at',),
            },
        ),
        migrations.AddField(
            model_name='voiceclone',
            name='consent',
            field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.RESTRICT, related_name='voice', to='media.consent'),
        ),
        migrations.CreateModel(
            name='ConsentChallenge',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('member_id', models.UUIDField(blank=True, null=True)),
                ('kind', models.CharField(choices=[('voice', 'Voice')], max_length=16)),
                ('words', models.JSONField()),
                ('statement', models.TextField()),
                ('language', models.CharField(default='en', max_length=8)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField()),
                ('used_by_job_id', models.UUIDField(blank=True, null=True, unique=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'consent_challenges',
            },
        ),
        migrations.AddConstraint(
            model_name='consent',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('revoked_at__isnull', False), ('status', 'revoked')), models.Q(models.Q(('status', 'revoked'), _negated=True), ('revoked_at__isnull', True)), _connector='OR'), name='consent_revoked_when_revoked_at'),
        ),
        migrations.AddIndex(
            model_name='consentchallenge',
            index=models.Index(condition=models.Q(('used_by_job_id__isnull', True)), fields=['user', 'expires_at'], name='consent_challenges_open'),
        ),
        migrations.AddConstraint(
            model_name='consentchallenge',
            constraint=models.CheckConstraint(condition=models.Q(('expires_at__gt', models.F('created_at'))), name='consent_challenge_expires_after_creation'),
        ),
        migrations.RunPython(grace_for_existing_voices, migrations.RunPython.noop),
        migrations.RunSQL(*owner_policy("consent_challenges")),
        migrations.RunSQL(*owner_policy("consents")),
        # The API issues challenges and claims one in the transaction that charges its verification;
        # consents are written by the worker that ran the verification; the API reads them, and a
        # member revokes one of their workspace's.
        migrations.RunSQL(*api_grant("consent_challenges", "SELECT, INSERT, UPDATE (used_by_job_id)")),
        migrations.RunSQL(*api_grant("consents", "SELECT, UPDATE (status, revoked_at, revoked_by, revoked_by_member)")),
        migrations.RunSQL(
            api_grant("voice_clones", "SELECT, INSERT, UPDATE (source_media_id, consent_id), DELETE")[0],
            api_grant("voice_clones", "SELECT, INSERT, UPDATE (source_media_id), DELETE")[0],
        ),
    ]
