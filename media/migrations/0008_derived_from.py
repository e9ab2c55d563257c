# The file a media file is a version of (a compression's source), and the index of a file's
# versions, built without locking the table.

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("media", "0007_multipart_uploads"),
    ]

    operations = [
        migrations.AddField(
            model_name="mediafile",
            name="derived_from",
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="media.mediafile"),
        ),
        AddIndexConcurrently(
            model_name="mediafile",
            index=models.Index(condition=models.Q(("derived_from__isnull", False)), fields=["derived_from"], name="media_derived_from"),
        ),
    ]
