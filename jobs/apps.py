from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from jobs import receivers, services
        from media.hooks import register_in_use_check
        from media.signals import media_ready
        from projects.signals import project_deleting

        project_deleting.connect(receivers.on_project_deleting, dispatch_uid="jobs.project_deleting")
        media_ready.connect(receivers.on_media_ready, dispatch_uid="jobs.media_ready")
        register_in_use_check(services.media_has_active_jobs)
