"""Ledger entries name the person a job's usage or refund is for (the member who submitted it)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0004_row_level_security'),
    ]

    operations = [
        migrations.AddField(
            model_name='credittransaction',
            name='member_id',
            field=models.UUIDField(blank=True, null=True),
        ),
    ]
