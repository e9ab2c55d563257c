from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class UsersConfig(AppConfig):
    default = True  # the config of "auteur.users"; the admin's below is named in INSTALLED_APPS
    name = "auteur.users"
    label = "users"
    verbose_name = "Users"

    def ready(self) -> None:
        from auteur.core import rls, tracing
        from auteur.users import schema  # noqa: F401 - registers the OpenAPI auth extension

        rls.install()
        # Before the first request loads the middleware: Django's instrumentation adds its own.
        tracing.configure()


class AuteurAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the OTP-aware site (admin_site.py) as `admin.site`, so every app
    registers with it."""

    default = False
    default_site = "auteur.users.admin_site.AuteurAdminSite"
