from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits"

    def ready(self) -> None:
        # Bounds the budget of a seat an admin gives (auteur.users.signals.seat_given).
        from credits.services import budgets  # noqa: F401
