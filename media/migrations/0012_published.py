# A file's publication through the CDN: the keys of its public copies and when it was published.
# Columns with constant defaults (no table rewrite); the constraint is added NOT VALID, then
# validated in a transaction of its own, under a lock that lets reads and writes go on.

from django.db import migrations, models

CONSTRAINT = models.CheckConstraint(
    condition=models.Q(public_key="", public_thumbnail_key="", published_at__isnull=True)
    | (~models.Q(public_key="") & models.Q(published_at__isnull=False)),
    name="media_published_has_key_and_time",
)
ADD = """
ALTER TABLE media_files ADD CONSTRAINT media_published_has_key_and_time CHECK (
    (public_key = '' AND public_thumbnail_key = '' AND published_at IS NULL)
    OR (NOT (public_key = '') AND published_at IS NOT NULL)
) NOT VALID
"""
VALIDATE = "ALTER TABLE media_files VALIDATE CONSTRAINT media_published_has_key_and_time"
DROP = "ALTER TABLE media_files DROP CONSTRAINT media_published_has_key_and_time"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("media", "0011_lease_policy"),
    ]

    operations = [
        migrations.AddField(
            model_name="mediafile",
            name="public_key",
            field=models.CharField(blank=True, db_default="", default="", max_length=500),
        ),
        migrations.AddField(
            model_name="mediafile",
            name="public_thumbnail_key",
            field=models.CharField(blank=True, db_default="", default="", max_length=500),
        ),
        migrations.AddField(
            model_name="mediafile",
            name="published_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddConstraint(model_name="mediafile", constraint=CONSTRAINT)],
            database_operations=[migrations.RunSQL(ADD, DROP), migrations.RunSQL(VALIDATE, migrations.RunSQL.noop)],
        ),
    ]
