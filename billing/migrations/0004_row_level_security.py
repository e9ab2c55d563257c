"""Row-level security on the billing app's tables: a session as auteur_api sees only its user's rows (auteur/core/rls.py)."""

from django.db import migrations

from auteur.core.rls import owner_policy


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0003_api_role"),
        ("billing", "0003_pack_disputes_and_invoice_credits"),
    ]

    operations = [
        migrations.RunSQL(*owner_policy("billing_stripe_customers")),
        migrations.RunSQL(*owner_policy("billing_pack_purchases")),
        migrations.RunSQL(*owner_policy("billing_paid_invoices")),
    ]
