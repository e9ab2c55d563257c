"""A media file and a voice name the person who made them (the member who acted)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('media', '0013_publishing'),
    ]

    operations = [
        migrations.AddField(
            model_name='mediafile',
            name='member_id',
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='voiceclone',
            name='member_id',
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
    ]
