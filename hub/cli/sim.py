"""``hub sim ...``: simulated Kubernetes clusters for the demo, tests and experiments."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

import click

from clusters.errors import ClusterUsageError
from clusters.eventloop import SIM_DEFAULT, chosen_loop
from clusters.eventloop import run as run_loop
from clusters.sim import compiled
from clusters.sim.server import RunningSim, SimConfig, cluster_names
from clusters.sim.shards import ShardedSim
from clusters.sim.store import DEFAULT_GC_DELAY
from hub.cli import HubContext

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@click.group()
def sim() -> None:
    """Simulated clusters that speak the Kubernetes API (for demos and tests)."""


@sim.command()
@click.option(
    "--clusters",
    "count",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="How many clusters (named sim-1..sim-N).",
)
@click.option("--names", metavar="A,B,C", help="Cluster names instead of sim-1..sim-N.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port (0: any free port; with --state-dir the last one when free).",
)
@click.option(
    "--kubeconfig-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the kubeconfig (default: HOME/sim/kubeconfig).",
)
@click.option(
    "--admin-token-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the admin API's bearer token to this file (mode 0600); with "
    "--state-dir it is in DIR/admin-token anyway.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep objects, CA and tokens here across restarts (default: memory only).",
)
@click.option(
    "--ready-delay",
    type=click.FloatRange(min=0),
    default=0.2,
    show_default=True,
    help="Seconds before simulated pods become Ready.",
)
@click.option(
    "--gc-delay",
    type=click.FloatRange(min=0),
    default=DEFAULT_GC_DELAY,
    show_default=True,
    help="Seconds before garbage collection, foreground/orphan deletion and namespace "
    "clean-up take their next step (kube-controller-manager's lag).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Shard the clusters over this many server processes, each on its own port "
    "(PORT, PORT+1, ... with --port); one kubeconfig points to the right one.",
)
@click.option(
    "--anonymous-auth/--no-anonymous-auth",
    default=True,
    show_default=True,
    help="As kube-apiserver's flag: requests without a token are system:anonymous (403 "
    "except /version and the health checks) rather than 401.",
)
@click.option(
    "--http2/--no-http2",
    default=False,
    show_default=True,
    help="Offer HTTP/2 (ALPN h2) beside HTTP/1.1, as kube-apiserver does: kubectl and the "
    "hub then carry every request and watch of a cluster on one connection.",
)
@click.pass_obj
def serve(
    obj: HubContext,
    count: int,
    names: str | None,
    host: str,
    port: int,
    kubeconfig_out: Path | None,
    admin_token_out: Path | None,
    state_dir: Path | None,
    ready_delay: float,
    gc_delay: float,
    processes: int,
    anonymous_auth: bool,
    http2: bool,
) -> None:
    """Serve simulated clusters on one HTTPS port until interrupted (Ctrl-C).

    Each cluster lives under https://HOST:PORT/clusters/NAME with its own bearer token and
    is one context (named after it) in the kubeconfig written at start.
    """
    chosen_loop(SIM_DEFAULT)  # a bad HUB_EVENT_LOOP: one line here, not one per shard
    chosen: int | tuple[str, ...] = count
    if names is not None:
        chosen = tuple(n.strip() for n in names.split(",") if n.strip())
        if not chosen:
            raise ClusterUsageError("--names needs at least one name")
    kubeconfig = kubeconfig_out or obj.home / "sim" / "kubeconfig"
    config = SimConfig(
        names=cluster_names(chosen),
        host=host,
        port=port,
        state_dir=state_dir,
        kubeconfig_path=kubeconfig,
        admin_token_path=admin_token_out,
        ready_delay=ready_delay,
        gc_delay=gc_delay,
        anonymous_auth=anonymous_auth,
        http2=http2,
        freeze_gc=True,  # this process serves the simulator only
    )
    if processes > 1:
        _serve_sharded(config, processes)
    else:
        run_loop(_serve(config), default=SIM_DEFAULT)


def _announce(config: SimConfig, servers: list[tuple[str, str]], where: str) -> None:
    contexts = [name for name, _ in servers]
    click.echo(f"hub sim: serving {len(contexts)} cluster(s) on {where}")
    for name, server in servers:
        click.echo(f"  {name:<20} {server}")
    click.echo(f"kubeconfig: {config.kubeconfig_path} (contexts: {', '.join(contexts) or 'none'})")
    if config.state_dir is not None:
        click.echo(f"state: {config.state_dir}")
    if contexts:
        click.echo(
            f"try:  kubectl --kubeconfig {config.kubeconfig_path} --context {contexts[0]} get ns"
        )
    build = compiled.state()
    click.echo(
        f"code: {'compiled' if build.compiled else 'interpreted'} ({build.reason})", err=True
    )
    click.echo("Ctrl-C to stop.", err=True)


def _serve_sharded(config: SimConfig, processes: int) -> None:
    sharded = ShardedSim(config, processes)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (SIGNALS)}
    try:
        sharded.start()
        urls = ", ".join(sharded.url(s) for s in sharded.shards)
        _announce(
            config,
            [(e.name, e.server) for e in sharded.entries()],
            f"{len(sharded.shards)} processes ({urls})",
        )
        code = sharded.run(lambda text: click.echo(text, err=True), stop.is_set)
        click.echo("hub sim: stopping", err=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sharded.stop()
    if code:
        raise SystemExit(code)


async def _serve(config: SimConfig) -> None:
    running = RunningSim(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        await running.start()
        _announce(config, [(e.name, e.server) for e in running.entries()], running.url)
        await stop.wait()
        click.echo("hub sim: stopping", err=True)
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        await running.stop()
