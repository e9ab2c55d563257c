"""A batch's items by status: built without locking the jobs table (CONCURRENTLY)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('jobs', '0021_batches'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='job',
            index=models.Index(condition=models.Q(('batch__isnull', False)), fields=['batch', 'status'], name='jobs_batch_status'),
        ),
    ]
