"""Content policy refusals: which fields of whose request were refused in which categories (never the text)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import api_grant, owner_policy


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0027_ended_jobs_stay_ended'),
        ('users', '0005_api_grants'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ScreeningRefusal',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('member_id', models.UUIDField(blank=True, null=True)),
                ('type', models.CharField(max_length=32)),
                ('flagged', models.JSONField()),
                ('model_version', models.CharField(max_length=64)),
                ('policy_version', models.CharField(max_length=16)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'screening_refusals',
                'indexes': [models.Index(fields=['user', 'created_at'], name='screening_refusals_user')],
            },
        ),
        migrations.RunSQL(*owner_policy("screening_refusals")),
        # A refused request records itself (its id returned); reading refusals is staff's, in the admin.
        migrations.RunSQL(*api_grant("screening_refusals", "SELECT (id), INSERT")),
    ]
