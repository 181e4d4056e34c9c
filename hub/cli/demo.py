"""``hub demo``: simulated clusters, a Git repository from examples/, the hub, six steps."""

from __future__ import annotations

from pathlib import Path

import click

from hub.cli import HubContext


@click.command()
@click.option(
    "--clusters",
    default="dev,staging,prod-us-east,prod-eu-west",
    show_default=True,
    help="Comma-separated cluster names; the prefix gives env (dev*, staging*, prod*).",
)
@click.option("--keep", is_flag=True, help="Leave the hub, dashboard and clusters running.")
@click.option("--fast", is_flag=True, help="Shorter delays (pods Ready in 0.2 s, no pauses).")
@click.option(
    "--examples",
    "examples",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The examples directory to start the Git repository from (default: examples/).",
)
@click.option("--port", default=0, type=int, help="HTTP port of the hub (default: any free).")
@click.pass_obj
def demo(
    obj: HubContext, clusters: str, keep: bool, fast: bool, examples: Path | None, port: int
) -> None:
    """Run the whole GitOps story on simulated clusters and check every step.

    Starts `hub sim` clusters, a temporary HUB_HOME and Git repository made from
    examples/, registers the clusters with env and region labels, runs `hub serve` and
    narrates: the initial sync, an image rollout, drift healed, a crash-looping release
    reverted, a failing migration stopping a sync, and a cluster removed. Exit 0 when
    every expectation held, 1 otherwise. Your own HUB_HOME is never touched.
    """
    from hub.demo import DemoOptions, cluster_specs, default_examples, run_demo

    del obj  # the demo always works in its own temporary home
    options = DemoOptions(
        clusters=cluster_specs(clusters.split(",")),
        examples=examples or default_examples(),
        keep=keep,
        fast=fast,
        port=port,
    )
    report = run_demo(options, out=lambda line: click.echo(line))
    raise click.exceptions.Exit(0 if report.ok else 1)
