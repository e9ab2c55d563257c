# A publication in progress (the media.publish task copies the file): the key it copies to, since
# when, and whether it was unpublished meanwhile. Columns with constant defaults (no table rewrite); the constraint is added NOT VALID,
# then validated in a transaction of its own; the partial index is built without locking the table.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

CONSTRAINT = models.CheckConstraint(
    condition=models.Q(publishing_key="", publishing_since__isnull=True)
    | (~models.Q(publishing_key="") & models.Q(publishing_since__isnull=False, public_key="")),
    name="media_publishing_has_key_and_time",
)
ADD = """
ALTER TABLE media_files ADD CONSTRAINT media_publishing_has_key_and_time CHECK (
    (publishing_key = '' AND publishing_since IS NULL)
    OR (NOT (publishing_key = '') AND publishing_since IS NOT NULL AND public_key = '')
) NOT VALID
"""
VALIDATE = "ALTER TABLE media_files VALIDATE CONSTRAINT media_publishing_has_key_and_time"
DROP = "ALTER TABLE media_files DROP CONSTRAINT media_publishing_has_key_and_time"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("media", "0012_published"),
    ]

    operations = [
        migrations.AddField(
            model_name="mediafile",
            name="publishing_key",
            field=models.CharField(blank=True, db_default="", default="", max_length=500),
        ),
        migrations.AddField(
            model_name="mediafile",
            name="publishing_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="mediafile",
            name="publishing_canceled",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddConstraint(model_name="mediafile", constraint=CONSTRAINT)],
            database_operations=[migrations.RunSQL(ADD, DROP), migrations.RunSQL(VALIDATE, migrations.RunSQL.noop)],
        ),
        AddIndexConcurrently(
            model_name="mediafile",
            index=models.Index(
                condition=models.Q(("publishing_key", ""), _negated=True),
                fields=["user", "publishing_since"], name="media_publishing",
            ),
        ),
    ]
