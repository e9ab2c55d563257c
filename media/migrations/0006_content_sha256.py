# The SHA-256 of each file's bytes, recorded once known (a probed upload, a job output). A column
# with a constant default: PostgreSQL adds it without rewriting the table.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("media", "0005_row_level_security"),
    ]

    operations = [
        migrations.AddField(
            model_name="mediafile",
            name="content_sha256",
            field=models.CharField(blank=True, db_default="", default="", max_length=64),
        ),
    ]
