from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Projects"

    def ready(self) -> None:
        from auteur.core.retention import register_sweep
        from projects.retention import SWEEPS

        for sweep in SWEEPS:
            register_sweep(sweep)
