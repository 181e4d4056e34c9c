"""``hub source add|list|rm``: where the hub reads ApplicationSets, Applications and AppProjects."""

from __future__ import annotations

import click

from hub.apps import AppStore
from hub.cli import HubContext
from hub.cli.audit import audited
from hub.cli.output import OUTPUT_OPTION, dump, render_table
from hub.errors import HubUsageError
from hub.home import open_store
from hub.services import open_services
from hub.sources import (
    DEFAULT_REVISION,
    SourceError,
    SourceStore,
    load_source,
    make_source,
)


@click.group("source")
def source() -> None:
    """Git locations whose ApplicationSet, Application and AppProject files the hub loads."""


@source.command("add")
@click.argument("name")
@click.option("--repo", required=True, metavar="URL|PATH", help="Git URL or local repository.")
@click.option("--path", "path", default="", metavar="DIR", help="Directory inside the repo.")
@click.option(
    "--revision",
    default=DEFAULT_REVISION,
    show_default=True,
    help="Branch, tag or commit (HEAD: the repository's default branch).",
)
@click.pass_obj
@audited("source.add")
def add(obj: HubContext, name: str, repo: str, path: str, revision: str) -> None:
    """Add source NAME. Its manifests are read and checked now (nothing is applied); a
    source that cannot be read or holds an invalid file is refused."""
    src = make_source(name, repo, path, revision)
    # An uninitialised home fails here, before any clone.
    with open_services(obj.home) as parts:
        sources = SourceStore(parts.store)
        if any(r.source.name == src.name for r in sources.list()):
            raise HubUsageError(
                f"source {src.name!r} already exists; remove it first with "
                f"`hub source rm {src.name}`"
            )
        load = load_source(src, parts.git)
        if load.sha is None or load.errors:
            # Refuse now rather than store a source the controller would only report on.
            raise SourceError("; ".join(load.errors) + "; source not added")
        sources.add(src)
    click.echo(
        f"source {src.name} added: {src.repo} {src.path or '/'}@{src.revision} "
        f"({load.sha[:12]}): {len(load.appsets)} ApplicationSet(s), "
        f"{len(load.applications)} Application(s), {len(load.projects)} AppProject(s) "
        f"in {load.files} file(s)"
    )
    click.echo("run `hub appset reconcile` (or a running hub) to apply it")


@source.command("list")
@OUTPUT_OPTION
@click.pass_obj
def list_(obj: HubContext, output: str) -> None:
    """List sources with the commit in force and the last error."""
    with open_store(obj.home) as store:
        records = SourceStore(store).list()
    if output != "table":
        click.echo(dump([r.as_dict() for r in records], output), nl=False)
        return
    if not records:
        click.echo("no sources (add one with `hub source add`)")
        return
    rows = [
        [
            r.source.name,
            r.source.repo,
            r.source.path or "/",
            r.source.revision,
            (r.last_sha or "-")[:12],
            r.state if r.held_sha is None else f"held {r.held_sha[:7]}",
        ]
        for r in records
    ]
    click.echo(
        render_table(
            ["NAME", "REPO", "PATH", "REVISION", "SHA", "STATE"],
            rows,
            shrink_first=(1,),
        )
    )
    for r in records:
        if r.last_error:
            click.echo(f"{r.source.name}: {r.last_error}", err=True)


@source.command("confirm")
@click.argument("name")
@click.pass_obj
@audited("source.confirm")
def confirm(obj: HubContext, name: str) -> None:
    """Let the revision of source NAME held by the deletion guard through.

    A revision that would delete all of a source's Applications (more than half of more
    than 10) is held until confirmed. Only the revision held now is confirmed: a later
    different one is guarded again."""
    with open_store(obj.home) as store:
        sources = SourceStore(store)
        record = sources.get(name)
        sha = sources.confirm(name)
    click.echo(f"source {name}: revision {sha[:12]} confirmed")
    click.echo(f"  {record.last_error}")
    click.echo(
        "it is applied at the next reconcile (a running hub's next Git poll, or "
        "`hub appset reconcile`), deleting what it no longer declares"
    )


@source.command("rm")
@click.argument("name")
@click.pass_obj
@audited("source.rm")
def rm(obj: HubContext, name: str) -> None:
    """Remove source NAME. At the next reconcile its ApplicationSets and Applications are
    handled as if their files had been deleted from Git."""
    with open_store(obj.home) as store:
        removed = SourceStore(store).remove(name)
        apps = AppStore(store)
        sets = apps.list_appsets(source=name)
        plain = apps.list_apps(source=name, plain=True)
    click.echo(f"source {removed.name} removed")
    if sets or plain:
        click.echo(
            f"at the next reconcile its {len(sets)} ApplicationSet(s) and {len(plain)} plain "
            "Application(s) are removed as if deleted from Git (their Applications follow "
            "each set's applicationsSync policy and finalizers)"
        )
