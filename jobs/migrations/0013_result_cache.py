# The result cache: what identifies a job's work, the job a cached one got its outputs from, and
# the indexes of a user's completed jobs by their work and of the jobs served from a job, built
# without locking the jobs table.

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("jobs", "0012_waiting_for"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="cache_key",
            field=models.CharField(blank=True, db_default="", default="", max_length=64),
        ),
        migrations.AddField(
            model_name="job",
            name="cache_source",
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="jobs.job"),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(condition=models.Q(("status", "completed"), models.Q(("cache_key", ""), _negated=True)), fields=["user", "cache_key", "-completed_at"], name="jobs_completed_cache_key"),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(condition=models.Q(("cache_source__isnull", False)), fields=["cache_source"], name="jobs_cache_source"),
        ),
    ]
