#!/usr/bin/env python
"""Django's command-line utility. Adopts the servers of a running `make run` (var/devstack.json)."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auteur.settings")
    try:
        from devstack.stack import load_recorded_urls
    except ModuleNotFoundError:  # the production image ships no dev tooling (.dockerignore)
        pass
    else:
        load_recorded_urls()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
