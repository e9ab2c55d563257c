"""An embedded RabbitMQ node, the Celery broker of ``make test-rabbitmq`` (Debian's ``rabbitmq-server``).

Not part of ``make run`` or ``make test``: it starts only when AUTEUR_DEVSTACK_BROKER=rabbitmq and
CELERY_BROKER_URL is unset. Everything of the node is its own: its name, its AMQP, distribution
and epmd ports, its data, logs, config and Erlang cookie under its data directory, every listener
on loopback, no plugin; the system's /etc/rabbitmq is never read. Only ``install`` (``make
test-rabbitmq``) runs apt-get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack import DevStackError
from devstack.servers import EmbeddedServer

SERVER_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # the node itself, not the su wrapper
PACKAGE = "rabbitmq-server"
NODE_NAME = "auteur@localhost"  # unique per epmd, and each node has an epmd of its own
# RabbitMQ closes a channel whose delivery stays unacknowledged this long. With late acks a task
# holds its message while it runs, so this must exceed the longest task (celeryconfig.py: 30 min).
CONSUMER_TIMEOUT_MS = 60 * 60 * 1000
# Publishers are blocked when free disk falls under this; RabbitMQ's default (50 MB) already,
# stated so that a test machine's small disk is not mistaken for a broker fault.
DISK_FREE_LIMIT = "50MB"


def installed() -> bool:
    return SERVER_SCRIPT.exists()


def install() -> str:
    """Install Debian's rabbitmq-server if it is missing (as root, or through sudo); its version.

    The package's own service is not started (a container's policy-rc.d refuses it; elsewhere it
    is stopped again): the stack runs its own node."""
    if not installed():
        if shutil.which("apt-get") is None:
            raise DevStackError(f"{PACKAGE} is not installed and there is no apt-get to install it")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", PACKAGE], check=True, env=env)
    answer = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", PACKAGE], capture_output=True, text=True)
    return answer.stdout.strip() or "unknown"


@dataclass
class RabbitMQServer(EmbeddedServer):
    env_var: str = "CELERY_BROKER_URL"
    dist_port: int = 0
    epmd_port: int = 0
    start_timeout: float = 90.0  # an Erlang VM's boot, on a machine busy with tests

    def prepare(self) -> None:
        if not installed():
            raise DevStackError(f"{PACKAGE} is not installed: `make test-rabbitmq` installs it")
        super().prepare()
        (self.data_dir / "log").mkdir(exist_ok=True)
        (self.data_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            f"consumer_timeout = {CONSUMER_TIMEOUT_MS}\n"
            f"disk_free_limit.absolute = {DISK_FREE_LIMIT}\n"
        )
        (self.data_dir / "enabled_plugins").write_text("[].\n")

    def command(self) -> list[str]:
        return [str(SERVER_SCRIPT)]

    def node_env(self) -> dict[str, str]:
        data = self.data_dir
        return {
            **os.environ,
            "HOME": str(data),  # the Erlang cookie
            "RABBITMQ_NODENAME": NODE_NAME,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(data / "mnesia"),
            "RABBITMQ_LOG_BASE": str(data / "log"),
            "RABBITMQ_LOGS": "-",  # to the server's log file (this process's stdout)
            "RABBITMQ_CONFIG_FILE": str(data / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(data / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(data / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(data / "enabled_plugins"),
        }

    def popen_kwargs(self) -> dict[str, object]:
        return {"env": self.node_env()}

    def wait_ready(self) -> None:
        import amqp

        def ping() -> bool:
            connection = amqp.Connection(f"127.0.0.1:{self.port}", userid="guest", password="guest",
                                         connect_timeout=2)
            try:
                connection.connect()
                connection.close()
            except BaseException:
                connection.collect()
                raise
            return True

        self.poll_until_answers("rabbitmq-server", ping, (OSError, amqp.exceptions.AMQPError), 0.2)

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        # erl starts its epmd as a daemon outside the node's process group; it outlives the node.
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        if self.epmd_port and Path(epmd).exists():
            subprocess.run([epmd, "-kill"], env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=10)

    def url(self) -> str:
        # guest may log in from loopback only, which is where the node listens.
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"
