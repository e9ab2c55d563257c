"""`manage.py download_models [TYPE ...]`: put the engines' weights under AUTEUR_MODELS_DIR.

For a machine with internet access that runs the `local` backend on a GPU (or a patient CPU):
the same weights Modal's `download_models` puts on its Volume. Without types, every type's.
A gated repository (pyannote, FLUX) needs `HF_TOKEN` with its conditions accepted.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs import gpu_client
from jobs.specs import JOB_SPECS, JobType


class Command(BaseCommand):
    help = "Download the model weights of the given job types (default: all) into AUTEUR_MODELS_DIR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("types", nargs="*", help=f"job types (default: all): {', '.join(JOB_SPECS)}")

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = options["types"] or [t.value for t in JOB_SPECS]
        unknown = sorted(set(names) - {t.value for t in JobType})
        if unknown:
            raise CommandError(f"unknown job type(s): {', '.join(unknown)}; known: {', '.join(JOB_SPECS)}")
        token = os.environ.get("HF_TOKEN") or None
        for name in names:
            repos = gpu_client.weight_repos(name)
            if not repos:
                self.stdout.write(f"{name}: nothing to download (its engine's model ships in a package)")
            for folder, repo in repos.items():
                self.stdout.write(f"{name}: {repo.id} -> {settings.AUTEUR_MODELS_DIR}/{folder}")
                gpu_client.download_weights(folder, repo, token=token)
