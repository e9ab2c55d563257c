from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "auteur.users"
    label = "users"
    verbose_name = "Users"

    def ready(self) -> None:
        from auteur.users import schema  # noqa: F401 - registers the OpenAPI auth extension
