"""Row-level security on the credits app's tables: a session as auteur_api sees only its user's rows (auteur/core/rls.py)."""

from django.db import migrations

from auteur.core.rls import owner_policy


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0003_api_role"),
        ("credits", "0003_purchases_and_past_due"),
    ]

    operations = [
        migrations.RunSQL(*owner_policy("subscriptions")),
        migrations.RunSQL(*owner_policy("credit_accounts")),
        migrations.RunSQL(*owner_policy("credit_transactions")),
        # The ledger is append-only (0002): the API role is not even allowed to try otherwise.
        migrations.RunSQL(
            "REVOKE UPDATE, DELETE ON credit_transactions FROM auteur_api;",
            "GRANT UPDATE, DELETE ON credit_transactions TO auteur_api;",
        ),
    ]
