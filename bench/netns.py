"""Machines on one host: network namespaces joined by virtual links, which a drill can cut.

Each machine is a network namespace with only its loopback and one link (a veth pair) to each
network it is on. A network is a bridge in the host's namespace, where the drill itself runs:
the host has the address .254 on every network, so the drill reaches every machine, and a
machine reaches only the machines of its own networks, on the addresses given here. No machine
has a default route: nothing in a namespace can reach any other address.

Services get a network each (database, broker), so a machine can be cut from one service and
not the other: `cut(machine, network)` sets that link down on the host's side, `heal` sets it up
again; established connections then see silence (no reset), as across a real partition.

    with Topology("au") as net:
        net.network("db", "10.77.1")
        net.machine("data", {"db": 1, "broker": 1})
        net.machine("w1", {"db": 11, "broker": 11})
        argv = net.argv("w1", ["celery", ...])   # the command, run on machine w1
        net.cut("w1", "broker"); ...; net.heal("w1", "broker")

Everything is created with the tag as prefix and removed on exit, and leftovers of a run that
was killed are removed before a new one starts. It needs root and `ip` (iproute2):
`unavailable()` says why it cannot run, for a drill to skip with that message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

NETNS_DIR = Path("/run/netns")


def unavailable() -> str:
    """Why machines cannot be made here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the drill as root, e.g. with sudo)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    # Named after this process: every test process checks this as it collects, at the same time.
    probe = f"au-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` failed: {exc.stderr.strip() if exc.stderr else exc}"
    _ip("netns", "del", probe, check=False)
    return ""


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(argv, check=check, capture_output=True, text=True)


@dataclass
class Topology:
    tag: str
    networks: dict[str, str] = field(default_factory=dict)  # name -> the first three octets
    machines: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> network -> host octet

    def __enter__(self) -> Topology:
        self.teardown()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.teardown()

    # ------------------------------------------------------------------ building

    def network(self, name: str, prefix: str) -> None:
        """A network `prefix`.0/24; the host is `prefix`.254 on it."""
        bridge = self._bridge(name)
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{prefix}.254/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        self.networks[name] = prefix

    def machine(self, name: str, addresses: dict[str, int]) -> None:
        """A machine with a link to each network of `addresses`, at that host octet."""
        ns = self.netns(name)
        _ip("netns", "add", ns)
        _ip("link", "set", "lo", "up", netns=ns)
        for network, octet in addresses.items():
            outside, inside = self._veth(name, network), f"eth-{network}"[:15]
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
            _ip("link", "set", outside, "master", self._bridge(network))
            _ip("link", "set", outside, "up")
            _ip("addr", "add", f"{self.networks[network]}.{octet}/24", "dev", inside, netns=ns)
            _ip("link", "set", inside, "up", netns=ns)
        self.machines[name] = dict(addresses)

    # ------------------------------------------------------------------ using

    def address(self, machine: str, network: str) -> str:
        return f"{self.networks[network]}.{self.machines[machine][network]}"

    def host_address(self, network: str) -> str:
        return f"{self.networks[network]}.254"

    def netns(self, machine: str) -> str:
        return f"{self.tag}-{machine}"

    def argv(self, machine: str, argv: Sequence[str]) -> list[str]:
        """`argv` as run on `machine`."""
        return ["ip", "netns", "exec", self.netns(machine), *argv]

    def cut(self, machine: str, network: str) -> None:
        _ip("link", "set", self._veth(machine, network), "down")

    def heal(self, machine: str, network: str) -> None:
        _ip("link", "set", self._veth(machine, network), "up")

    def isolate(self, machine: str) -> None:
        """Every link of `machine` down: the machine is gone for the others."""
        for network in self.machines[machine]:
            self.cut(machine, network)

    def rejoin(self, machine: str) -> None:
        """Every link of `machine` up again."""
        for network in self.machines[machine]:
            self.heal(machine, network)

    # ------------------------------------------------------------------ names and teardown

    def _bridge(self, network: str) -> str:
        return f"{self.tag}b-{network}"[:15]

    def _veth(self, machine: str, network: str) -> str:
        name = f"{self.tag}{machine}-{network}"
        if len(name) > 15:
            raise ValueError(f"interface name {name!r} is longer than 15 characters: shorten the names")
        return name

    def teardown(self) -> None:
        """Remove every namespace and bridge of this tag, this run's or a killed run's."""
        if NETNS_DIR.is_dir():
            for entry in NETNS_DIR.iterdir():
                if entry.name.startswith(f"{self.tag}-"):
                    # The veth pairs go with the namespace that holds one end.
                    _ip("netns", "del", entry.name, check=False)
        # A namespace outlives its deletion while anything still holds it, and its links with it:
        # the host's end of each link and each bridge of the tag are deleted by name too.
        links = _ip("-o", "link", "show", check=False).stdout
        for line in links.splitlines():
            name = line.split(":", 2)[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith(self.tag) and "-" in name:  # bridges ({tag}b-...) and machines' links
                _ip("link", "del", name, check=False)
        self.networks.clear()
        self.machines.clear()
