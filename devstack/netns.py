"""Entering a network namespace from a child process, before it executes its program.

A drill (bench/netns.py) stands machines up as network namespaces; a server placed on one is
started with ``preexec_fn=partial(enter_netns, name)``. Entering needs root (CAP_SYS_ADMIN), so a
server that must not run as root (Postgres) enters first and takes its own user after.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"  # where `ip netns add` keeps its namespaces


def enter_netns(name: str, user: str | None = None) -> None:
    """Move the calling process into the network namespace `name`, then to `user` if given."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)
    if user:
        # As subprocess.Popen(user=...) does: the user id only, the groups as they were.
        uid = pwd.getpwnam(user).pw_uid
        os.setreuid(uid, uid)
