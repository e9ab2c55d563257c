# A lease (objects copied for a user before their rows exist) names the user and the bytes it
# holds, which the storage quota counts until the rows replace it or the sweep deletes the objects.
# The table holds only deletions yet to be done: small, so its index is built in the transaction.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("media", "0009_unhashed_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="pendingobjectdeletion",
            name="bytes",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="pendingobjectdeletion",
            name="user",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
