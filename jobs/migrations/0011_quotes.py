# Quotes: a price promised for a stated time (POST /jobs/{type}/quote), its owner's only.

import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import owner_policy


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0010_fair_share_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Quote',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('type', models.CharField(max_length=32)),
                ('request_hash', models.CharField(max_length=64)),
                ('quantities', models.JSONField(default=dict)),
                ('credits_cost', models.PositiveIntegerField()),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField()),
                ('job', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='quote', to='jobs.job')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'job_quotes',
                'indexes': [models.Index(fields=['expires_at'], name='job_quotes_expires')],
            },
        ),
        migrations.RunSQL(*owner_policy("job_quotes")),
    ]
