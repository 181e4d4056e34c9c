"""``hub sim serve --processes N``: the clusters sharded over N server processes.

One asyncio loop carries every cluster of a process (requests, watch fan-out, the
simulated controllers), so one process is one core at most. Sharding gives the simulator
more than one core: each shard is a child process serving a contiguous slice of the
clusters on its own port, under one CA and one admin token; the parent writes one
kubeconfig whose server URLs point to the right process, keeps it current when a shard
adds or removes a cluster through its admin API, and stops the shards when it stops.

Parent and shard talk over the shard's stdin and stdout, one JSON document a line: the
parent sends the shard's configuration (with the CA key and the admin token, which is why
they do not travel in argv); the shard answers ``ready`` with its port and clusters, then
``clusters`` after every membership change. A shard stops on SIGTERM or when its stdin
closes (the parent is gone); it ignores SIGINT so that Ctrl-C in a terminal, which reaches
the whole process group, stops the shards through the parent in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from clusters.errors import ClusterUsageError
from clusters.eventloop import SIM_DEFAULT
from clusters.eventloop import run as run_loop
from clusters.sim.kubeconfig import ClusterEntry, write_kubeconfig
from clusters.sim.server import RunningSim, SimConfig, new_admin_token
from clusters.sim.tls import CertificateAuthority

START_TIMEOUT = 600.0  # seconds for every shard to listen (1,000 clusters take a few)


def split(names: tuple[str, ...], processes: int) -> list[tuple[str, ...]]:
    """Contiguous slices of ``names``, sizes differing by one at most, none empty."""
    count = max(1, min(processes, len(names)))
    size, extra = divmod(len(names), count)
    out, start = [], 0
    for k in range(count):
        end = start + size + (1 if k < extra else 0)
        out.append(names[start:end])
        start = end
    return out


@dataclass
class _Shard:
    index: int
    proc: subprocess.Popen[bytes]
    port: int = 0
    entries: list[ClusterEntry] = field(default_factory=list)
    buffer: bytes = b""


def _config_json(config: SimConfig) -> dict[str, Any]:
    data = asdict(config)
    data["names"] = list(config.names)
    for key in ("state_dir", "kubeconfig_path", "admin_token_path"):
        data.pop(key, None)
    return data


class ShardedSim:
    """The parent: starts the shards, writes the kubeconfig, stops them."""

    def __init__(self, config: SimConfig, processes: int) -> None:
        if processes < 1:
            raise ClusterUsageError(f"--processes must be 1 or more, not {processes}")
        if config.state_dir is not None:
            raise ClusterUsageError(
                "--state-dir works with one process only: drop --processes or --state-dir"
            )
        self.config = config
        self.processes = processes
        self.ca = CertificateAuthority.generate()
        self.admin_token = new_admin_token()
        self.shards: list[_Shard] = []
        self._selector = selectors.DefaultSelector()

    # -- facts -----------------------------------------------------------------------------

    def url(self, shard: _Shard) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{shard.port}"

    def entries(self) -> list[ClusterEntry]:
        return [e for shard in self.shards for e in shard.entries]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        if cfg.admin_token_path is not None:
            from clusters.sim.server import _atomic_write

            cfg.admin_token_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(cfg.admin_token_path, self.admin_token.encode())
        try:
            for index, names in enumerate(split(cfg.names, self.processes)):
                port = cfg.port + index if cfg.port else 0
                shard_cfg = _config_json(cfg) | {"names": list(names), "port": port}
                proc = subprocess.Popen(
                    [sys.executable, "-m", "clusters.sim.shards"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(
                    json.dumps(
                        {
                            "index": index,
                            "config": shard_cfg,
                            "ca_cert": self.ca.cert_pem.decode(),
                            "ca_key": self.ca.key_pem.decode(),
                            "admin_token": self.admin_token,
                        }
                    ).encode()
                    + b"\n"
                )
                proc.stdin.flush()  # stdin stays open: its end tells the shard we are gone
                shard = _Shard(index=index, proc=proc)
                self.shards.append(shard)
                self._selector.register(proc.stdout, selectors.EVENT_READ, shard)
            deadline = time.monotonic() + START_TIMEOUT
            while any(not s.port for s in self.shards):
                if time.monotonic() > deadline:
                    raise ClusterUsageError("simulator shards did not start in time")
                if not self.poll(1.0):
                    raise ClusterUsageError(
                        "a simulator shard exited while starting (see its messages above)"
                    )
        except BaseException:
            self.stop()
            raise
        self.write_kubeconfig()

    def poll(self, timeout: float) -> bool:
        """Read what the shards said; False when one of them has gone."""
        alive = True
        for key, _ in self._selector.select(timeout):
            shard: _Shard = key.data
            # Raw reads: a buffered reader could hold a second line the selector never
            # reports again.
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                self._selector.unregister(key.fileobj)
                alive = False
                continue
            shard.buffer += chunk
            while b"\n" in shard.buffer:
                line, _, shard.buffer = shard.buffer.partition(b"\n")
                self._hear(shard, json.loads(line))
        return alive and all(s.proc.poll() is None for s in self.shards)

    def _hear(self, shard: _Shard, message: dict[str, Any]) -> None:
        shard.port = int(message["port"])
        shard.entries = [
            ClusterEntry(name=str(n), server=str(u), token=str(t))
            for n, u, t in message["clusters"]
        ]
        if all(s.port for s in self.shards):
            self.write_kubeconfig()

    def write_kubeconfig(self) -> None:
        if self.config.kubeconfig_path is not None:
            write_kubeconfig(self.config.kubeconfig_path, self.entries(), self.ca.cert_pem)

    def stop(self) -> None:
        for shard in self.shards:
            if shard.proc.poll() is None:
                shard.proc.terminate()
        for shard in self.shards:
            try:
                shard.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                shard.proc.kill()
                shard.proc.wait()
            for stream in (shard.proc.stdin, shard.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._selector.close()

    def run(self, echo: Callable[[str], None], stopping: Callable[[], bool]) -> int:
        """Serve until ``stopping()``; 1 when a shard died on its own, else 0."""
        while not stopping():
            if not self.poll(0.5):
                if stopping():
                    break
                echo("hub sim: a shard process exited; stopping the others")
                return 1
        return 0


# -- the shard (child process) -----------------------------------------------------------------


async def _shard_main(payload: dict[str, Any]) -> None:
    config_data = dict(payload["config"])
    config_data["names"] = tuple(config_data["names"])
    config = SimConfig(**config_data)
    ca = CertificateAuthority(
        cert_pem=payload["ca_cert"].encode(), key_pem=payload["ca_key"].encode()
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def say(event: str, entries: list[ClusterEntry]) -> None:
        message = {
            "event": event,
            "port": running.port,
            "clusters": [[e.name, e.server, e.token] for e in entries],
        }
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    running = RunningSim(
        config,
        ca=ca,
        admin_token=str(payload["admin_token"]),
        on_clusters=lambda entries: say("clusters", entries),
    )
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def parent_gone() -> None:
        if not sys.stdin.readline():
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), parent_gone)
    try:
        await running.start()
        say("ready", running.entries())
        await stop.wait()
    finally:
        await running.stop()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    line = sys.stdin.readline()
    if not line:
        return
    run_loop(_shard_main(json.loads(line)), default=SIM_DEFAULT)


if __name__ == "__main__":
    main()
