# Fair share's indexes on jobs, built without locking the table against writes.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("jobs", "0009_fair_share"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='job',
            index=models.Index(condition=models.Q(('status__in', ['pending', 'queued'])), fields=['type', 'user'], name='jobs_waiting_type_user'),
        ),
        AddIndexConcurrently(
            model_name='job',
            index=models.Index(condition=models.Q(('inference_ended_at__isnull', True), ('status', 'processing')), fields=['type'], name='jobs_type_in_inference'),
        ),
    ]
