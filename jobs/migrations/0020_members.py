"""Jobs and their usage events name the person who submitted them (the member who acted)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0019_gpu_class'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='member_id',
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='usageevent',
            name='member_id',
            field=models.UUIDField(blank=True, null=True),
        ),
    ]
