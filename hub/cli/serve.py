"""``hub serve``: run the hub (ApplicationSet controller, cluster workers, HTTP API).

Start-up order, so that nothing is announced or recorded before it is true:

1. take the home's serve lock (``hub.api.client.hold_serve_lock``): a second hub on the
   same home exits 2 here, naming the running one, having touched nothing;
2. bind the HTTP API: a port in use is one line and exit 2;
3. write ``serve.json`` (the CLI finds the hub through it), then start the hub;
4. say "hub serving".
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import click

from clusters.eventloop import HUB_DEFAULT, anyio_backend_options, running_loop
from hub.cli import HubContext
from hub.controller import Hub, HubOptions, ReplicaConfig
from hub.errors import HubUsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ApiOptions:
    host: str
    port: int
    token: str | None = field(repr=False)
    webhook_secret: str | None = field(repr=False)
    allowed_hosts: tuple[str, ...]
    body_timeout: float
    webhook_interval: float
    require_auth: bool = False


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``--host``) only listens on this machine."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


async def _start_api(hub: Hub, api: ApiOptions) -> tuple[Any, str]:
    """Bind the HTTP API (JSON, dashboard, webhook, /metrics); returns (runner, URL)."""
    from aiohttp import web

    from hub.api.app import create_api_app
    from hub.api.token import load_or_create_token

    assert hub.metrics is not None
    app = create_api_app(
        home=hub.home,
        handle=hub,
        token=load_or_create_token(hub.home, api.token),
        metrics=hub.metrics,
        webhook_secret=api.webhook_secret,
        allowed_hosts=(api.host, *api.allowed_hosts),
        body_timeout=api.body_timeout,
        webhook_interval=api.webhook_interval,
        require_auth=api.require_auth or not is_loopback(api.host),
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, api.host, api.port)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise HubUsageError(
                f"port {api.port} on {api.host} is in use ({os.strerror(exc.errno)}); stop "
                "what listens there or choose another --port"
            ) from None
        raise HubUsageError(
            f"cannot listen on {api.host} port {api.port}: "
            f"{os.strerror(exc.errno) if exc.errno else exc}"
        ) from None
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else api.port  # --port 0: the one given
    host = f"[{api.host}]" if ":" in api.host else api.host
    return runner, f"http://{host}:{bound}"


async def _run(hub: Hub, api: ApiOptions) -> None:
    from hub.api.client import remove_serve_file, write_serve_file

    audit_log = logging.getLogger("hub.audit")
    if audit_log.getEffectiveLevel() > logging.INFO:
        audit_log.setLevel(logging.INFO)  # a line per action, even without -v
    runner, url = await _start_api(hub, api)
    try:
        # Where the CLI finds this hub (hub status, hub app sync NAME ...): the lock is
        # held and the API listens, so whoever reads this can use it.
        write_serve_file(hub.home, url=url)
        hub.api_url = url  # replicas publish it with their heartbeat (hub shard list)
        loop = running_loop()
        log.info("HTTP API on %s (event loop: %s)", url, loop)
        if loop == "uvloop":  # HUB_EVENT_LOOP=uvloop: clusters.kube cannot shrink them
            log.info("uvloop: each cluster's TLS connection keeps a 256 KiB read buffer")
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
            if hub.replica is not None:
                click.echo(
                    f"hub replica {hub.replica.replica_id} serving {len(hub.workers)} cluster(s) "
                    "by lease (see `hub shard list`); Ctrl-C or SIGTERM stops it",
                    err=True,
                )
            else:
                click.echo(
                    f"hub serving {len(hub.workers)} cluster(s); Ctrl-C or SIGTERM stops it",
                    err=True,
                )
            click.echo(f"HTTP API and dashboard on {url}/", err=True)
    finally:
        with anyio.CancelScope(shield=True):
            remove_serve_file(hub.home)
            await runner.cleanup()


def _secret(
    value: str | None, path: str | None, env: str, option: str, file_option: str
) -> str | None:
    """A secret from ``--X``, ``--X-file`` or ``$ENV`` (in that order; one of the first two)."""
    from hub.api.token import read_secret_file
    from hub.logs import redact

    if value is not None and path is not None:
        raise HubUsageError(f"give {option} or {file_option}, not both")
    if value is not None:
        redact(value)
        click.echo(
            f"warning: {option} on the command line is visible to other local users in the "
            f"process list; prefer {file_option} or ${env}",
            err=True,
        )
        return value
    if path is not None:
        return read_secret_file(path, file_option)
    from_env = os.environ.get(env, "").strip()
    if from_env:
        redact(from_env)
        return from_env
    return None


@click.command()
@click.option("--once", is_flag=True, help="One pass: load, generate, sync all, wait for health.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP API address.")
@click.option("--port", default=8080, show_default=True, type=int, help="HTTP API port.")
@click.option(
    "--token",
    default=None,
    help="API bearer token (visible in the process list: prefer --token-file or "
    "$HUB_API_TOKEN; default: the home's token file).",
)
@click.option(
    "--token-file",
    default=None,
    metavar="PATH",
    help="Read the API bearer token from this file.",
)
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
@click.option(
    "--webhook-secret",
    default=None,
    help="HMAC secret of Git push webhooks (prefer --webhook-secret-file or $HUB_WEBHOOK_SECRET).",
)
@click.option(
    "--webhook-secret-file",
    default=None,
    metavar="PATH",
    help="Read the webhook secret from this file.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also accept this name in the Host header (besides localhost, 127.0.0.1, ::1 and "
    "--host); repeatable.",
)
@click.option(
    "--body-timeout",
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds a client has to send a request body (else 408).",
)
@click.option(
    "--webhook-interval",
    default=10.0,
    show_default=True,
    type=float,
    help="At most one webhook-triggered Git fetch per repository per this many seconds.",
)
@click.option(
    "--require-auth",
    is_flag=True,
    help="Reads need a token too (always so when --host is not a loopback address).",
)
@click.option(
    "--lease",
    "lease_s",
    default=None,
    type=float,
    help="Replicas on a shared database: seconds a cluster lease lasts without renewal "
    "(default 15, or $HUB_LEASE_SECONDS).",
)
@click.option(
    "--replica-id",
    default=None,
    help="Replicas: this replica's id (default $HUB_REPLICA_ID, else host-pid-random).",
)
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
    token_file: str | None,
    git_poll: float,
    resync: float,
    new_git_file_globbing: bool,
    webhook_secret: str | None,
    webhook_secret_file: str | None,
    allowed_hosts: tuple[str, ...],
    body_timeout: float,
    webhook_interval: float,
    require_auth: bool,
    lease_s: float | None,
    replica_id: str | None,
    once_timeout: float,
) -> None:
    """Run the hub: keep every registered cluster synced to Git.

    Loads the sources (`hub source add`), expands their ApplicationSets, and runs one
    reconciler per cluster with a watch-based live cache. Clusters added or removed with
    `hub cluster` are picked up within seconds. With --once: one pass, exit 0 when every
    Application is Synced and Healthy, else 1.

    One hub per home: a second `hub serve` (or `--once`) on the same home exits 2.
    On a shared database (PostgreSQL) several `hub serve` replicas, each with its own
    home, share the clusters by leases (docs/replicas.md).
    """
    from hub.api.client import hold_serve_lock
    from hub.api.token import ENV_TOKEN, ENV_WEBHOOK_SECRET, check_token

    if git_poll <= 0 or resync <= 0:
        raise HubUsageError("--git-poll and --resync must be positive numbers of seconds")
    if body_timeout <= 0 or webhook_interval < 0:
        raise HubUsageError(
            "--body-timeout must be a positive and --webhook-interval a non-negative number "
            "of seconds"
        )
    if not 0 <= port <= 65535:
        raise HubUsageError(f"--port {port}: expected 0 to 65535")
    source = "--token" if token else f"--token-file {token_file}" if token_file else ENV_TOKEN
    token = _secret(token, token_file, ENV_TOKEN, "--token", "--token-file")
    if token is not None:
        check_token(token, source)
        from hub.auth.tokens import is_hub_token

        if is_hub_token(token):  # e.g. $HUB_API_TOKEN set for the CLI in this shell
            raise HubUsageError(
                f"{source} holds a user or project-role token (hub_...); the hub's own token "
                "acts as role:admin and must be another secret (unset it, or use --token-file)"
            )
    webhook_secret = _secret(
        webhook_secret,
        webhook_secret_file,
        ENV_WEBHOOK_SECRET,
        "--webhook-secret",
        "--webhook-secret-file",
    )
    options = HubOptions(
        git_poll_s=git_poll, resync_s=resync, new_git_file_globbing=new_git_file_globbing
    )
    api = ApiOptions(
        host=host,
        port=port,
        token=token,
        webhook_secret=webhook_secret,
        allowed_hosts=allowed_hosts,
        body_timeout=body_timeout,
        webhook_interval=webhook_interval,
        require_auth=require_auth,
    )
    from hub.leases import LeaseOptions, new_replica_id

    leases = LeaseOptions.for_lease(lease_s) if lease_s is not None else LeaseOptions.from_env()
    replica = ReplicaConfig(
        replica_id=replica_id.strip() if replica_id else new_replica_id(), leases=leases
    )
    # Without a home there is nothing to lock; the store below says to run `hub init`.
    lock_fd = hold_serve_lock(obj.home, api=not once) if obj.home.is_dir() else None
    try:
        _serve(obj, options, once=once, once_timeout=once_timeout, api=api, replica=replica)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # the process ends now anyway (but not under a test runner)


def _serve(
    obj: HubContext,
    options: HubOptions,
    *,
    once: bool,
    once_timeout: float,
    api: ApiOptions,
    replica: ReplicaConfig,
) -> None:
    from hub.home import open_store
    from hub.leases import is_shared, lease_holders

    loop_options = anyio_backend_options(HUB_DEFAULT)  # a bad HUB_EVENT_LOOP: before any lease
    if once:
        with open_store(obj.home) as probe:
            holders = lease_holders(probe) if is_shared(probe) else []
        if holders:
            # It would sync every cluster beside the replicas' leases.
            raise HubUsageError(
                "--once is for a single hub: this home's database is shared by replicas "
                f"holding leases ({', '.join(holders)}); stop them, or let them reconcile "
                "(`hub app sync` asks the owner)"
            )
        hub = Hub(obj.home, options)
        ok, problems = anyio.run(hub.run_once, once_timeout, backend_options=loop_options)
        for problem in problems:
            click.echo(f"not synced and healthy: {problem}", err=True)
        click.echo("all Applications Synced and Healthy" if ok else f"{len(problems)} problem(s)")
        raise click.exceptions.Exit(0 if ok else 1)
    from hub.metrics import Metrics, connection_states, store_app_counts, store_shards

    metrics_store = open_store(obj.home)
    # One process on SQLite (the serve lock guards it); replicas on a shared database.
    shared = is_shared(metrics_store)
    if shared:
        from hub.leases import LeaseStore

        try:
            # Refused (with who holds it) while a live replica runs under this id.
            LeaseStore(metrics_store, replica.replica_id, replica.leases).join()
        except BaseException:
            metrics_store.close()
            raise
    hub = Hub(obj.home, options, replica if shared else None)
    hub.metrics = Metrics(
        app_counts=store_app_counts(metrics_store),
        connections=connection_states(hub),
        shards=store_shards(metrics_store) if shared else None,
        sync_slots=hub.global_syncs.use,
    )
    try:
        anyio.run(_run, hub, api, backend_options=loop_options)
    finally:
        metrics_store.close()
