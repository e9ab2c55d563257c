"""``python -m devstack run|exec -- ...`` (see ``cli.py``)."""

from __future__ import annotations

import sys

from devstack.cli import main

sys.exit(main())
