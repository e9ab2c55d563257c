"""Likeness consent: a consent of kind `likeness`, verified by a job or attested by an owner or admin
(`attested`), the files whose face it covers (consent_subjects, by SHA-256) and the attestation.

The API's role inserts what an attestation makes, and nothing else: a consent it inserts is an
attested likeness with no job (restrictive policy), and a subject it inserts belongs to such a
consent and carries no similarity. Verified consents and their subjects are written by the worker
that ran the verification, on the owner's login, as voice consents are.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import API_ROLE, api_grant, owner_policy

API_INSERTS = f"""
CREATE POLICY api_attests_only ON consents AS RESTRICTIVE FOR INSERT TO {API_ROLE}
    WITH CHECK (status = 'attested' AND kind = 'likeness' AND job_id IS NULL AND challenge_id IS NULL);
CREATE POLICY api_attested_subjects ON consent_subjects AS RESTRICTIVE FOR INSERT TO {API_ROLE}
    WITH CHECK (similarity IS NULL
                AND EXISTS (SELECT FROM consents c WHERE c.id = consent_id AND c.status = 'attested'));
"""
API_INSERTS_REVERSE = """
DROP POLICY api_attested_subjects ON consent_subjects;
DROP POLICY api_attests_only ON consents;
"""
CONSENT_GRANTS_BEFORE = "SELECT, UPDATE (status, revoked_at, revoked_by, revoked_by_member)"


class Migration(migrations.Migration):

    dependencies = [
        ('media', '0016_consent_api_writes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ConsentAttestation',
            fields=[
                ('consent', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='attestation', serialize=False, to='media.consent')),
                ('attested_by', models.UUIDField()),
                ('person_name', models.CharField(max_length=200)),
                ('consent_obtained_at', models.DateTimeField()),
                ('evidence', models.TextField()),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'db_table': 'consent_attestations',
            },
        ),
        migrations.CreateModel(
            name='ConsentSubject',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('content_sha256', models.CharField(max_length=64)),
                ('media_id', models.UUIDField(blank=True, null=True)),
                ('similarity', models.FloatField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'db_table': 'consent_subjects',
            },
        ),
        migrations.AddField(
            model_name='consent',
            name='faces',
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='consent',
            name='challenge_id',
            field=models.UUIDField(blank=True, null=True, unique=True),
        ),
        migrations.AlterField(
            model_name='consent',
            name='challenge_wer',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='consent',
            name='job_id',
            field=models.UUIDField(blank=True, null=True, unique=True),
        ),
        migrations.AlterField(
            model_name='consent',
            name='kind',
            field=models.CharField(choices=[('voice', 'Voice'), ('likeness', 'Likeness')], max_length=16),
        ),
        migrations.AlterField(
            model_name='consent',
            name='max_wer',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='consent',
            name='phrase_wer',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='consent',
            name='sample_sha256',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AlterField(
            model_name='consent',
            name='similarity',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='consent',
            name='status',
            field=models.CharField(choices=[('verified', 'Verified'), ('attested', 'Attested'), ('failed', 'Failed'), ('revoked', 'Revoked')], max_length=16),
        ),
        migrations.AlterField(
            model_name='consent',
            name='threshold',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='consentchallenge',
            name='kind',
            field=models.CharField(choices=[('voice', 'Voice'), ('likeness', 'Likeness')], max_length=16),
        ),
        migrations.AddConstraint(
            model_name='consent',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('challenge_id__isnull', False), ('job_id__isnull', False)), models.Q(('challenge_id__isnull', True), ('job_id__isnull', True), ('kind', 'likeness')), _connector='OR'), name='consent_verified_by_a_job_or_attested'),
        ),
        migrations.AddConstraint(
            model_name='consent',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('status', 'attested'), _negated=True), ('kind', 'likeness'), _connector='OR'), name='consent_attested_is_a_likeness'),
        ),
        migrations.AddField(
            model_name='consentattestation',
            name='user',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='consentsubject',
            name='consent',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='subjects', to='media.consent'),
        ),
        migrations.AddField(
            model_name='consentsubject',
            name='user',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name='consentsubject',
            index=models.Index(fields=['user', 'content_sha256'], name='consent_subjects_by_content'),
        ),
        migrations.AddConstraint(
            model_name='consentsubject',
            constraint=models.UniqueConstraint(fields=('consent', 'content_sha256'), name='consent_subject_once'),
        ),
        migrations.AddConstraint(
            model_name='consentsubject',
            constraint=models.CheckConstraint(condition=models.Q(('content_sha256__regex', '^[0-9a-f]{64}$')), name='consent_subject_is_a_sha256'),
        ),
        migrations.RunSQL(*owner_policy("consent_subjects")),
        migrations.RunSQL(*owner_policy("consent_attestations")),
        migrations.RunSQL(api_grant("consents", f"INSERT, {CONSENT_GRANTS_BEFORE}")[0],
                          api_grant("consents", CONSENT_GRANTS_BEFORE)[0]),
        migrations.RunSQL(*api_grant("consent_subjects", "SELECT, INSERT")),
        migrations.RunSQL(*api_grant("consent_attestations", "SELECT, INSERT")),
        migrations.RunSQL(API_INSERTS, API_INSERTS_REVERSE),
    ]
