"""``hub status`` and the name-based ``hub app`` / ``hub appset`` views of the fleet.

``hub status`` prints one row per cluster, the ApplicationSet x cluster matrix and fleet
totals (``hub.rollups``), from a running hub's API when one answers, else read-only from
the store. Table output fits 80 columns and is coloured only on a terminal; ``-o json``
and ``-o yaml`` print the API's documented ``FleetStatus`` (docs/status.md).

``--fail-on outofsync|degraded|unknown`` (repeatable) exits 3 when a shown Application
matches, after printing; 1 and 2 stay errors and usage errors.

The ``app_*`` / ``appset_*`` commands at the bottom are the NAME-based subcommands of
``hub app`` and ``hub appset`` (attached to those groups in hub/cli/app.py and
hub/cli/appset.py).
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from hub.api.views import AppFilter
from hub.cli import HubContext
from hub.cli.fleet_views import Fleet, open_fleet
from hub.cli.output import OUTPUT_OPTION, TABLE_WIDTH, dump, emit, fit, paint
from hub.errors import HubError, HubUsageError
from hub.rollups import FAIL_ON_EXIT_CODE, HEALTH_STATUSES, SYNC_STATUSES, FailOn

HEALTH_COLOURS = {
    "Healthy": "green",
    "Progressing": "blue",
    "Degraded": "red",
    "Suspended": "white",
    "Missing": "yellow",
    "Unknown": "bright_black",
}
SYNC_COLOURS = {"Synced": "green", "OutOfSync": "yellow", "Unknown": "bright_black"}
CONN_COLOURS = {"Connected": "green", "Unreachable": "red", "Unauthorized": "red"}
SYNC_SHORT = {"Synced": "S", "OutOfSync": "O", "Unknown": "U"}

SERVER_OPTION = click.option(
    "--server",
    metavar="URL",
    help="A running hub's API (default: the one recorded in $HUB_HOME/serve.json, if up).",
)


# ---------------------------------------------------------------- text helpers


def age(timestamp: str, now: datetime) -> str:
    try:
        t = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = max(0, int((now - t).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# ---------------------------------------------------------------- hub status tables

# 12 + 1 + 11 + 1 + 4 + 3*4 + 1 + 6*4 + 1 + 13 = 80
_CLUSTER_HEADER = (
    f"{'CLUSTER':<12} {'CONNECTION':<11} {'APPS':>4}"
    f"{'SYN':>4}{'OOS':>4}{'UNK':>4} "
    f"{'HEA':>4}{'PRO':>4}{'DEG':>4}{'SUS':>4}{'MIS':>4}{'UNK':>4} "
    f"{'LAST SYNC':<13}"
)


def cluster_lines(doc: dict[str, Any], now: datetime) -> list[str]:
    lines = [_CLUSTER_HEADER.rstrip()]
    for c in doc["clusters"]:
        a = c["applications"]
        state = c["connection"]["state"]
        last = c["lastSync"]
        when = "never" if last is None else f"{age(last['time'], now)} {last['revision'][:7]}"
        sync = "".join(f"{a['sync'].get(s, 0):>4}" for s in SYNC_STATUSES)
        health_cells = []
        for h in ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"):
            n = a["health"].get(h, 0)
            cell = f"{n:>4}"
            health_cells.append(paint(cell, "red", bold=True) if h == "Degraded" and n else cell)
        oos = a["sync"].get("OutOfSync", 0)
        if oos:
            sync = f"{a['sync'].get('Synced', 0):>4}" + paint(f"{oos:>4}", "yellow") + sync[8:]
        lines.append(
            f"{fit(c['name'], 12)} {_state_word(state, CONN_COLOURS, 11)} "
            f"{a['total']:>4}{sync} {''.join(health_cells)} {fit(when, 13)}".rstrip()
        )
    lines.append("sync SYN..UNK: Synced, OutOfSync, Unknown")
    lines.append("health HEA..UNK: Healthy, Progressing, Degraded, Suspended, Missing, Unknown")
    return lines


def matrix_lines(doc: dict[str, Any]) -> list[str]:
    """The ApplicationSet x cluster matrix, in blocks of as many columns as fit 80 chars."""
    clusters: list[str] = doc["matrix"]["clusters"]
    rows: list[dict[str, Any]] = doc["matrix"]["rows"]
    if not rows:
        return ["(no ApplicationSets)"]
    first = 16
    cell = 14
    per_block = max(1, (TABLE_WIDTH - first) // cell)
    lines: list[str] = []
    for start in range(0, max(1, len(clusters)), per_block):
        block = clusters[start : start + per_block]
        if lines:
            lines.append("")
        lines.append((fit("APPSET", first) + "".join(fit(c, cell) for c in block)).rstrip())
        for row in rows:
            label = "(no appset)" if row["appset"] is None else row["appset"]
            cells = {c["cluster"]: c for c in row["cells"]}
            text = fit(label, first)
            for cluster in block:
                c = cells.get(cluster)
                if c is None:
                    text += fit("-", cell)
                    continue
                word = fit(f"{SYNC_SHORT.get(c['sync'], '?')}/{c['health']}", cell - 1) + " "
                shown = word.rstrip()
                text += (
                    paint(shown, HEALTH_COLOURS.get(c["health"]), bold=c["health"] == "Degraded")
                    + word[len(shown) :]
                )
            lines.append(text.rstrip())
    lines.append("cells: S/O/U = Synced/OutOfSync/Unknown, then the worst health")
    return lines


def totals_lines(doc: dict[str, Any]) -> list[str]:
    t = doc["totals"]
    a = t["applications"]
    sync = ", ".join(f"{s} {a['sync'].get(s, 0)}" for s in SYNC_STATUSES)
    health = ", ".join(f"{h} {a['health'].get(h, 0)}" for h in HEALTH_STATUSES)
    text = (
        f"fleet: {t['clusters']} clusters, {a['total']} applications "
        f"({t['unassigned']} without a registered cluster); sync: {sync}; health: {health}"
    )
    return textwrap.wrap(text, TABLE_WIDTH - 1, subsequent_indent="  ")


def problem_lines(doc: dict[str, Any]) -> list[str]:
    """Sources and sets in error: their Applications are kept, so the counts look fine."""
    problems = doc.get("problems") or []
    if not problems:
        return []
    lines = [paint(f"problems: {len(problems)} (Applications kept as they were)", "red")]
    for p in problems:
        what = "ApplicationSet" if p["kind"] == "appset" else p["kind"]
        lines += textwrap.wrap(
            f"{what} {p['name']}: {p['message']}", TABLE_WIDTH - 1, initial_indent="  ",
            subsequent_indent="    ",
        )  # fmt: skip
    return lines


def status_table(doc: dict[str, Any], *, source: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    filters = doc["filters"]
    scope = " ".join(f"{k}={v}" for k, v in filters.items() if v) or "whole fleet"
    origin = "running hub" if source == "api" else "store (no hub running)"
    lines = [f"{scope} — from the {origin}", ""]
    lines += cluster_lines(doc, now)
    lines += ["", *matrix_lines(doc), "", *totals_lines(doc)]
    problems = problem_lines(doc)
    if problems:
        lines += ["", *problems]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- hub status


@click.command("status")
@click.option("--appset", metavar="NAME", help="Only this ApplicationSet.")
@click.option("--cluster", metavar="NAME", help="Only this cluster.")
@OUTPUT_OPTION
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, type=float, help="--watch period.")
@click.option(
    "--fail-on",
    "fail_on",
    multiple=True,
    type=click.Choice([f.value for f in FailOn]),
    help=f"Exit {FAIL_ON_EXIT_CODE} when a shown Application is OutOfSync / Degraded / "
    "Unknown, or (error) a source or ApplicationSet is in error (repeatable).",
)
@SERVER_OPTION
@click.option("--offline", is_flag=True, help="Read the store even when a hub runs (read-only).")
@click.pass_obj
def status(
    obj: HubContext,
    appset: str | None,
    cluster: str | None,
    output: str,
    watch: bool,
    interval: float,
    fail_on: tuple[str, ...],
    server: str | None,
    offline: bool,
) -> None:
    """Fleet status: per-cluster rollups, the ApplicationSet x cluster matrix, totals."""
    if watch and fail_on:
        raise HubUsageError("--watch runs until interrupted; use --fail-on without it")
    if interval <= 0:
        raise HubUsageError("--interval must be a positive number of seconds")
    conditions = [FailOn(f) for f in fail_on]
    with open_fleet(obj.home, server=server, offline=offline) as fleet:
        if not watch:
            doc = _status_doc(fleet, appset, cluster, conditions)
            replicas = _replicas(obj.home)
            if replicas is not None and output != "table":
                doc = {**doc, "replicas": replicas}
            _print_status(doc, output, fleet.kind, _store_description(obj.home))
            if replicas is not None and output == "table":
                from hub.cli.shard import shard_lines

                click.echo("\nreplicas (hub shard list):")
                click.echo("\n".join(shard_lines(replicas)))
            reasons = _reasons(fleet, doc, appset, cluster, conditions)
            for reason in reasons:
                click.echo(f"fail-on: {reason}", err=True)
            if reasons:
                raise click.exceptions.Exit(FAIL_ON_EXIT_CODE)
            return
        _watch(
            lambda: _status_doc(fleet, appset, cluster, conditions), output, fleet.kind, interval
        )


def _status_doc(
    fleet: Fleet, appset: str | None, cluster: str | None, conditions: Sequence[FailOn]
) -> dict[str, Any]:
    return fleet.status(appset=appset, cluster=cluster)


def _reasons(
    fleet: Fleet,
    doc: dict[str, Any],
    appset: str | None,
    cluster: str | None,
    conditions: Sequence[FailOn],
) -> list[str]:
    if not conditions:
        return []
    # Cells show the worst state of their apps; the reasons name each app, so read them.
    apps = fleet.apps(AppFilter(cluster=cluster, appset=appset))
    from hub.rollups import AppState, Counts, FleetStatus, Problem, fail_on

    states = tuple(
        AppState(
            name=a["name"], appset=a["appset"], cluster=a["cluster"], sync=a["sync"],
            health=a["health"],
        )
        for a in apps
    )  # fmt: skip
    snapshot = FleetStatus(
        generated_at=datetime.now(UTC),
        appset_filter=appset,
        cluster_filter=cluster,
        clusters=(),
        matrix_clusters=(),
        matrix=(),
        totals=Counts(),
        unassigned=0,
        apps=states,
        problems=tuple(
            Problem(kind=p["kind"], name=p["name"], message=p["message"])
            for p in doc.get("problems") or []
        ),
    )
    return fail_on(snapshot, conditions)


def _replicas(home: Path) -> dict[str, Any] | None:
    """The replicas section (``hub.leases.shard_report``) when the store is shared by
    replicas (PostgreSQL); None on SQLite, where one hub serves."""
    from hub.home import open_store
    from hub.leases import is_shared, shard_report

    try:
        store = open_store(home)
    except HubError:
        return None
    with store:
        return shard_report(store) if is_shared(store) else None


def _store_description(home: Path) -> str:
    """Which backend holds the state (a PostgreSQL URL without its password)."""
    from hub.home import database_location, describe_location

    location = database_location(home)
    return (
        "sqlite (hub.db in the hub home)"
        if isinstance(location, Path)
        else (describe_location(location))
    )


def _print_status(doc: dict[str, Any], output: str, source: str, store: str = "") -> None:
    if output == "table":
        click.echo(status_table(doc, source=source), nl=False)
        if store:  # wrapped like the table: a long URL must not break the 80 columns
            click.echo(
                textwrap.fill(f"state database: {store}", TABLE_WIDTH - 1, break_on_hyphens=False)
            )
    else:
        click.echo(dump(doc, output), nl=False)


def _watch(read: Callable[[], dict[str, Any]], output: str, source: str, interval: float) -> None:
    tty = sys.stdout.isatty()
    try:
        while True:
            doc = read()
            if tty:
                click.echo("\x1b[H\x1b[2J", nl=False)  # home + clear: redraw in place
            elif output == "table":
                click.echo("")
            _print_status(doc, output, source)
            time.sleep(interval)
    except KeyboardInterrupt:
        return


# ---------------------------------------------------------------- hub app (by NAME)


def _state_word(value: str | None, colours: dict[str, str], width: int) -> str:
    """``value`` padded to ``width``, styled without styling the padding (so a trailing
    pad can still be stripped)."""
    text = fit(value or "", width)
    word = text.rstrip()
    return paint(word, colours.get(value or ""), bold=value == "Degraded") + text[len(word) :]


def app_list_table(items: Sequence[dict[str, Any]]) -> str:
    # 26 + 1 + 12 + 1 + 12 + 1 + 10 + 1 + 11 + 1 + 4 = 80
    lines = [f"{'NAME':<26} {'CLUSTER':<12} {'APPSET':<12} {'SYNC':<10} {'HEALTH':<11} REV"]
    for a in items:
        rev = (a.get("syncedSha") or "")[:4]
        lines.append(
            f"{fit(a['name'], 26)} {fit(a.get('cluster') or '-', 12)} {fit(a.get('appset') or '-', 12)} "
            f"{_state_word(a['sync'], SYNC_COLOURS, 10)} "
            f"{_state_word(a['health'], HEALTH_COLOURS, 11)} {rev}".rstrip()
        )
    return "\n".join(lines) + "\n"


def resource_lines(resources: Sequence[dict[str, Any]], namespace: str = "") -> list[str]:
    """Resources by wave. NAME is ``namespace/name`` unless the namespace is ``namespace``
    (the destination's) or none (cluster-scoped), to fit 80 columns."""
    # 4 + 1 + 14 + 1 + 24 + 1 + 10 + 1 + 11 + 1 + 12 = 80
    lines = [f"{'WAVE':>4} {'KIND':<14} {'NAME':<24} {'SYNC':<10} {'HEALTH':<11} MESSAGE"]
    ordered = sorted(resources, key=lambda r: (r["wave"], r["kind"], r["namespace"], r["name"]))
    for r in ordered:
        name = r["name"] if r["namespace"] in ("", namespace) else f"{r['namespace']}/{r['name']}"
        lines.append(
            f"{r['wave']:>4} {fit(r['kind'], 14)} {fit(name, 24)} "
            f"{_state_word(r['sync'], SYNC_COLOURS, 10)} "
            f"{_state_word(r['health'] or '', HEALTH_COLOURS, 11)} {fit(r['message'], 12)}".rstrip()
        )
    return lines


def app_detail_text(doc: dict[str, Any]) -> str:
    dest = doc["destination"]
    lines = [
        f"Name:           {doc['name']}",
        f"ApplicationSet: {doc['appset'] or '-'}",
        f"Cluster:        {doc['cluster'] or '(unresolved)'}  namespace {dest['namespace'] or '-'}",
        f"Project:        {doc['project']}",
        f"Revision:       wanted {doc['desiredRevision']} = {(doc['desiredSha'] or '?')[:12]}, "
        f"synced {(doc['syncedSha'] or '-')[:12]}",
        f"Sync:           {_state_word(doc['sync'], SYNC_COLOURS, 10).rstrip()}",
        f"Health:         {_state_word(doc['health'], HEALTH_COLOURS, 11).rstrip()}",
    ]
    op = doc.get("operation") or doc.get("operationState")
    if op:
        lines.append(
            f"Operation:      {op.get('phase', '')}: {op.get('message', '')}"[: TABLE_WIDTH - 1]
        )
    if doc.get("deletion"):
        lines.append(f"Deletion:       {doc['deletion']} ({doc.get('deletionReason') or ''})")
    if doc["conditions"]:
        lines.append("Conditions:")
        for c in doc["conditions"]:
            lines += textwrap.wrap(
                f"{c['type']}: {c['message']}", TABLE_WIDTH - 1, initial_indent="  ",
                subsequent_indent="    ",
            )  # fmt: skip
    lines += [
        "",
        f"Resources (from {doc['resourcesFrom']}; namespace {dest['namespace'] or '-'} unless "
        "shown):",
        *resource_lines(doc["resources"], dest["namespace"]),
    ]
    return "\n".join(lines) + "\n"


def history_table(items: Sequence[dict[str, Any]]) -> str:
    # 4 + 1 + 20 + 1 + 9 + 1 + 10 + 1 + 10 + 1 + 22 = 80
    lines = [f"{'ID':<4} {'FINISHED':<20} {'REVISION':<9} {'TRIGGER':<10} {'PHASE':<10} MESSAGE"]
    for e in items:
        lines.append(
            f"{e['id']:<4} {fit(e['finishedAt'][:19].replace('T', ' '), 20)} "
            f"{fit(e['revision'][:8], 9)} {fit(e['trigger'], 10)} {fit(e['phase'], 10)} "
            f"{fit(e['message'], 22)}".rstrip()
        )
    return "\n".join(lines) + "\n"


@click.command("list")
@click.option("--cluster", metavar="NAME", help="Only Applications on this cluster.")
@click.option("--appset", metavar="NAME", help="Only Applications of this ApplicationSet.")
@click.option("--sync-status", type=click.Choice(SYNC_STATUSES), help="Only this sync status.")
@click.option("--health", type=click.Choice(HEALTH_STATUSES), help="Only this health.")
@OUTPUT_OPTION
@SERVER_OPTION
@click.pass_obj
def app_list(
    obj: HubContext,
    cluster: str | None,
    appset: str | None,
    sync_status: str | None,
    health: str | None,
    output: str,
    server: str | None,
) -> None:
    """The hub's Applications (from the running hub, else the store)."""
    flt = AppFilter(cluster=cluster, appset=appset, sync=sync_status, health=health)
    with open_fleet(obj.home, server=server) as fleet:
        items = fleet.apps(flt)
    emit(items, output, app_list_table)


def app_get(obj: HubContext, name: str, output: str, server: str | None) -> None:
    with open_fleet(obj.home, server=server) as fleet:
        doc = fleet.app(name)
    emit(doc, output, app_detail_text)


def app_history(obj: HubContext, name: str, output: str, server: str | None) -> None:
    with open_fleet(obj.home, server=server) as fleet:
        items = fleet.history(name)
    emit(items, output, history_table)


def app_diff(obj: HubContext, name: str, server: str | None) -> None:
    """Exit 0 in sync, 1 with differences (kubectl diff's convention)."""
    with open_fleet(obj.home, server=server) as fleet:
        doc = fleet.diff(name)
    for warning in doc.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    if doc["diff"]:
        click.echo(doc["diff"], nl=False)
    raise click.exceptions.Exit(0 if doc["status"] == "Synced" else 1)


def app_sync(
    obj: HubContext,
    name: str,
    *,
    prune: bool,
    revision: str | None,
    wait: bool,
    timeout: float,
    server: str | None,
    token: str | None,
) -> None:
    """Queue a sync in the running hub; with ``wait``, follow it and exit 0 only when the
    Application ends Synced and Healthy."""
    with open_fleet(obj.home, server=server, token=token, need_hub=True) as fleet:
        before = fleet.history(name)
        last_id = before[-1]["id"] if before else -1
        fleet.sync(name, prune=prune, revision=revision)
        click.echo(f"sync of {name} queued")
        if not wait:
            return
        _follow(fleet, name, last_id, timeout)


def app_rollback(
    obj: HubContext,
    name: str,
    entry: int,
    *,
    wait: bool,
    timeout: float,
    server: str | None,
    token: str | None,
) -> None:
    with open_fleet(obj.home, server=server, token=token, need_hub=True) as fleet:
        before = fleet.history(name)
        last_id = before[-1]["id"] if before else -1
        fleet.rollback(name, entry)
        click.echo(f"rollback of {name} to history id {entry} queued")
        if wait:
            _follow(fleet, name, last_id, timeout, want_synced=False)


def _follow(
    fleet: Fleet, name: str, last_id: int, timeout: float, *, want_synced: bool = True
) -> None:
    """Print the operation's progress (phase and wave messages) until a new history entry
    appears, then the result. Exit 0 when the operation succeeded and the Application
    settles Healthy (and Synced, unless ``want_synced`` is False: a rollback leaves it
    OutOfSync with its target revision, as in Argo CD); 1 otherwise or on timeout."""
    deadline = time.monotonic() + timeout
    seen = ""
    while True:
        doc = fleet.app(name)
        op = doc.get("operation")
        if op is not None and op["message"] != seen:
            seen = op["message"]
            click.echo(f"  {op['phase']}: {seen}")
        history = fleet.history(name)
        if history and history[-1]["id"] > last_id and op is None:
            entry = history[-1]
            for line in phase_wave_lines(entry["resources"]):
                click.echo(line)
            click.echo(f"{entry['phase']}: {entry['message']}")
            for line in resource_lines(entry["resources"], doc["destination"]["namespace"]):
                click.echo(line)
            succeeded = entry["phase"] == "Succeeded"
            if succeeded:
                doc = _settle(fleet, name, deadline, want_synced=want_synced)
            click.echo(f"{name}: {doc['sync']} / {doc['health']}")
            ok = succeeded and _settled_ok(doc, want_synced)
            if succeeded and not ok and time.monotonic() > deadline:
                click.echo(
                    f"timed out after {timeout:g}s waiting for {name} to become "
                    + ("Synced and Healthy" if want_synced else "Healthy"),
                    err=True,
                )
            raise click.exceptions.Exit(0 if ok else 1)
        if time.monotonic() > deadline:
            click.echo(f"timed out after {timeout:g}s waiting for the sync of {name}", err=True)
            raise click.exceptions.Exit(1)
        time.sleep(0.2)


PHASE_ORDER = ("PreSync", "Sync", "PostSync", "SyncFail", "PostDelete")


def phase_wave_lines(resources: Sequence[dict[str, Any]]) -> list[str]:
    """One line per phase and wave of a finished operation: how many resources had which
    result (``Sync wave 1: 2 Synced, 1 SyncFailed``)."""
    groups: dict[tuple[int, int, str], dict[str, int]] = {}
    for r in resources:
        phase = r.get("phase") or "Sync"
        rank = PHASE_ORDER.index(phase) if phase in PHASE_ORDER else len(PHASE_ORDER)
        results = groups.setdefault((rank, r["wave"], phase), {})
        results[r["sync"] or "?"] = results.get(r["sync"] or "?", 0) + 1
    return [
        f"  {phase} wave {wave}: " + ", ".join(f"{n} {result}" for result, n in results.items())
        for (_, wave, phase), results in sorted(groups.items())
    ]


#: Health that can still change on its own after a successful operation: the reconciler
#: has not compared the new state yet (Missing, Unknown) or the rollout is under way.
_UNSETTLED_HEALTH = ("Progressing", "Missing", "Unknown")
#: Health that says the operation's result is final and not Healthy.
_FINAL_BAD_HEALTH = ("Degraded", "Suspended")


def _settled_ok(doc: dict[str, Any], want_synced: bool) -> bool:
    return doc["health"] == "Healthy" and (not want_synced or doc["sync"] == "Synced")


def _settle(
    fleet: Fleet, name: str, deadline: float, *, want_synced: bool = True
) -> dict[str, Any]:
    """The Application once the hub has recorded what the finished operation did.

    The history entry is written before the reconciler compares the cluster again, so right
    after a first sync the record may still say OutOfSync / Missing: wait (until
    ``deadline``) for Healthy (and Synced), or for a health that will not change by itself
    (Degraded, Suspended)."""
    doc = fleet.app(name)
    while time.monotonic() < deadline:
        if _settled_ok(doc, want_synced):
            return doc
        settled_sync = not want_synced or doc["sync"] == "Synced"
        if settled_sync and doc["health"] in _FINAL_BAD_HEALTH:
            return doc
        time.sleep(0.5)
        doc = fleet.app(name)
    return doc


# ---------------------------------------------------------------- hub appset (by NAME)


def appset_list_table(items: Sequence[dict[str, Any]]) -> str:
    # 24 + 1 + 12 + 1 + 5 + 1 + 7 + 1 + 8 + 2 + 18 = 80
    lines = [f"{'NAME':<24} {'SOURCE':<12} {'APPS':>5} {'SYNCED':>7} {'HEALTHY':>8}  PROBLEMS"]
    for s in items:
        c = s["counts"]
        problems = []
        if c["health"].get("Degraded"):
            problems.append(f"{c['health']['Degraded']} Degraded")
        if c["sync"].get("OutOfSync"):
            problems.append(f"{c['sync']['OutOfSync']} OutOfSync")
        if s.get("lastError"):
            problems.append("error")
        text = fit(", ".join(problems) or "-", 18).rstrip()
        lines.append(
            f"{fit(s['name'], 24)} {fit(s['source'], 12)} {c['total']:>5} "
            f"{c['sync'].get('Synced', 0):>7} {c['health'].get('Healthy', 0):>8}  "
            + paint(text, "red" if c["health"].get("Degraded") else None)
        )
    return "\n".join(lines) + "\n"


def appset_detail_text(doc: dict[str, Any]) -> str:
    lines = [
        f"Name:       {doc['name']}",
        f"Source:     {doc['source']} ({doc['file']} at {doc['sha'][:12]})",
        f"Generated:  {doc['generated'] if doc['generated'] is not None else '-'} Applications",
    ]
    if doc.get("lastError"):
        lines += textwrap.wrap(
            f"Error: {doc['lastError']}", TABLE_WIDTH - 1, subsequent_indent="  "
        )
    if doc["conditions"]:
        lines.append("Conditions:")
        for c in doc["conditions"]:
            lines += textwrap.wrap(
                f"{c['type']}={c.get('status', '')}: {c['message']}", TABLE_WIDTH - 1,
                initial_indent="  ", subsequent_indent="    ",
            )  # fmt: skip
    if doc.get("rollout"):
        lines.append(f"Rollout:    {doc['rollout']['message']} (hub rollout status {doc['name']})")
    lines += ["", "Applications:", app_list_table(doc["applications"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


@click.command("list")
@OUTPUT_OPTION
@SERVER_OPTION
@click.pass_obj
def appset_list(obj: HubContext, output: str, server: str | None) -> None:
    """The hub's ApplicationSets with their Applications' states."""
    with open_fleet(obj.home, server=server) as fleet:
        items = fleet.appsets()
    emit(items, output, appset_list_table)
    if output == "table":
        for s in items:
            if s.get("lastError"):
                click.echo(f"{s['name']}: {s['lastError']}", err=True)


@click.command("get")
@click.argument("name")
@OUTPUT_OPTION
@SERVER_OPTION
@click.pass_obj
def appset_get(obj: HubContext, name: str, output: str, server: str | None) -> None:
    """One ApplicationSet: its generated Applications and conditions."""
    with open_fleet(obj.home, server=server) as fleet:
        doc = fleet.appset(name)
    emit(doc, output, appset_detail_text)


# ---------------------------------------------------------------- the commands and their groups

WAIT_TIMEOUT_OPTION = click.option(
    "--timeout", default=300.0, show_default=True, type=float, help="--wait: give up after S s."
)
TOKEN_OPTION = click.option(
    "--token", metavar="T", help="API token (default: $HUB_API_TOKEN, else $HUB_HOME/api-token)."
)
_FILE_FORM = (
    "With -f FILE instead of NAME: the one-shot form against a cluster (see -f FILE --help)."
)


@click.command("get")
@click.argument("name")
@OUTPUT_OPTION
@SERVER_OPTION
@click.pass_obj
def app_get_cmd(obj: HubContext, name: str, output: str, server: str | None) -> None:
    """One Application: status, operation, conditions and resources."""
    app_get(obj, name, output, server)


@click.command("history", epilog=_FILE_FORM)
@click.argument("name")
@OUTPUT_OPTION
@SERVER_OPTION
@click.pass_obj
def app_history_cmd(obj: HubContext, name: str, output: str, server: str | None) -> None:
    """The Application's sync history (oldest first)."""
    app_history(obj, name, output, server)


@click.command("diff", epilog=_FILE_FORM)
@click.argument("name")
@SERVER_OPTION
@click.pass_obj
def app_diff_cmd(obj: HubContext, name: str, server: str | None) -> None:
    """How the cluster differs from Git (exit 0 in sync, 1 differences)."""
    app_diff(obj, name, server)


@click.command("sync", epilog=_FILE_FORM)
@click.argument("name")
@click.option("--prune", is_flag=True, help="Delete what Git no longer declares.")
@click.option("--revision", metavar="REV", help="Sync this revision instead of targetRevision.")
@click.option("--wait", is_flag=True, help="Follow the operation; exit 0 when Synced and Healthy.")
@WAIT_TIMEOUT_OPTION
@SERVER_OPTION
@TOKEN_OPTION
@click.pass_obj
def app_sync_cmd(
    obj: HubContext,
    name: str,
    prune: bool,
    revision: str | None,
    wait: bool,
    timeout: float,
    server: str | None,
    token: str | None,
) -> None:
    """Queue a sync of an Application in the running hub."""
    app_sync(
        obj, name, prune=prune, revision=revision, wait=wait, timeout=timeout, server=server,
        token=token,
    )  # fmt: skip


@click.command("rollback", epilog=_FILE_FORM)
@click.argument("name")
@click.argument("history_id", type=int)
@click.option(
    "--wait", is_flag=True, help="Follow the operation; exit 0 when it succeeded and is Healthy."
)
@WAIT_TIMEOUT_OPTION
@SERVER_OPTION
@TOKEN_OPTION
@click.pass_obj
def app_rollback_cmd(
    obj: HubContext,
    name: str,
    history_id: int,
    wait: bool,
    timeout: float,
    server: str | None,
    token: str | None,
) -> None:
    """Queue a rollback of an Application to history entry HISTORY_ID in the running hub."""
    app_rollback(obj, name, history_id, wait=wait, timeout=timeout, server=server, token=token)


class _NameOrFile(click.Command):
    """One subcommand with two forms: ``NAME`` (the running hub) and ``-f FILE`` (the
    one-shot against a cluster, hub/cli/app.py). The form is chosen by whether -f/--file
    is on the command line; each keeps its own options and help."""

    def __init__(self, by_name: click.Command, by_file: click.Command) -> None:
        super().__init__(
            by_name.name,
            help=by_name.help,
            epilog=by_name.epilog,
            short_help=f"NAME: {by_name.get_short_help_str(40)} Or -f FILE.",
        )
        self.by_name = by_name
        self.by_file = by_file
        self.params = by_name.params

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        uses_file = any(a in ("-f", "--file") or a.startswith("--file=") for a in args) or any(
            a.startswith("-f") and len(a) > 2 and not a.startswith("--") for a in args
        )
        chosen = self.by_file if uses_file else self.by_name
        return chosen.make_context(info_name, args, parent=parent, **extra)


def attach_app_commands(group: click.Group) -> None:
    """Add the NAME-based commands to ``hub app``, keeping its ``-f FILE`` forms."""
    group.add_command(app_list, "list")
    group.add_command(app_get_cmd, "get")
    for by_name in (app_diff_cmd, app_sync_cmd, app_history_cmd, app_rollback_cmd):
        assert by_name.name is not None
        by_file = group.commands.get(by_name.name)
        group.add_command(by_name if by_file is None else _NameOrFile(by_name, by_file))


def attach_appset_commands(group: click.Group) -> None:
    group.add_command(appset_list, "list")
    group.add_command(appset_get, "get")
