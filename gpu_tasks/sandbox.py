"""Process isolation for code that parses untrusted media: the probe's children and the local engines.

A crafted media file can take over the process that parses it. What that process can then
reach is decided here, on Linux, once per process that starts such children:

- `uid` (the process is root, or holds CAP_SETUID, CAP_SETGID, CAP_CHOWN and CAP_DAC_OVERRIDE):
  each child switches to an unprivileged uid and gid of its own (no supplementary groups, no new
  privileges), so it cannot read the worker's `/proc/<pid>/environ` or memory, nor write the
  worker's files or another call's folder (each local call leases a uid of its own, see
  `UidLeases`). With CAP_SYS_ADMIN as well (root), the child also gets a network namespace of
  its own, with no interface up (no socket reaches loopback: Redis, Postgres, or anything
  else), and a mount namespace of its own in which the folders it needs (the Python
  installation, the project, its call's folder, the models) are reachable even where an
  ancestor is closed to other uids (a Python under /root, say): that ancestor is covered, in
  the child's view only, by an empty tmpfs through which just those folders are bound;
- `userns` (unprivileged, where the kernel lets unprivileged users create user namespaces): the
  child enters a new user and network namespace. It keeps the worker's uid, so it can still
  read and write the worker's files (calls cannot be kept out of each other's folders), but it
  has no network, and the worker, made non-dumpable (`make_non_dumpable`), keeps its /proc
  environ and memory to itself;
- `none` (not Linux, or neither of the above is possible: a container whose seccomp profile
  forbids unshare, say): children run as the worker does. Only the resource limits, the minimal
  environment and the result checks remain.

Whichever mode applies is logged once by each process that starts children (`describe`), never
silently. `AUTEUR_SANDBOX=off` turns the isolation off (benchmark comparisons only).

This module imports nothing of the project: the confined runner (gpu_tasks/confined.py: the media
probe, the timeline importers) and the GPU side's local runner both use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

Mode = Literal["uid", "userns", "none"]
MODES: tuple[str, ...] = ("uid", "userns", "none")

# The uids the children take: the probe's children the first, each local call one of the
# others. Far above any account a distribution creates, and above the usual subordinate-uid
# ranges of rootless containers (100000-165535).
DEFAULT_UID_BASE = 2_000_000
DEFAULT_UID_COUNT = 64
LEASE_POLL_S = 0.05

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
_O_PATH = getattr(os, "O_PATH", 0o10000000)
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_CAP_CHOWN, _CAP_DAC_OVERRIDE, _CAP_SETGID, _CAP_SETUID, _CAP_SYS_ADMIN = 0, 1, 6, 7, 21
# Without root, what the `uid` mode takes: switching ids, and giving and reading the child's folder.
_UID_MODE_CAPS = (_CAP_CHOWN, _CAP_DAC_OVERRIDE, _CAP_SETGID, _CAP_SETUID)

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
if _libc is not None:
    _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


class SandboxError(OSError):
    """A child could not be isolated as its mode says: it must not go on to parse anything."""


@dataclass(frozen=True)
class Sandbox:
    """How children are isolated: `mode`, whether they get no network, and the uids they take."""

    mode: Mode
    network_isolated: bool
    uid_base: int = DEFAULT_UID_BASE
    uid_count: int = DEFAULT_UID_COUNT
    mounts: bool = False  # `uid` mode with CAP_SYS_ADMIN: a mount namespace per child (see above)
    turned_off: bool = False  # AUTEUR_SANDBOX=off
    hidden: str = ""  # the folder a child must not see: the deployment's secrets (`secrets_folder`)

    @property
    def separate_uid(self) -> bool:
        return self.mode == "uid"

    @property
    def probe_uid(self) -> int:
        return self.uid_base

    def describe(self) -> str:
        """One line for the log: what a child of this process can and cannot reach."""
        if self.mode == "uid":
            net = "in a network namespace of its own (no network)" if self.network_isolated else (
                "WITH the host's network (no CAP_SYS_ADMIN to create a network namespace)")
            return (f"sandbox: media parsers run as uids {self.uid_base}-{self.uid_base + self.uid_count}, "
                    f"one per call, {net}")
        if self.mode == "userns":
            secrets = (" and the secrets folder hidden" if self.hidden else
                       "" if not os.environ.get("AUTEUR_SECRETS_DIR") else
                       " but the secrets folder NOT hidden (this kernel refuses a mount namespace there)")
            return ("sandbox: media parsers run in a user and network namespace of their own (no network)"
                    f"{secrets}, with the worker's uid: calls are NOT kept out of each other's folders (needs "
                    "root or CAP_SETUID for that)")
        if self.turned_off:
            return ("sandbox: OFF (AUTEUR_SANDBOX=off): media parsers run with the worker's uid and network, for "
                    "benchmark comparisons only")
        secrets = ", and CAN read the secrets folder" if os.environ.get("AUTEUR_SECRETS_DIR") else ""
        return ("sandbox: NONE available (not Linux, or no CAP_SETUID and no unprivileged user namespaces): "
                "media parsers run with the worker's uid and network, limited only by rlimits, a minimal "
                f"environment and the checks of what they return{secrets}")

    def to_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "network_isolated": self.network_isolated, "uid_base": self.uid_base,
                "uid_count": self.uid_count, "mounts": self.mounts, "hidden": self.hidden}

    @staticmethod
    def from_dict(data: object) -> Sandbox:
        """The sandbox a parent chose (a call's call.json); anything unreadable means none."""
        if not isinstance(data, dict) or data.get("mode") not in MODES:
            return NO_SANDBOX
        try:
            return Sandbox(data["mode"], bool(data.get("network_isolated")), int(data.get("uid_base") or 0)
                           or DEFAULT_UID_BASE, int(data.get("uid_count") or 0) or DEFAULT_UID_COUNT,
                           bool(data.get("mounts")), hidden=str(data.get("hidden") or ""))
        except (TypeError, ValueError):
            return NO_SANDBOX


NO_SANDBOX = Sandbox("none", False)


def _effective_caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def _userns_works(hide: str = "") -> bool:
    """Whether this process may create a user and network namespace, and in it cover `hide` (tried
    in a throwaway child)."""
    if _libc is None:
        return False
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:  # pragma: no cover - the child only exits
        try:
            _check(_libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET | (_CLONE_NEWNS if hide else 0)), "unshare")
            if hide:
                _hide(hide)
        except SandboxError:
            os._exit(1)
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


@cache
def detect(setting: str = "auto", uid_base: int = DEFAULT_UID_BASE, uid_count: int = DEFAULT_UID_COUNT) -> Sandbox:
    """The best isolation this process can give its children (`setting`: "auto" or "off")."""
    if setting not in ("auto", "off"):
        raise ValueError(f"AUTEUR_SANDBOX must be 'auto' or 'off', not {setting!r}")
    if setting == "off" or _libc is None:
        return Sandbox("none", False, uid_base, uid_count, turned_off=setting == "off")
    caps = _effective_caps()
    if os.geteuid() == 0 or all(caps >> cap & 1 for cap in _UID_MODE_CAPS):
        admin = os.geteuid() == 0 or bool(caps >> _CAP_SYS_ADMIN & 1)
        return Sandbox("uid", admin, uid_base, uid_count, mounts=admin, hidden=secrets_folder() or "")
    if _userns_works():
        # The secrets folder is hidden where this kernel lets a user namespace mount over it;
        # where it does not, `describe` says so.
        hide = secrets_folder() or ""
        return Sandbox("userns", True, uid_base, uid_count, hidden=hide if hide and _userns_works(hide) else "")
    return Sandbox("none", False, uid_base, uid_count)


_logged: set[Sandbox] = set()


def log_once(sandbox: Sandbox, logger: logging.Logger) -> None:
    """Say once per process what isolation its children get: a warning where it is less than
    full (a uid of their own and no network), so that a degraded sandbox is never silent."""
    if sandbox in _logged:
        return
    _logged.add(sandbox)
    full = sandbox.mode == "uid" and sandbox.network_isolated
    logger.log(logging.INFO if full else logging.WARNING, "%s", sandbox.describe())


def make_non_dumpable() -> bool:
    """Keep this process's /proc environ, memory and file descriptors from other processes of its
    uid (and from core dumps): a parser that a crafted file took over, running as the worker's
    uid, could otherwise read the worker's secrets there. False where it is not possible."""
    if _libc is None:
        return False
    return _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (call it after `enter`: a uid change clears it)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise SandboxError(code, f"{what}: {os.strerror(code)}")


def secrets_folder() -> str | None:
    """The folder of the deployment's secret files (AUTEUR_SECRETS_DIR), when there is one: what the
    sandbox hides from its children, which run code on users' files."""
    folder = os.environ.get("AUTEUR_SECRETS_DIR", "")
    return os.path.realpath(folder) if folder and os.path.isdir(folder) else None


def _hide(folder: str) -> None:
    """Cover `folder` with an empty read-only tmpfs, in this process's own mount namespace."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing done here shows outside
    _mount("tmpfs", folder, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "mode=0,size=4k")


def isolate_network(sandbox: Sandbox) -> None:
    """Put this process (and what it forks later) in a network namespace of its own, without a
    network; in `userns` mode in a user namespace too. For a single-threaded process.

    The secrets folder (AUTEUR_SECRETS_DIR) is covered by an empty tmpfs in a mount namespace of
    the process's own, where the sandbox can make one (`userns` mode, or `uid` mode with
    CAP_SYS_ADMIN): a child that runs an engine or a parser on a user's file must not read the
    deployment's secrets, which the worker has as files there. In `uid` mode without it the
    files' modes keep other uids out (Kubernetes mounts them 0440 for the app's group, which a
    child is not in); in `none` mode nothing does (`describe` says the sandbox is degraded)."""
    if _libc is None or not sandbox.network_isolated:
        return
    hide = sandbox.hidden if sandbox.hidden and os.path.isdir(sandbox.hidden) else None
    if sandbox.mode == "uid":
        _check(_libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        if hide and sandbox.mounts:
            _check(_libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
            _hide(hide)
        return
    uid, gid = os.geteuid(), os.getegid()
    flags = _CLONE_NEWUSER | _CLONE_NEWNET | (_CLONE_NEWNS if hide else 0)
    _check(_libc.unshare(flags), "unshare(CLONE_NEWUSER|CLONE_NEWNET" + ("|CLONE_NEWNS)" if hide else ")"))
    # The same ids inside as outside, so that the files it creates and reads are the worker's as
    # before. Best effort: without a map the ids read as the overflow uid inside, which is harmless.
    with contextlib.suppress(OSError):
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1\n")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1\n")
    if hide:
        _hide(hide)


def python_paths() -> list[str]:
    """What a forked Python child may still read by path: the interpreter's installation, the
    virtualenv and every import path (a lazy import reads them)."""
    return [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix, *(p for p in sys.path if p)]


def _closed_ancestor(path: str) -> str | None:
    """The topmost folder above `path` that other uids may not pass through, if any."""
    current = "/"
    for part in Path(path).parts[1:-1]:
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return current
    return None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    assert _libc is not None
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {target}")


def reach(sandbox: Sandbox, paths: Iterable[str | os.PathLike[str]], uid: int | None = None) -> None:
    """Make each of `paths` reachable by the child's uid, in a mount namespace of its own.

    Only the ancestors closed to other uids are dealt with: each is covered by an empty tmpfs
    (mode 0711) through which the paths below it are bound, so the child sees those and nothing
    else of that folder; the paths' own permissions still apply. Without CAP_SYS_ADMIN, a path
    below a closed folder is an error: the child could not work."""
    if _libc is None or not sandbox.separate_uid:
        return
    wanted = sorted({os.path.realpath(p) for p in paths if os.path.exists(p)}, key=len)
    for path in wanted:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid != uid and not info.st_mode & stat.S_IXOTH:
            raise SandboxError(errno.EACCES, f"{path} is closed to the sandbox's uids: make it readable by others "
                                             "(chmod o+rX), as manage.py download_models leaves the models")
    kept: list[str] = []
    for path in wanted:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    below: dict[str, list[str]] = {}
    for path in kept:
        top = _closed_ancestor(path)
        if top is not None:
            below.setdefault(top, []).append(path)
    if not below:
        return
    if not sandbox.mounts:
        raise SandboxError(errno.EACCES, f"{sorted(below)[0]} is closed to the sandbox's uids, and this process "
                                         "cannot mount (no CAP_SYS_ADMIN)")
    _check(_libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing done here shows outside
    for top, inside in below.items():
        handles = {path: os.open(path, _O_PATH | os.O_CLOEXEC) for path in inside}
        try:
            _mount("tmpfs", top, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0711,size=64k")
            for path, fd in handles.items():
                source = f"/proc/self/fd/{fd}"
                if os.path.isdir(source):
                    os.makedirs(path, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
                _mount(source, path, None, _MS_BIND | _MS_REC)
        finally:
            for fd in handles.values():
                os.close(fd)


def drop_privileges(sandbox: Sandbox, uid: int | None) -> None:
    """Become `uid` (its gid the same number, no supplementary groups) in `uid` mode, and never
    regain privileges (no setuid binaries, no file capabilities) in any mode. Irreversible."""
    if _libc is None or sandbox.mode == "none":
        return
    if sandbox.mode == "uid":
        if uid is None:
            raise SandboxError(errno.EINVAL, "a uid sandbox needs a uid")
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        if os.getuid() != uid or os.geteuid() != uid:
            raise SandboxError(errno.EPERM, "the uid did not change")
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    # A uid change already makes the process non-dumpable; in the other modes it keeps its
    # siblings (other calls' engines) from reading its memory.
    make_non_dumpable()


def enter(sandbox: Sandbox, uid: int | None, *, reachable: Iterable[str | os.PathLike[str]] = (),
          network: bool = True) -> None:
    """In a freshly forked, single-threaded child: no network (unless `network` is False: the
    caller isolated it already), `reachable` reachable, then the sandbox's uid. Irreversible."""
    if network:
        isolate_network(sandbox)
    reach(sandbox, [*python_paths(), *reachable], uid)
    drop_privileges(sandbox, uid)


def kill_uid(uid: int) -> None:
    """SIGKILL every process running as `uid` (what a call's engine left behind, daemonised or
    not): a helper takes the uid and signals every process it may, which is exactly those."""
    try:
        pid = os.fork()
    except OSError:
        return
    if pid == 0:  # pragma: no cover - the helper only signals and exits
        with contextlib.suppress(BaseException):  # ESRCH (none left) included
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        os._exit(0)
    os.waitpid(pid, 0)


def lease_dir() -> Path:
    """The machine's one folder of uid leases, whichever calls folder a runner serves: two
    deployments (or test runs) on one machine draw from the same uids, so they must share the
    leases. Root's own (0700), in /run, or else in the temporary folder."""
    for candidate in (Path("/run/auteur-sandbox"), Path(tempfile.gettempdir()) / f"auteur-sandbox-{os.geteuid()}"):
        try:
            candidate.mkdir(mode=0o700, exist_ok=True)
            info = os.lstat(candidate)
        except OSError:
            continue
        # Never a folder someone else made (or a symlink) in a world-writable place.
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077:
            return candidate
    raise SandboxError(errno.EACCES, "no private folder for the sandbox's uid leases (/run, the temporary folder)")


class UidLeases:
    """One uid per running call, among `sandbox.uid_base + 1 ..`: a lease is an exclusive flock on
    a file of the machine's lease folder (`lease_dir`), held by the call's runner for its life
    and let go by the kernel when it exits, so a dead runner never keeps one. A leased uid is
    first cleared of any process a previous call left behind, so no call ever shares its uid with
    another's processes."""

    def __init__(self, sandbox: Sandbox, directory: Path | None = None) -> None:
        self.sandbox = sandbox
        self.directory = directory

    def acquire(self) -> tuple[int, int]:
        """(uid, the descriptor that holds it): waits while every uid is leased."""
        directory = self.directory or lease_dir()
        while True:
            for index in range(1, self.sandbox.uid_count + 1):
                uid = self.sandbox.uid_base + index
                fd = os.open(directory / f"uid-{uid}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                kill_uid(uid)
                return uid, fd
            time.sleep(LEASE_POLL_S)


def private_dir(path: Path, sandbox: Sandbox, uid: int | None) -> Path:
    """Create `path` as a folder that only the child's uid may enter (mode 0700, owned by it)."""
    path.mkdir(mode=0o700)
    if sandbox.separate_uid and uid is not None:
        os.chown(path, uid, uid)
    return path
