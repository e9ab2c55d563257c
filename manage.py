#!/usr/bin/env python
"""Django's command-line utility. Adopts the servers of a running `make run` (var/devstack.json)."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auteur.settings")
    try:
        from devstack.stack import load_recorded_urls, nothing_to_run_on
    except ModuleNotFoundError:  # the production image ships no dev tooling (.dockerignore)
        pass
    else:
        load_recorded_urls()
        # In a checkout with no `make run` up and no production settings: say so in one line,
        # rather than a traceback about the first setting that is missing.
        hint = nothing_to_run_on(sys.argv[1:])
        if hint:
            sys.stderr.write(hint + "\n")
            sys.exit(2)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
