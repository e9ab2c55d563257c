# Why a queued job waits (`slot` or `capacity`), and the index that finds a type's jobs waiting for
# a unit, built without locking the jobs table against writes.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("jobs", "0011_quotes"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="waiting_for",
            field=models.CharField(blank=True, db_default="", default="", max_length=8),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(condition=models.Q(("status", "queued"), ("waiting_for", "capacity")), fields=["type"], name="jobs_queued_for_capacity"),
        ),
    ]
