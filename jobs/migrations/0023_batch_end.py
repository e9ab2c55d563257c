"""A batch's end: when every item had ended and that was announced."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0022_batch_index'),
    ]

    operations = [
        migrations.AddField(
            model_name='batch',
            name='ended_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='batch',
            index=models.Index(condition=models.Q(('ended_at__isnull', True)), fields=['created_at'], name='job_batches_running'),
        ),
    ]
