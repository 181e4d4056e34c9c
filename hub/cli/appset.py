"""``hub appset``: ApplicationSets without a running hub.

``hub appset generate FILE`` prints the Applications the ApplicationSet(s) in FILE
produce, like ``argocd appset generate`` but offline; ``--params`` prints the param
sets the template sees instead (flat keys in fasttemplate mode, nested maps in
goTemplate mode), one per Application and in the same order, even when the template
itself is broken.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from generators.clusters import ClusterInfo
from generators.errors import GeneratorError
from generators.expand import Context, generate
from generators.spec import parse_appsets
from hub.cli import HubContext
from hub.cli.audit import audited
from hub.cli.output import dump
from hub.errors import HubUsageError
from hub.repos import LocalRepoReader, RepoMapping
from hub.sync.model import declared_source_specs

if TYPE_CHECKING:
    from hub.appsets import ActionKind, ReconcileReport


@click.group()
def appset() -> None:
    """Preview ApplicationSets: the Applications and params they generate."""


@appset.command("generate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--repo",
    "repos",
    multiple=True,
    metavar="URL=PATH",
    help="Read repoURL URL from the local Git repository PATH (a bare PATH serves every URL). "
    "Repeatable.",
)
@click.option(
    "--clusters",
    "clusters_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Argo CD cluster Secret manifests to use as the fleet "
    "(default: the clusters registered in the hub home, if any).",
)
@click.option(
    "--in-cluster",
    is_flag=True,
    help="Add Argo CD's implicit local cluster (in-cluster, https://kubernetes.default.svc).",
)
@click.option(
    "--new-git-file-globbing",
    is_flag=True,
    help="doublestar globs for git file generators (Argo CD's --enable-new-git-file-globbing).",
)
@click.option(
    "--params", "show_params", is_flag=True, help="Print the param sets, not the Applications."
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json", "table"]),
    default="yaml",
    show_default=True,
)
@click.pass_obj
def generate_cmd(
    obj: HubContext,
    file: Path,
    repos: tuple[str, ...],
    clusters_file: Path | None,
    in_cluster: bool,
    new_git_file_globbing: bool,
    show_params: bool,
    output: str,
) -> None:
    """Print what the ApplicationSet(s) in FILE generate, without a running hub."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HubUsageError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HubUsageError(f"{file}: cannot read: {exc}") from None
    appsets = parse_appsets(text, source=str(file))
    with LocalRepoReader(_repo_mapping(repos)) as reader:
        context = Context(
            clusters=tuple(_clusters(obj, clusters_file)),
            include_local_cluster=in_cluster,
            repo_reader=reader,
            new_git_file_globbing=new_git_file_globbing,
        )
        results = [generate(a, context) for a in appsets]

    for result in results:
        if result.generation_failed or (result.failed and not show_params):
            raise GeneratorError("; ".join(c.message for c in result.conditions))

    if show_params:
        param_sets = [_display(p.params) for r in results for p in r.params]
        for r in results:
            for c in r.conditions:
                click.echo(f"warning: {c.message}", err=True)
        _print(param_sets, output, _params_table)
        return

    manifests = [_display(m) for r in results for m in r.manifests]
    _print(manifests, output, _apps_table)
    problems = [c.message for r in results for c in r.conditions]
    if problems:
        for message in problems:
            click.echo(f"error: {message}", err=True)
        sys.exit(1)


def _repo_mapping(values: Iterable[str]) -> RepoMapping:
    by_url: dict[str, Path] = {}
    default: Path | None = None
    for value in values:
        url, sep, path = value.partition("=")
        if sep and (":" in url or "@" in url):
            by_url[url] = Path(path).expanduser()
        elif default is None:
            default = Path(value).expanduser()
        else:
            raise HubUsageError(
                f"--repo {value}: only one bare PATH may serve every repoURL; "
                "map the others with URL=PATH"
            )
    return RepoMapping(by_url=by_url, default=default)


def _clusters(obj: HubContext, clusters_file: Path | None) -> list[ClusterInfo]:
    if clusters_file is not None:
        from clusters.argo import load_cluster_secrets

        return [
            ClusterInfo(
                name=s.name,
                server=s.server,
                project=s.project or "",
                labels=dict(s.labels),
                annotations=dict(s.annotations),
            )
            for s in load_cluster_secrets(clusters_file)
        ]
    from hub.home import home_has_store, open_registry

    if not home_has_store(obj.home):
        return []
    registry = open_registry(obj.home)
    try:
        return [
            ClusterInfo(
                name=r.name,
                server=r.server,
                project=r.project or "",
                labels=dict(r.labels),
                annotations=dict(r.annotations),
            )
            for r in registry.list()
        ]
    finally:
        registry.close()


def _display(value: Any) -> Any:
    """JSON numbers as people write them: Go's float64 ``3`` prints as ``3``, not ``3.0``."""
    if (
        isinstance(value, float)
        and math.isfinite(value)
        and value.is_integer()
        and abs(value) < 2**53
    ):
        return int(value)
    if isinstance(value, Mapping):
        return {k: _display(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_display(v) for v in value]
    return value


def _print(items: list[Any], output: str, table: Any) -> None:
    if output == "json":
        click.echo(json.dumps(items, indent=2, ensure_ascii=False))
    elif output == "table":
        table(items)
    elif items and all(isinstance(i, Mapping) and i.get("kind") == "Application" for i in items):
        click.echo(yaml.safe_dump_all(items, sort_keys=False, allow_unicode=True), nl=False)
    else:
        click.echo(yaml.safe_dump(items, sort_keys=False, allow_unicode=True), nl=False)


def _columns(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _apps_table(apps: list[dict[str, Any]]) -> None:
    rows = [["NAME", "PROJECT", "DESTINATION", "SOURCE"]]
    for app in apps:
        spec = app.get("spec") or {}
        dest = spec.get("destination") or {}
        target = dest.get("server") or dest.get("name") or ""
        sources = declared_source_specs(spec)
        src = ""
        if sources:
            first = sources[0]
            where = first.get("path") or first.get("chart") or ""
            rev = first.get("targetRevision") or "HEAD"
            src = f"{first.get('repoURL', '')} {where}@{rev}"
            if len(sources) > 1:
                src += f" (+{len(sources) - 1})"
        rows.append(
            [
                str(app["metadata"].get("name", "")),
                str(spec.get("project", "")),
                f"{target}/{dest.get('namespace', '')}",
                src,
            ]
        )
    _columns(rows)


def _params_table(param_sets: list[dict[str, Any]]) -> None:
    from generators.params import flatten_to_strings

    rows = [["#", "PARAMS"]]
    for i, params in enumerate(param_sets):
        flat = flatten_to_strings(params)
        rows.append([str(i), " ".join(f"{k}={v}" for k, v in flat.items())])
    _columns(rows)


@appset.command("reconcile")
@click.option("--source", "source_name", metavar="NAME", help="Only this source (default: all).")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
)
@click.pass_obj
@audited("appset.reconcile", "source_name")
def reconcile_cmd(obj: HubContext, source_name: str | None, output: str) -> None:
    """Load the sources and run the ApplicationSet controller once against the store.

    Prints every Application created, updated, deleted, kept or skipped, with the reason.
    Resources on clusters are not touched here: Applications marked for cascading
    deletion wait for the hub's reconcilers. Exits 1 when a source or a set has an error.
    """
    from hub.appsets import reconcile_once

    report = reconcile_once(obj.home, source=source_name)
    if output == "text":
        _print_report(report)
    else:
        click.echo(dump(report.as_dict(), output), nl=False)
    if not report.ok:
        sys.exit(1)


def _print_report(report: ReconcileReport) -> None:
    for s in report.sources:
        sha = (s.sha or "-")[:12]
        if s.ok:
            click.echo(
                f"source {s.name} @ {sha}: {s.appsets} ApplicationSet(s), "
                f"{s.applications} Application(s), {s.projects} AppProject(s)"
            )
        elif s.held:
            click.echo(f"source {s.name} @ {sha}: HELD by the deletion guard, nothing deleted")
        else:
            click.echo(f"source {s.name} @ {sha}: NOT LOADED, last good set kept")
            for error in s.errors:
                click.echo(f"error: {error}", err=True)
    for plan in report.plans:
        what = "ApplicationSet" if plan.kind == "appset" else "source"
        suffix = " (deleted)" if plan.deleted else ""
        if plan.kind == "source" and not plan.actions and not plan.error:
            continue
        click.echo(f"{what} {plan.name}{suffix}:")
        for action in plan.actions:
            click.echo(f"  {action.describe()}")
        if plan.error:
            click.echo(f"error: {what} {plan.name}: {plan.error}", err=True)
    done: dict[ActionKind, str] = {
        "create": "created",
        "update": "updated",
        "delete": "deleted or deleting",
        "keep": "kept",
        "skip": "skipped",
        "disown": "disowned",
    }
    click.echo(
        "summary: "
        + ", ".join(f"{len(report.actions(kind))} {word}" for kind, word in done.items())
    )


# `list` and `get NAME` (a running hub, else the store) live in hub.cli.status.
from hub.cli.status import attach_appset_commands  # noqa: E402

attach_appset_commands(appset)
