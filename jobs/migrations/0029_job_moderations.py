"""Output screening: the jobs whose outputs were withheld, their categories and quarantine keys, and staff's decision."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import API_ROLE, owner_policy


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0028_screening_refusals'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='JobModeration',
            fields=[
                ('job', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to='jobs.job')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('categories', models.JSONField()),
                ('source', models.CharField(choices=[('embedded', 'Embedded'), ('injected', 'Injected')], max_length=16)),
                ('quarantine', models.JSONField(default=list)),
                ('model_version', models.CharField(max_length=64)),
                ('state', models.CharField(choices=[('held', 'Held'), ('released', 'Released'), ('confirmed', 'Confirmed')], default='held', max_length=16)),
                ('decided_at', models.DateTimeField(blank=True, null=True)),
                ('decided_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'job_moderations',
                'indexes': [models.Index(fields=['state', 'created_at'], name='job_moderations_state')],
            },
        ),
        migrations.RunSQL(*owner_policy("job_moderations")),
        # Written by workers and read by staff (the admin), both as the tables' owner: the API's role has nothing.
        migrations.RunSQL(f"REVOKE ALL ON job_moderations FROM {API_ROLE};", migrations.RunSQL.noop),
    ]
