"""A webhook names the person who made it (the member who acted)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0002_row_level_security'),
    ]

    operations = [
        migrations.AddField(
            model_name='webhook',
            name='member_id',
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
    ]
