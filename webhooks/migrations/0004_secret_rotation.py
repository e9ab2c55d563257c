"""A rotated signing secret keeps signing beside the new one for a while; the API's role may rotate."""

from django.db import migrations, models

from auteur.core.rls import api_grant


class Migration(migrations.Migration):

    # After the migration that sets every table's grants, which would otherwise take these back.
    dependencies = [
        ('webhooks', '0003_members'),
        ('users', '0005_api_grants'),
    ]

    operations = [
        migrations.AddField(
            model_name='signingsecret',
            name='previous_expires_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='signingsecret',
            name='previous_secret_sealed',
            field=models.TextField(blank=True, default='', editable=False),
        ),
        migrations.AddField(
            model_name='webhook',
            name='previous_expires_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='webhook',
            name='previous_secret_sealed',
            field=models.TextField(blank=True, default='', editable=False),
        ),
        migrations.RunSQL(
            api_grant("webhooks", "SELECT, INSERT, UPDATE (description, secret_sealed, previous_secret_sealed, "
                                  "previous_expires_at), DELETE")[0],
            api_grant("webhooks", "SELECT, INSERT, UPDATE (description), DELETE")[0]),
        migrations.RunSQL(
            api_grant("webhook_signing_secrets", "SELECT, INSERT, UPDATE (secret_sealed, previous_secret_sealed, "
                                                 "previous_expires_at)")[0],
            api_grant("webhook_signing_secrets", "SELECT, INSERT")[0]),
    ]
