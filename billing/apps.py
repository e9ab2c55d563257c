from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # The ledger audit checks that every paid Stripe object has its ledger row; credits
        # cannot import billing, so billing hands it the check (credits/selectors.py).
        from billing.selectors import billing_ledger_problems
        from credits.selectors import ledger_check_register

        ledger_check_register(billing_ledger_problems)
