"""Loopback ports for servers started in another process (``hub serve`` by ``hub demo``;
in the tests also PostgreSQL and ``hub sim serve --processes``), which bind them a second
or more after they were picked.

A port the kernel picked for ``bind(("127.0.0.1", 0))`` comes from the ephemeral range
(``net.ipv4.ip_local_port_range``), the same range every outgoing connection takes its
local port from: with two pytest workers talking to their sims and hubs, one of those
connections took such a port before the server bound it (seen in a full run). Ports
are picked below that range instead, where only a server asking for that number binds,
and checked free.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20000  # above the well-known ports and the usual fixed-port services


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive loopback ports that are free now, below the
    ephemeral range (from it, as before, when the range leaves no room below it)."""
    top = _ephemeral_start() - count
    for _ in range(200):
        if top > LOWEST:
            port = random.randrange(LOWEST, top)
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
        if all(_free(port + k) for k in range(count)):
            return port
    raise RuntimeError(f"no {count} consecutive free loopback ports found")
