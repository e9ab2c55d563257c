#!/usr/bin/env python3
"""Redis users, one per role: what each process may do with the deployment's Redis.

Standard library only: the compose host runs it (deploy/compose_secrets.py) without the app.

- ``api``: the API and the ASGI server. They read and write their own keys only (the cache, the
  rate limits, the job event streams, the stream leases), read which workers are live, and may
  only add to the Celery queues (LPUSH/RPUSH) and read their routing: no API credential can take,
  delete, rename, expire or overwrite a queue, consume or steal a GPU call's announcement, publish
  on the workers' control channel (``shutdown``, ``revoke``), or administer Redis. This needs ACL
  selectors: Redis 7.0 or later, or Valkey.
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
import re
import sys

# The Celery queues (auteur/core/queues.py ALL_QUEUES; a test holds the two equal).
QUEUES = ("default", "media", "render", "gpu_audio", "gpu_vision", "gpu_generation", "webhooks")
# The list GPU calls announce on (gpu_tasks/announce.py EVENTS_KEY; a test holds them equal).
GPU_EVENTS_KEY = "auteur:gpu:events"

# The keys the API writes, by prefix (a test holds each equal to the app's): the Django cache
# (KEY_PREFIX "" and version 1), the rate limits (auteur/core/throttling.py), the job event streams
# (jobs/events/stream.py) and the live-stream leases (realtime/leases.py).
API_KEY_PREFIXES = (":1:", "rl:", "jobevents:", "auteur:streams:")
# What the workers record of themselves (auteur/core/worker_presence.py): the API reads it.
WORKER_PRESENCE_KEY = "auteur:workers"
# kombu's routing tables (``_kombu.binding.<exchange>``, ``_kombu.binding_permanent.<exchange>``):
# the API reads them to route, and adds a queue's binding when it declares one.
KOMBU_BINDINGS = "_kombu.binding*"

_NO_ADMIN = "-@admin -@dangerous +info +client|id +client|setname +client|getname +client|setinfo"

ROLES: dict[str, str] = {
    "api": (
        "resetkeys " + " ".join(f"~{prefix}*" for prefix in API_KEY_PREFIXES) + f" %R~{WORKER_PRESENCE_KEY}"
        f" resetchannels +@all {_NO_ADMIN} -@list -zpopmin -zpopmax -zmpop -bzpopmin -bzpopmax -bzmpop"
        " -scan -randomkey -pubsub"  # no listing of the keys and channels it may not touch
        # Each selector is another set of rules a command may pass: adding to a queue and counting
        # it (kombu declares a queue before its first publish: LLEN of the queue and of its
        # priority lists, "<queue>\x06\x16<n>"), and routing.
        " (" + " ".join(f"~{queue}*" for queue in QUEUES) + " +lpush +rpush +llen)"
        f" (~{KOMBU_BINDINGS} +smembers +sadd)"
    ),
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
    # A selector is one argument of ACL SETUSER: quoted, so that redis-cli passes it whole.
    print(f"ACL SETUSER {argv[2]} " + re.sub(r"(\([^)]*\))", r'"\1"', rules(argv[2], argv[3])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
