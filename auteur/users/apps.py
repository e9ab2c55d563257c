from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "auteur.users"
    label = "users"
    verbose_name = "Users"
