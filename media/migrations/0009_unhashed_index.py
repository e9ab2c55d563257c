# The ready files whose content hash the backfill has yet to read, found without a scan; built
# without locking the table.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("media", "0008_derived_from"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="mediafile",
            index=models.Index(condition=models.Q(("content_sha256", ""), ("status", "ready")), fields=["created_at"], name="media_unhashed"),
        ),
    ]
