"""``hub shard list``: the replicas sharing a PostgreSQL store, their clusters and leases
(docs/replicas.md). Read from the store, so it works with any replica up, or none."""

from __future__ import annotations

from typing import Any

import click

from hub.cli import HubContext
from hub.cli.output import OUTPUT_OPTION, emit, render_table


@click.group()
def shard() -> None:
    """Replicas of the hub on a shared database and the clusters each one owns."""


def shard_lines(doc: dict[str, Any]) -> list[str]:
    """The replicas table, then the clusters table (also the section of `hub status`)."""
    if not doc["replicas"] and not any(c["owner"] for c in doc["clusters"]):
        return ["no replica has joined (start `hub serve` on a home using this database)"]
    replicas = [
        [
            r["id"] + (" *" if r["leader"] else ""),
            "live" if r["live"] else "gone",
            f"{r['heartbeatAgeSeconds']:g}s",
            str(len(r["clusters"])),
            r["url"] or "-",
        ]
        for r in doc["replicas"]
    ]
    table = render_table(["REPLICA", "STATE", "HEARTBEAT", "CLUSTERS", "API"], replicas)
    lines = table.rstrip("\n").split("\n")
    lines.append(f"leader: {doc['leader'] or 'none (the next heartbeat elects one)'}")
    clusters = [
        [
            c["cluster"],
            c["owner"] or "-",
            "-" if c["token"] is None else str(c["token"]),
            "-" if c["leaseAgeSeconds"] is None else f"{c['leaseAgeSeconds']:g}s",
            "-" if c["expiresInSeconds"] is None else f"{c['expiresInSeconds']:g}s",
        ]
        for c in doc["clusters"]
    ]
    owners = render_table(["CLUSTER", "OWNER", "TOKEN", "RENEWED", "EXPIRES IN"], clusters)
    return [*lines, "", *owners.rstrip("\n").split("\n")]


@shard.command("list")
@OUTPUT_OPTION
@click.pass_obj
def shard_list(obj: HubContext, output: str) -> None:
    """Replicas (* marks the leader), heartbeat age and cluster count; each cluster's owner,
    fencing token and lease age. On a SQLite home there is one hub and no replicas."""
    from hub.home import open_store
    from hub.leases import is_shared, shard_report

    with open_store(obj.home) as store:
        if not is_shared(store):
            if output == "table":
                click.echo(
                    "this home's store is SQLite: one `hub serve`, no replicas "
                    "(replicas share a PostgreSQL store: docs/replicas.md)"
                )
                return
            doc: dict[str, Any] = {"leader": None, "replicas": [], "clusters": []}
        else:
            doc = shard_report(store)
    emit(doc, output, lambda d: "\n".join(shard_lines(d)) + "\n")
