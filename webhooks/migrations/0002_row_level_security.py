"""Row-level security on the webhooks app's tables: a session as auteur_api sees only its user's rows (auteur/core/rls.py)."""

from django.db import migrations

from auteur.core.rls import owner_policy, parent_policy


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0003_api_role"),
        ("webhooks", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(*owner_policy("webhooks", "owner_id")),
        migrations.RunSQL(*owner_policy("webhook_signing_secrets", "owner_id")),
        migrations.RunSQL(*owner_policy("webhook_job_targets", "owner_id")),
        migrations.RunSQL(*owner_policy("webhook_deliveries", "owner_id")),
        migrations.RunSQL(*parent_policy("webhook_delivery_attempts", "delivery_id", "webhook_deliveries", "owner_id")),
        migrations.RunSQL(*owner_policy("webhook_account_notices", "owner_id")),
    ]
