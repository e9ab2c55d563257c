# The deadline sweep's indexes, built without locking the jobs table against writes.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("jobs", "0007_deadlines_priority"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='job',
            index=models.Index(condition=models.Q(('start_deadline__isnull', False), ('status__in', ['pending', 'queued'])), fields=['start_deadline'], name='jobs_waiting_start_deadline'),
        ),
        AddIndexConcurrently(
            model_name='job',
            index=models.Index(condition=models.Q(('run_deadline__isnull', False), ('status', 'processing')), fields=['run_deadline'], name='jobs_processing_run_deadline'),
        ),
    ]
