"""A project names the person who made it (the member who acted)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('projects', '0006_auto_transcribe_by_default'),
    ]

    operations = [
        migrations.AddField(
            model_name='project',
            name='member_id',
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
    ]
