"""Flower's configuration file (`celery -A auteur flower --conf=deploy/flowerconfig.py`): its login
read as every secret is, from FLOWER_BASIC_AUTH or the file AUTEUR_SECRETS_DIR/FLOWER_BASIC_AUTH,
so that a container gets it from a mounted secret rather than a variable. (Not FLOWER_BASIC_AUTH_FILE:
Flower takes every FLOWER_* variable for one of its options and stops at one it does not know.)

Flower executes this file and keeps the names that are its options; a Flower with no login does
not start. (Under deploy/, not in a package: it stops the process when imported without a login.)"""

import os

from auteur.core.secret_values import env_value

# Once the Django settings have loaded (Celery's app loads them before Flower reads this file), they
# have put the login in the environment from its file, as they do for every library's secret:
# take it from there, or reading the folder again would find it twice and refuse.
_login = os.environ.get("FLOWER_BASIC_AUTH") or env_value("FLOWER_BASIC_AUTH")
if ":" not in _login:
    raise SystemExit("FLOWER_BASIC_AUTH (user:password) is not set, in the environment or in AUTEUR_SECRETS_DIR: "
                     "Flower does not run without a login.")
basic_auth = [_login]
