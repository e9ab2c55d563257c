# The GPU class a job's call runs on after one ran out of memory; a column with a database default, so a
# process of the previous release, which names no such column, still inserts jobs during a deploy.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0018_ended_at_index'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='gpu_class',
            field=models.CharField(blank=True, db_default='', default='', max_length=16),
        ),
    ]
