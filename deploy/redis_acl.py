#!/usr/bin/env python3
"""Redis users, one per role: what each process may do with the deployment's Redis.

Standard library only: the compose host runs it (deploy/compose_secrets.py) without the app.

- ``api``: the API and the ASGI server. They queue tasks (LPUSH), publish and read job events
  (streams, pub/sub), count rate limits and cache, but never take from a list: no API credential
  can consume a Celery queue, steal a GPU call's announcement, or administer Redis.
- ``worker``: Celery workers, beat, the GPU completion consumer, the metrics exporter and Flower:
  everything the broker needs (blocking pops, the unacknowledged set, inspect replies), still
  without administration (CONFIG, ACL, FLUSHALL, DEBUG, SHUTDOWN, KEYS...).
- ``gpu``: the GPU runner child processes, which run engines on users' files: they may only append
  to the list that announces a call's progress and end.
- ``health``: the Redis container's health check: PING, nothing else.
- ``keda`` (Kubernetes only): KEDA's scaler reads the queues' lengths and nothing else.

``default`` is turned off: a connection that does not log in as one of these can do nothing.

Usage: ``redis_acl.py setuser ROLE PASSWORD`` prints the ``ACL SETUSER`` command of one role (for a
managed Redis); deploy/compose_secrets.py writes the compose Redis's ACL file with ``acl_file``.
"""

from __future__ import annotations

import hashlib
import sys

# The Celery queues (auteur/core/queues.py ALL_QUEUES; a test holds the two equal).
QUEUES = ("default", "media", "render", "gpu_audio", "gpu_vision", "gpu_generation", "webhooks")
# The list GPU calls announce on (gpu_tasks/announce.py EVENTS_KEY; a test holds them equal).
GPU_EVENTS_KEY = "auteur:gpu:events"

# Every command that takes from a list or blocks on one (Redis 6.2's names; 7's LMPOP family is in
# @list, which the API has only the adding commands of).
_NO_ADMIN = "-@admin -@dangerous +info +client|id +client|setname +client|getname +client|setinfo"

ROLES: dict[str, str] = {
    "api": f"~* &* +@all {_NO_ADMIN} -@list +lpush +rpush +llen +lrange -bzpopmin -bzpopmax",
    "worker": f"~* &* +@all {_NO_ADMIN}",
    "gpu": f"resetkeys ~{GPU_EVENTS_KEY} resetchannels -@all +rpush +ping",
    "health": "resetkeys resetchannels -@all +ping",
    "keda": "resetkeys " + " ".join(f"~{queue}" for queue in QUEUES) + " resetchannels -@all +llen +ping",
}
# The roles a compose deployment has (KEDA runs on Kubernetes only).
COMPOSE_ROLES = ("api", "worker", "gpu", "health")


def password_hash(password: str) -> str:
    """The form an ACL file keeps a password in: its SHA-256, so the file holds no password."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def rules(role: str, password: str, *, hashed: bool = True) -> str:
    """The ACL rules of `role` logging in with `password` (replacing whatever the user had)."""
    if not password or any(c.isspace() for c in password):
        raise ValueError(f"the {role} user's password must be non-empty, without spaces")
    secret = password_hash(password) if hashed else ">" + password
    return f"reset on {secret} {ROLES[role]}"


def acl_file(passwords: dict[str, str]) -> str:
    """An ACL file (redis-server --aclfile) with the default user off and one user per role given."""
    lines = ["user default off"] + [f"user {role} {rules(role, password)}" for role, password in passwords.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] != "setuser" or argv[2] not in ROLES:
        print(f"usage: {argv[0]} setuser {{{','.join(ROLES)}}} PASSWORD", file=sys.stderr)
        return 2
    print(f"ACL SETUSER {argv[2]} {rules(argv[2], argv[3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
