# A multipart upload in progress: the store's upload id and the part size. Columns with constant
# defaults: PostgreSQL adds them without rewriting the table.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("media", "0006_content_sha256"),
    ]

    operations = [
        migrations.AddField(
            model_name="mediafile",
            name="upload_id",
            field=models.CharField(blank=True, db_default="", default="", max_length=1024),
        ),
        migrations.AddField(
            model_name="mediafile",
            name="part_size",
            field=models.BigIntegerField(blank=True, null=True),
        ),
    ]
