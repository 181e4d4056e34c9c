"""``hub app``: Applications.

The commands here are one-shots that read an Application from a file (``-f APP.yaml``) and
run the sync engine against a registered cluster directly — the same engine the hub's
reconcilers run. Commands that ask the running hub about its Applications (``list``,
``get NAME``...) belong to the same group and take a name instead of ``-f``.

Exit codes: ``diff`` 0 in sync, 1 differences, 2 or more on error (like ``kubectl diff``);
``sync`` and ``rollback`` 0 only when the app ends Synced and Healthy, 1 otherwise, 2 for
bad input.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import click

from clusters.connect import connect
from clusters.errors import ClusterError
from clusters.kube import KubeClient
from clusters.registry import Registry
from generators.errors import GeneratorError
from hub.appsets import cluster_ref, project_scope
from hub.cli import HubContext
from hub.cli.audit import audited
from hub.errors import HubError, HubUsageError
from hub.home import load_keyring, open_store
from hub.logs import scrub
from hub.repos import RepoCache
from hub.services import open_services
from hub.sync.diff import JqRunner, SyncStatus
from hub.sync.engine import (
    EventKind,
    OperationResult,
    ProgressEvent,
    SyncRequest,
    diff_application_blocking,
    sync_application_blocking,
)
from hub.sync.health import HealthRules
from hub.sync.health_rules import load_health_rules
from hub.sync.history import SyncHistory, Trigger, iter_history_lines
from hub.sync.model import Application, AppSpecError, parse_application_yaml
from hub.sync.projects import ProjectScope

FILE_OPTION = click.option(
    "-f",
    "--file",
    "app_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The Application manifest (argoproj.io/v1alpha1 Application).",
)
CLUSTER_OPTION = click.option(
    "--cluster",
    metavar="NAME",
    help="Registered cluster to use (default: spec.destination name or server).",
)


@click.group("app")
def app() -> None:
    """Applications: diff, sync, history and rollback of an Application file."""


# ---------------------------------------------------------------- wiring


def load_app(path: Path) -> Application:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AppSpecError(f"{path}: cannot read: {exc}") from None
    return parse_application_yaml(text, source_file=str(path))


def cluster_for(application: Application, registry: Registry, override: str | None) -> str:
    """``--cluster``, else spec.destination.name, else the cluster registered at its server."""
    if override:
        return registry.get(override).name
    dest = application.destination
    if dest.name:
        return registry.get(dest.name).name
    if dest.server:
        wanted = dest.server.rstrip("/")
        for record in registry.list():
            if record.server.rstrip("/") == wanted:
                return record.name
        raise HubUsageError(
            f"{application.source_file}: spec.destination.server {dest.server} is not a "
            "registered cluster; register it (`hub cluster add`) or pass --cluster NAME"
        )
    raise HubUsageError(
        f"{application.source_file}: spec.destination names no cluster; pass --cluster NAME"
    )


@dataclass
class _Env:
    kube: KubeClient
    repos: RepoCache
    history: SyncHistory
    jq: JqRunner
    health_rules: HealthRules
    project: ProjectScope


@contextmanager
def _env(obj: HubContext, application: Application, cluster: str | None) -> Iterator[_Env]:
    health_rules = load_health_rules(obj.home)  # the hub's own rules, as `hub serve` uses
    with open_services(obj.home) as parts:
        name = cluster_for(application, parts.registry, cluster)
        kube = KubeClient(connect(parts.registry, name))
        # The AppProjects `hub serve` enforces bind a sync started here as well.
        project = project_scope(
            parts.apps, [cluster_ref(c) for c in parts.registry.list()], application, name
        )
        yield _Env(
            kube=kube,
            repos=parts.repos,
            history=parts.history,
            jq=parts.jq,
            health_rules=health_rules,
            project=project,
        )
        parts.repos.clean()  # exported trees past their age or the size budget


def _user() -> str:
    try:
        return f"user:{getpass.getuser()}"
    except (KeyError, OSError):
        return "user"


# ---------------------------------------------------------------- diff


@app.command("diff")
@FILE_OPTION
@CLUSTER_OPTION
@click.option("--revision", metavar="REV", help="Compare this revision instead of targetRevision.")
@click.option(
    "--local",
    "local_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Compare the manifests in this directory instead of Git.",
)
@click.pass_obj
def diff(
    obj: HubContext,
    app_file: Path,
    cluster: str | None,
    revision: str | None,
    local_dir: Path | None,
) -> None:
    """Show how the cluster differs from Git (exit 0 in sync, 1 differences, 2 error)."""
    try:
        application = load_app(app_file)
        with _env(obj, application, cluster) as env:
            result = diff_application_blocking(
                env.kube,
                application,
                sources=env.repos,
                revision=revision,
                local_dir=local_dir,
                jq_runner=env.jq,
                history=env.history,
            )
    except (HubError, ClusterError, GeneratorError) as exc:
        # kubectl diff: 1 means "differences", so every error is 2 or more.
        click.echo(f"error: {scrub(str(exc))}", err=True)
        raise click.exceptions.Exit(max(2, getattr(exc, "exit_code", 2))) from None
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    text = result.comparison.diff_text()
    if text:
        click.echo(text, nl=False)
    if result.comparison.status is SyncStatus.SYNCED:
        raise click.exceptions.Exit(0)
    raise click.exceptions.Exit(1)


# ---------------------------------------------------------------- sync


class _Printer:
    """Progress lines: phase headers, wave headers, one line per resource result."""

    def __init__(self) -> None:
        self.phase: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind is EventKind.PHASE:
            click.echo(f"{event.phase}")
        elif event.kind is EventKind.WAVE:
            click.echo(f"  wave {event.wave}")
        elif event.kind is EventKind.RESOURCE and event.resource is not None:
            key = event.resource
            name = f"{key.namespace}/{key.name}" if key.namespace else key.name
            kind = f"{key.group}/{key.kind}" if key.group else key.kind
            parts = [
                f"    {event.action or '':<6}",
                f"{kind} {name}",
                f"{event.result or ''}",
            ]
            if event.health:
                parts.append(event.health)
            if event.message:
                parts.append(event.message)
            click.echo("  ".join(parts))
        elif event.kind is EventKind.RETRY:
            click.echo(f"retry: {scrub(event.message)}")
        elif event.kind is EventKind.WARNING:
            click.echo(f"warning: {scrub(event.message)}", err=True)
        elif event.kind is EventKind.OPERATION and event.result is None:
            click.echo(event.message)


def _report(result: OperationResult, *, dry_run: bool) -> None:
    if dry_run:
        click.echo(result.plan_text, nl=False)
    click.echo(f"Operation:   {result.phase.value}: {scrub(result.message)}")
    click.echo(f"Revision:    {result.revision}")
    if result.sync_status is not None:
        click.echo(f"Sync status: {result.sync_status.value}")
    if result.health is not None:
        click.echo(f"Health:      {result.health.value}")
    if result.history_id is not None:
        click.echo(f"History id:  {result.history_id}")


def _exit(result: OperationResult, *, dry_run: bool) -> None:
    ok = result.phase.value == "Succeeded" if dry_run else result.synced_and_healthy
    if not ok:
        raise click.exceptions.Exit(result.exit_code if result.exit_code > 1 else 1)


TIMEOUT_OPTION = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="Fail the sync when it has not finished after S seconds (default: no limit).",
)


@app.command("sync")
@FILE_OPTION
@CLUSTER_OPTION
@click.option("--revision", metavar="REV", help="Sync this revision instead of targetRevision.")
@click.option(
    "--prune/--no-prune",
    default=None,
    help="Delete what Git no longer declares (default: syncPolicy.automated.prune).",
)
@click.option("--dry-run", is_flag=True, help="Plan and dry-run on the server; write nothing.")
@TIMEOUT_OPTION
@click.option(
    "--self-heal",
    is_flag=True,
    help="Sync only the OutOfSync resources, without hooks, as the hub's self-heal does.",
)
@click.option(
    "--no-force-conflicts",
    is_flag=True,
    help="Fail on server-side apply field conflicts instead of taking the fields over.",
)
@click.pass_obj
@audited("app.sync", "app_file")
def sync(
    obj: HubContext,
    app_file: Path,
    cluster: str | None,
    revision: str | None,
    prune: bool | None,
    dry_run: bool,
    timeout: float | None,
    self_heal: bool,
    no_force_conflicts: bool,
) -> None:
    """Sync the Application: phases, waves, hooks, health gates (exit 0 = Synced and Healthy)."""
    application = load_app(app_file)
    request = SyncRequest(
        revision=revision,
        prune=prune,
        dry_run=dry_run,
        timeout_s=timeout,
        force_conflicts=not no_force_conflicts,
        trigger=Trigger.SELF_HEAL if self_heal else Trigger.USER,
        initiated_by="self-heal" if self_heal else _user(),
        self_heal=self_heal,
    )
    with _env(obj, application, cluster) as env:
        result = sync_application_blocking(
            env.kube,
            application,
            replace(request, project=env.project),
            sources=env.repos,
            history=env.history,
            jq_runner=env.jq,
            health_rules=env.health_rules,
            on_event=_Printer(),
        )
    _report(result, dry_run=dry_run)
    _exit(result, dry_run=dry_run)


# ---------------------------------------------------------------- history and rollback


@app.command("history")
@FILE_OPTION
@click.pass_obj
def history(obj: HubContext, app_file: Path) -> None:
    """The Application's sync history (newest last)."""
    application = load_app(app_file)
    with open_store(obj.home) as store:
        entries = SyncHistory(store, lambda: load_keyring(obj.home)).entries(application.name)
    for line in iter_history_lines(entries):
        click.echo(line)


@app.command("rollback")
@FILE_OPTION
@click.argument("history_id", type=int)
@CLUSTER_OPTION
@click.option("--prune", is_flag=True, help="Delete what that revision did not declare.")
@TIMEOUT_OPTION
@click.pass_obj
@audited("app.rollback", "app_file")
def rollback(
    obj: HubContext,
    app_file: Path,
    history_id: int,
    cluster: str | None,
    prune: bool,
    timeout: float | None,
) -> None:
    """Re-apply the manifests of history entry HISTORY_ID (the app is then OutOfSync
    against Git until Git is reverted, as in Argo CD)."""
    application = load_app(app_file)
    if application.sync_policy.auto_sync:
        raise HubUsageError(
            f"{app_file}: rollback cannot be started while automated sync is enabled (it would "
            "sync back to Git at once); disable syncPolicy.automated first, as Argo CD requires"
        )
    with _env(obj, application, cluster) as env:
        entry = env.history.get(application.name, history_id)
        manifests = env.history.manifests(application.name, history_id)
        click.echo(f"rolling back {application.name} to history id {entry.id} ({entry.revision})")
        result = sync_application_blocking(
            env.kube,
            application,
            SyncRequest(
                revision=entry.revision,
                prune=prune,
                timeout_s=timeout,
                trigger=Trigger.ROLLBACK,
                initiated_by=_user(),
                manifests=manifests,
                source=entry.source,
                project=env.project,
            ),
            sources=env.repos,
            history=env.history,
            jq_runner=env.jq,
            health_rules=env.health_rules,
            on_event=_Printer(),
        )
    _report(result, dry_run=False)
    _exit(result, dry_run=False)


# The NAME-based forms (a running hub, else the store) live in hub.cli.status.
from hub.cli.status import attach_app_commands  # noqa: E402

attach_app_commands(app)
