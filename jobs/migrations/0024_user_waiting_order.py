"""A user's waiting jobs in start order: built without locking the jobs table (CONCURRENTLY)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('jobs', '0023_batch_end'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='job',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'queued'])), fields=['user', '-priority', 'created_at', 'id'], name='jobs_user_waiting_order'),
        ),
    ]
