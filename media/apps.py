from django.apps import AppConfig


class MediaConfig(AppConfig):
    name = "media"
    verbose_name = "Media"

    def ready(self) -> None:
        from auteur.core.retention import register_sweep
        from media.services.retention import SWEEPS

        for sweep in SWEEPS:
            register_sweep(sweep)
