"""``hub serve``: run the hub (ApplicationSet controller, cluster workers, HTTP API)."""

from __future__ import annotations

import logging
import signal
from functools import partial
from typing import Any

import anyio
import anyio.abc
import click

from hub.cli import HubContext
from hub.controller import Hub, HubOptions
from hub.errors import HubUsageError

log = logging.getLogger(__name__)


async def _serve_api(
    hub: Hub, *, host: str, port: int, token: str | None, webhook_secret: str | None
) -> None:
    """The one call site of the HTTP API (JSON, dashboard, webhook, /metrics)."""
    from aiohttp import web

    from hub.api.app import create_api_app
    from hub.api.client import remove_serve_file, write_serve_file
    from hub.api.token import load_or_create_token

    assert hub.metrics is not None
    app = create_api_app(
        home=hub.home,
        handle=hub,
        token=load_or_create_token(hub.home, token),
        metrics=hub.metrics,
        webhook_secret=webhook_secret,
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port  # --port 0: the one given
        url = f"http://{host}:{bound}"
        # Where the CLI finds this hub (hub status, hub app sync NAME ...).
        write_serve_file(hub.home, url=url)
        log.info("HTTP API on %s", url)
        click.echo(f"HTTP API and dashboard on {url}/", err=True)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            remove_serve_file(hub.home)
            await runner.cleanup()


async def _run(hub: Hub, **api: Any) -> None:
    async with anyio.create_task_group() as tg:

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("%s received", signal.Signals(signum).name)
                    await hub.shutdown()
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_signals)
        await tg.start(hub.run)
        click.echo(
            f"hub serving {len(hub.workers)} cluster(s); Ctrl-C or SIGTERM stops it", err=True
        )
        tg.start_soon(partial(_serve_api, hub, **api))


@click.command()
@click.option("--once", is_flag=True, help="One pass: load, generate, sync all, wait for health.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP API address.")
@click.option("--port", default=8080, show_default=True, type=int, help="HTTP API port.")
@click.option("--token", default=None, help="API bearer token (default: the home's token file).")
@click.option(
    "--git-poll",
    "git_poll",
    default=180.0,
    show_default=True,
    type=float,
    help="Seconds between Git polls (with jitter).",
)
@click.option(
    "--resync",
    default=180.0,
    show_default=True,
    type=float,
    help="Seconds between full re-compares (with jitter).",
)
@click.option(
    "--new-git-file-globbing",
    is_flag=True,
    help="Git files generator: Argo's new globbing (** crosses directories).",
)
@click.option("--webhook-secret", default=None, help="HMAC secret of Git push webhooks.")
@click.option(
    "--timeout",
    "once_timeout",
    default=300.0,
    show_default=True,
    type=float,
    help="With --once: per-sync timeout (seconds).",
)
@click.pass_obj
def serve(
    obj: HubContext,
    once: bool,
    host: str,
    port: int,
    token: str | None,
    git_poll: float,
    resync: float,
    new_git_file_globbing: bool,
    webhook_secret: str | None,
    once_timeout: float,
) -> None:
    """Run the hub: keep every registered cluster synced to Git.

    Loads the sources (`hub source add`), expands their ApplicationSets, and runs one
    reconciler per cluster with a watch-based live cache. Clusters added or removed with
    `hub cluster` are picked up within seconds. With --once: one pass, exit 0 when every
    Application is Synced and Healthy, else 1.
    """
    if git_poll <= 0 or resync <= 0:
        raise HubUsageError("--git-poll and --resync must be positive numbers of seconds")
    if webhook_secret:
        from hub.logs import redact

        redact(webhook_secret)
    if token:
        from hub.logs import redact

        redact(token)
    options = HubOptions(
        git_poll_s=git_poll, resync_s=resync, new_git_file_globbing=new_git_file_globbing
    )
    if once:
        hub = Hub(obj.home, options)
        ok, problems = anyio.run(hub.run_once, once_timeout)
        for problem in problems:
            click.echo(f"not synced and healthy: {problem}", err=True)
        click.echo("all Applications Synced and Healthy" if ok else f"{len(problems)} problem(s)")
        raise click.exceptions.Exit(0 if ok else 1)
    from hub.home import open_store
    from hub.metrics import Metrics, connection_states, store_app_counts

    metrics_store = open_store(obj.home)
    hub = Hub(obj.home, options)
    hub.metrics = Metrics(
        app_counts=store_app_counts(metrics_store), connections=connection_states(hub)
    )
    try:
        anyio.run(
            partial(_run, hub, host=host, port=port, token=token, webhook_secret=webhook_secret)
        )
    finally:
        metrics_store.close()
