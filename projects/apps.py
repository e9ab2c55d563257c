from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Projects"

    def ready(self) -> None:
        from auteur.core.retention import register_sweep
        from media.hooks import register_in_use_check
        from projects.edl.media_use import media_used_by_timelines
        from projects.retention import SWEEPS

        for sweep in SWEEPS:
            register_sweep(sweep)
        # A media file a timeline plays is not deleted (409 media_in_use naming the projects).
        register_in_use_check(media_used_by_timelines)
