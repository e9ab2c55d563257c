"""``python -m auteur.devstack run|exec -- ...`` (see ``cli.py``)."""

from __future__ import annotations

import sys

from auteur.devstack.cli import main

sys.exit(main())
