# The index of jobs by the time they ended (the metrics exporter's tail of ended jobs), built
# without locking the jobs table.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("jobs", "0017_spawn_claim"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(condition=models.Q(("completed_at__isnull", False)), fields=["completed_at"], name="jobs_ended_at"),
        ),
    ]
