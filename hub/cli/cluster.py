"""``hub cluster ...``: register, list, label, check, remove, import and export clusters."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
import yaml

from clusters.argo import load_cluster_secrets, to_new_cluster, to_secret_manifest
from clusters.kubeconfig import default_kubeconfig_path, read_context
from clusters.registry import (
    DEFAULT_CHECK_TIMEOUT,
    ClusterRecord,
    NewCluster,
    Registry,
    parse_assignment,
    parse_label_changes,
    validate_name,
)
from hub.cli import HubContext
from hub.cli.audit import audited
from hub.cli.output import OUTPUT_OPTION, TABLE_WIDTH, clip, dump, render_table
from hub.home import open_registry

SAME_SERVER_OPTION = click.option(
    "--allow-same-server",
    "same_server",
    metavar="REASON",
    help="Register even though another cluster name has the same API server; REASON is "
    "kept in the gitops-hub/same-server-reason annotation.",
)

if TYPE_CHECKING:
    from hub.controller import CascadeOutcome

CHECK_TIMEOUT_OPTION = click.option(
    "--timeout",
    type=float,
    default=DEFAULT_CHECK_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the cluster's answer.",
)


@contextmanager
def _registry(obj: HubContext) -> Iterator[Registry]:
    registry = open_registry(obj.home)
    try:
        yield registry
    finally:
        registry.close()


def _check_cell(record: ClusterRecord) -> str:
    if record.last_check is None:
        return "-"
    return "ok" if record.last_check.ok else "failed"


def _labels_cell(record: ClusterRecord) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(record.labels.items())) or "-"


def _list_table(records: Sequence[ClusterRecord]) -> str:
    rows = [
        [r.name, r.server, r.server_version or "-", _check_cell(r), _labels_cell(r)]
        for r in records
    ]
    headers = ["NAME", "SERVER", "VERSION", "CHECK", "LABELS"]
    return render_table(headers, rows, TABLE_WIDTH, shrink_first=(1, 4))


def _get_table(record: ClusterRecord) -> str:
    check = record.last_check
    pairs = [
        ("Name", record.name),
        ("Server", record.server),
        ("Server version", record.server_version or "-"),
        ("Credential", record.credential_kind),
        ("Project", record.project or "-"),
        ("Namespaces", ",".join(record.namespaces) or "- (all)"),
        ("Labels", _labels_cell(record)),
        (
            "Annotations",
            ",".join(f"{k}={v}" for k, v in sorted(record.annotations.items())) or "-",
        ),
        (
            "Last check",
            "-"
            if check is None
            else f"{'ok' if check.ok else 'FAILED'} at "
            f"{check.time.isoformat().replace('+00:00', 'Z')}: {check.message}",
        ),
    ]
    return "\n".join(clip(f"{k + ':':<16}{v}", TABLE_WIDTH) for k, v in pairs)


@click.group("cluster")
def cluster() -> None:
    """Register the clusters the hub manages, with encrypted credentials."""


@cluster.command("add")
@click.argument("name")
@click.option(
    "--kubeconfig",
    "kubeconfig",
    type=click.Path(dir_okay=True, path_type=Path),
    help="Kubeconfig to read (default: $KUBECONFIG, else ~/.kube/config).",
)
@click.option("--context", help="Context to read (default: the current context).")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Cluster label; repeatable.")
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="K=V",
    help="Cluster annotation; repeatable.",
)
@click.option("--namespace", "namespaces", multiple=True, metavar="NS", help="Limit to namespaces.")
@click.option(
    "--cluster-resources", is_flag=True, help="With --namespace: manage cluster-scoped kinds too."
)
@click.option(
    "--project",
    help="Argo CD project the cluster is scoped to (what permitOnlyProjectScopedClusters checks).",
)
@click.option("--skip-check", is_flag=True, help="Register without contacting the cluster.")
@click.option("--upsert", is_flag=True, help="Replace a cluster of the same name.")
@SAME_SERVER_OPTION
@CHECK_TIMEOUT_OPTION
@click.pass_obj
@audited("cluster.add")
def add(
    obj: HubContext,
    name: str,
    kubeconfig: Path | None,
    context: str | None,
    labels: tuple[str, ...],
    annotations: tuple[str, ...],
    namespaces: tuple[str, ...],
    cluster_resources: bool,
    project: str | None,
    skip_check: bool,
    upsert: bool,
    same_server: str | None,
    timeout: float,
) -> None:
    """Register cluster NAME from a kubeconfig context.

    Unless --skip-check, the hub first reads /version with the credential and
    refuses an unreachable or unauthorised cluster. The credential is stored
    encrypted, sealed to the server and TLS settings; name, server, labels and
    version in clear. An API server already registered under another name is
    refused unless --allow-same-server says why.
    """
    validate_name(name)
    label_map = dict(parse_assignment(text) for text in labels)
    annotation_map = dict(parse_assignment(text, "annotation") for text in annotations)
    for ns in namespaces:
        validate_name(ns, "namespace")
    ctx = read_context(kubeconfig or default_kubeconfig_path(), context)
    new = NewCluster(
        name=name,
        server=ctx.server,
        tls=ctx.tls,
        credential=ctx.credential,
        labels=label_map,
        annotations=annotation_map,
        namespaces=namespaces,
        cluster_resources=cluster_resources,
        project=project,
    )
    with _registry(obj) as registry:
        existed = upsert and registry.find(name) is not None
        record = registry.add(
            new, upsert=upsert, check=not skip_check, timeout=timeout, same_server=same_server
        )
    version = f" ({record.server_version})" if record.server_version else ""
    verb = "updated" if existed else "registered"
    suffix = " without a connectivity check" if skip_check else ""
    click.echo(f"cluster {record.name} {verb}: {record.server}{version}{suffix}")


@cluster.command("list")
@OUTPUT_OPTION
@click.pass_obj
def list_(obj: HubContext, output: str) -> None:
    """List registered clusters: name, server, version, last check, labels."""
    with _registry(obj) as registry:
        records = registry.list()
    if output == "table":
        if records:
            click.echo(_list_table(records))
        else:
            click.echo("no clusters registered (add one with `hub cluster add`)")
    else:
        click.echo(dump([r.as_dict() for r in records], output), nl=False)


@cluster.command("get")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_obj
def get(obj: HubContext, name: str, output: str) -> None:
    """Show one cluster (never its credential)."""
    with _registry(obj) as registry:
        record = registry.get(name)
    if output == "table":
        click.echo(_get_table(record))
    else:
        click.echo(dump(record.as_dict(), output), nl=False)


@cluster.command("label")
@click.argument("name")
@click.argument("changes", nargs=-1, required=True, metavar="K=V|K-...")
@click.pass_obj
@audited("cluster.label")
def label(obj: HubContext, name: str, changes: tuple[str, ...]) -> None:
    """Set (K=V, overwriting) or remove (K-) labels of cluster NAME."""
    sets, removes = parse_label_changes(changes)
    with _registry(obj) as registry:
        record = registry.set_labels(name, sets, removes)
    click.echo(f"cluster {name} labels: {_labels_cell(record)}")


@cluster.command("check")
@click.argument("names", nargs=-1)
@CHECK_TIMEOUT_OPTION
@OUTPUT_OPTION
@click.pass_obj
def check(obj: HubContext, names: tuple[str, ...], timeout: float, output: str) -> None:
    """Re-test connectivity of NAMES (default: every cluster) and store the results.

    Every record is tried: one whose credential cannot be opened (wrong master key,
    corrupt row, server edited outside the hub) is reported FAILED and nothing is sent
    for it. Exits 1 when any cluster fails its check.
    """
    with _registry(obj) as registry:
        results = registry.check(list(names) or None, timeout=timeout)
    if output == "table":
        if not results:
            click.echo("no clusters registered")
        rows = [[r.name, "ok" if r.ok else "FAILED", r.message] for r in results]
        if rows:
            click.echo(
                render_table(["NAME", "RESULT", "MESSAGE"], rows, TABLE_WIDTH, clip_last=False)
            )
    else:
        doc = [
            {
                "name": r.name,
                "ok": r.ok,
                "message": r.message,
                "serverVersion": r.server_version,
            }
            for r in results
        ]
        click.echo(dump(doc, output), nl=False)
    failed = [r.name for r in results if not r.ok]
    if failed:
        click.echo(
            f"error: {len(failed)} cluster(s) failed the check: {', '.join(failed)}", err=True
        )
        raise click.exceptions.Exit(1)


def remove_cluster(registry: Registry, name: str, *, yes: bool) -> ClusterRecord | None:
    """Confirm (unless ``yes``) and remove; None when the user declined.

    Kept apart from the command so that ``rm --cascade`` can run its own steps first.
    """
    record = registry.get(name)
    if not yes and not click.confirm(
        f"Remove cluster {record.name} ({record.server}) and its stored credential?",
        default=False,
        err=True,
    ):
        return None
    return registry.remove(name)


@cluster.command("rm")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--cascade",
    is_flag=True,
    help="First delete every resource the hub manages on the cluster, and wait for it.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="With --cascade and a running hub: seconds to wait for it to delete.",
)
@click.pass_obj
@audited("cluster.rm")
def rm(obj: HubContext, name: str, yes: bool, cascade: bool, timeout: float) -> None:
    """Unregister cluster NAME, delete its stored credential and its Applications.

    Like Argo CD when a cluster Secret goes away, the workloads on the cluster are left
    running (no longer managed by the hub). With --cascade the cluster is first fenced (a
    running hub stops every sync on it), then the resources are deleted, by the running
    hub if there is one, else by this command, through the same deletion path as an
    Application with the resources finalizer; the cluster is removed only once the
    cluster, listed afresh, holds nothing of them (but resources marked Delete=false)."""
    with ExitStack() as held:
        # Replicas: a cluster lease this command took to delete is kept until the cluster
        # is removed, so that no replica starts a worker on it in between.
        outcome = _cascade(obj, name, yes=yes, timeout=timeout, hold=held) if cascade else None
        if cascade:
            yes = True  # confirmed above
        with _registry(obj) as registry:
            removed = remove_cluster(registry, name, yes=yes)
    if removed is None:
        click.echo("aborted; nothing removed", err=True)
        raise click.exceptions.Exit(1)
    # After the credential is gone: a reconcile running in between would find the
    # destination unknown and strip the finalizers anyway (same outcome).
    pruned = _prune_apps(obj, name)
    records = f"{len(pruned)} Application record(s) removed from the hub: {', '.join(pruned)}"
    if outcome is not None:
        kept = ""
        if outcome.kept:
            kept = (
                f", except {len(outcome.kept)} kept by Delete=false (now unmanaged): "
                + "; ".join(outcome.kept)
            )
        click.echo(f"every resource the hub managed on {name} was deleted (by {outcome.by}){kept}")
        click.echo(f"cluster {name} removed" + (f"; {records}" if pruned else ""))
    elif pruned:
        click.echo(f"cluster {name} removed")
        click.echo(
            f"{records}; their workloads on {name} were left running and are no longer managed"
        )
    else:
        click.echo(f"cluster {name} removed")
        click.echo(f"no Applications targeted {name}; nothing on the cluster was touched")


def _cascade(
    obj: HubContext, name: str, *, yes: bool, timeout: float, hold: ExitStack
) -> CascadeOutcome:
    """Fence, delete and check (``delete_cluster_resources``); exits 1, keeping the
    cluster, unless everything is gone."""
    from hub.controller import delete_cluster_resources

    with _registry(obj) as registry:
        record = registry.get(name)
    if not yes and not click.confirm(
        f"Delete every resource the hub manages on {record.name} ({record.server}), then "
        "remove the cluster?",
        default=False,
        err=True,
    ):
        click.echo("aborted; nothing removed", err=True)
        raise click.exceptions.Exit(1)
    outcome = delete_cluster_resources(obj.home, name, timeout_s=timeout, hold=hold)
    if outcome.done:
        return outcome
    for problem in outcome.remaining:
        click.echo(f"error: {problem}", err=True)
    click.echo(
        f"cluster {name} kept, and fenced (the hub starts no sync on it): "
        f"{len(outcome.remaining)} problem(s) above, resources of its Applications remain; "
        "they stay marked for deletion (a running hub keeps deleting them). Run this again, "
        f"or `hub cluster rm {name}` to remove the cluster and leave what remains running",
        err=True,
    )
    raise click.exceptions.Exit(1)


def _prune_apps(obj: HubContext, name: str) -> list[str]:
    from hub.apps import AppStore
    from hub.home import open_store

    with open_store(obj.home) as store:
        return [app.name for app in AppStore(store).prune_cluster(name)]


@cluster.command("import")
@click.option(
    "-f",
    "--filename",
    "filename",
    required=True,
    type=click.Path(path_type=Path),
    help="YAML file of Argo CD cluster Secrets (several documents allowed).",
)
@click.option("--skip-check", is_flag=True, help="Register without contacting the clusters.")
@click.option("--upsert", is_flag=True, help="Replace clusters of the same names.")
@SAME_SERVER_OPTION
@CHECK_TIMEOUT_OPTION
@click.pass_obj
@audited("cluster.import", "filename")
def import_(
    obj: HubContext,
    filename: Path,
    skip_check: bool,
    upsert: bool,
    same_server: str | None,
    timeout: float,
) -> None:
    """Register the clusters of Argo CD declarative cluster Secrets, all or none.

    A Secret whose server is already registered (or appears twice in the file) under
    another name is refused unless --allow-same-server says why, or the Secret already
    carries the gitops-hub/same-server-reason annotation."""
    secrets = load_cluster_secrets(filename)
    if not secrets:
        click.echo(f"{filename}: no cluster Secrets found; nothing imported")
        return
    new = [to_new_cluster(s, str(filename)) for s in secrets]
    with _registry(obj) as registry:
        records = registry.add_many(
            new, upsert=upsert, check=not skip_check, timeout=timeout, same_server=same_server
        )
    for record in records:
        click.echo(f"cluster {record.name} imported: {record.server}")


@cluster.command("export")
@click.argument("names", nargs=-1, required=True)
@click.option("--show-secrets", is_flag=True, help="Include the credentials (in clear!).")
@click.option("--namespace", default="argocd", show_default=True, help="Namespace of the Secrets.")
@click.pass_obj
def export(obj: HubContext, names: tuple[str, ...], show_secrets: bool, namespace: str) -> None:
    """Write Argo CD cluster Secrets for NAMES to stdout.

    Without --show-secrets the config holds only the TLS trust settings.
    """
    with _registry(obj) as registry:
        manifests = []
        for name in names:
            record = registry.get(name)
            creds = registry.credentials(name) if show_secrets else None
            manifests.append(
                to_secret_manifest(record, registry.tls_settings(name), creds, namespace=namespace)
            )
    click.echo(yaml.safe_dump_all(manifests, sort_keys=False), nl=False)
    if not show_secrets:
        click.echo("# credentials omitted; pass --show-secrets to include them", err=True)
