from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _check_gpu_backend() -> None:
    """Refuse to start with a GPU backend the settings in use do not accept."""
    accepted: tuple[str, ...] = settings.AUTEUR_GPU_BACKENDS
    if settings.AUTEUR_GPU_BACKEND not in accepted:
        hint = ""
        if settings.AUTEUR_GPU_BACKEND == "noop":
            hint = " ('noop' returns canned results and is for benchmarks only: DJANGO_SETTINGS_MODULE=bench.settings)"
        raise ImproperlyConfigured(
            f"AUTEUR_GPU_BACKEND must be one of {', '.join(map(repr, accepted))}, "
            f"not {settings.AUTEUR_GPU_BACKEND!r}{hint}."
        )


def _check_features_off() -> None:
    """Refuse to start with a switched-off feature that is no job type (a typo would switch off nothing)."""
    from jobs.specs import JobType

    unknown = set(settings.AUTEUR_FEATURES_OFF) - {t.value for t in JobType}
    if unknown:
        raise ImproperlyConfigured(
            f"AUTEUR_FEATURES_OFF names no job type: {', '.join(sorted(unknown))} "
            f"(the types: {', '.join(t.value for t in JobType)})."
        )


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        _check_gpu_backend()
        _check_features_off()
        from auteur.core.retention import register_sweep
        from credits.selectors import ledger_check_register
        from jobs import receivers
        from jobs.retention import SWEEPS
        from jobs.selectors.jobs import job_ledger_problems
        from media.hooks import register_in_use_check, register_revocation_handler
        from media.signals import media_ready
        from projects.signals import comment_changed, project_deleting

        project_deleting.connect(receivers.on_project_deleting, dispatch_uid="jobs.project_deleting")
        comment_changed.connect(receivers.on_comment_changed, dispatch_uid="jobs.comment_changed")
        media_ready.connect(receivers.on_media_ready, dispatch_uid="jobs.media_ready")
        register_in_use_check(receivers.media_in_use)
        register_revocation_handler(receivers.on_consent_revoked)
        ledger_check_register(job_ledger_problems)
        for sweep in SWEEPS:
            register_sweep(sweep)
