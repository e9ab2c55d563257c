"""A TCP relay that makes a link slow and unreliable: added latency and dropped connections.

    python bench/fault_relay.py --listen 127.0.0.1:16379 --to 10.77.2.1:6379 --control faults.json

A client connects to `--listen` instead of the server; every byte is passed on both ways. What
the link suffers is read from the `--control` file (JSON, re-read every 0.1 s; absent or
empty: a perfect link), so a drill can turn faults on and off while connections stay up:

    {"delay_ms": 200, "drop_per_s": 0.05}
    {"stall": true}

- `delay_ms`: each chunk is held that long before it is passed on, in each direction (so a
  round trip takes twice that); the order of the bytes and the throughput are kept.
- `drop_per_s`: each connection is reset (RST to both ends, as when a middlebox drops the
  flow) with this probability in every second it is open.
- `stall`: nothing is passed on either way (a partition: packets dropped, no reset), and a new
  connection is accepted and then hears nothing. What was sent meanwhile is held and passed on,
  in order, once the stall ends, as TCP retransmits it when a partition heals.

It runs where the client runs (on the client's machine, bench/netns.py), so only that client's
link suffers. Counts of connections and drops are printed when it stops (SIGTERM or SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CHUNK = 65536


@dataclass
class Faults:
    delay_ms: float = 0.0
    drop_per_s: float = 0.0
    stall: bool = False

    @classmethod
    def read(cls, path: Path | None) -> Faults:
        if path is None:
            return cls()
        try:
            data = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            return cls()
        return cls(float(data.get("delay_ms") or 0), float(data.get("drop_per_s") or 0), bool(data.get("stall")))


class Relay:
    def __init__(self, target: tuple[str, int], control: Path | None, seed: int) -> None:
        self.target, self.control = target, control
        self.faults = Faults.read(control)
        self.rng = random.Random(seed)  # noqa: S311 - fault injection, not security
        self.connections = self.dropped = self.refused = 0

    async def watch_control(self) -> None:
        while True:
            self.faults = Faults.read(self.control)
            await asyncio.sleep(0.1)

    async def serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
        except (OSError, TimeoutError):
            self.refused += 1
            reset(client_w)
            return
        pipes = [
            asyncio.create_task(self.pipe(client_r, server_w)),
            asyncio.create_task(self.pipe(server_r, client_w)),
            asyncio.create_task(self.dropper()),
        ]
        done, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if pipes[2] in done:
            self.dropped += 1
            reset(client_w)
            reset(server_w)
        else:
            for writer in (client_w, server_w):
                with contextlib.suppress(OSError):
                    writer.close()

    async def dropper(self) -> None:
        """Returns when this connection is to be dropped."""
        while True:
            await asyncio.sleep(1)
            if self.rng.random() < self.faults.drop_per_s:
                return

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Pass chunks on, each `delay_ms` after it arrived: a queue keeps their order without
        holding the next chunk's read behind the previous chunk's wait."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                while self.faults.stall:
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((time.monotonic() + self.faults.delay_ms / 1000, data))
                if not data:
                    break
            await sender
            with contextlib.suppress(OSError):
                writer.write_eof()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a reset, not a clean end: the peer sees ECONNRESET, as from a dropped flow."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main_async(args: argparse.Namespace) -> Relay:
    relay = Relay(address(args.to), args.control, args.seed)
    host, port = address(args.listen)
    server = await asyncio.start_server(relay.serve, host, port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(relay.watch_control())
    print(f"relay {args.listen} -> {args.to}", flush=True)
    async with server:
        await stop.wait()
    watcher.cancel()
    return relay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True, help="HOST:PORT the client connects to")
    parser.add_argument("--to", required=True, help="HOST:PORT of the server")
    parser.add_argument("--control", type=Path, default=None, help="JSON file of the faults in force")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    relay = asyncio.run(main_async(args))
    print(json.dumps({"connections": relay.connections, "dropped": relay.dropped, "refused": relay.refused}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
