"""The ``hub`` command line: one root group, commands grouped by noun in their own modules.

Subcommands are imported only when used, so ``hub --help`` stays fast and a broken
optional part cannot stop the others from working.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from clusters.errors import ClusterError
from generators.errors import GeneratorError
from hub import __version__
from hub.errors import HubError
from hub.logs import scrub, setup_logging

log = logging.getLogger(__name__)

# name -> "module:attribute"; each module owns one noun.
SUBCOMMANDS: dict[str, str] = {
    "appset": "hub.cli.appset:appset",
    "sim": "hub.cli.sim:sim",
    "init": "hub.cli.home:init",
    "key": "hub.cli.home:key",
    "cluster": "hub.cli.cluster:cluster",
    "source": "hub.cli.source:source",
    "repo": "hub.cli.repo:repo",
    "notify": "hub.cli.notify:notify",
    "app": "hub.cli.app:app",
    "status": "hub.cli.status:status",
    "serve": "hub.cli.serve:serve",
    "demo": "hub.cli.demo:demo",
    "user": "hub.cli.auth:user",
    "token": "hub.cli.auth:token",
    "rbac": "hub.cli.rbac:rbac",
    "audit": "hub.cli.audit:audit",
    "rollout": "hub.cli.rollout:rollout",
    "shard": "hub.cli.shard:shard",
    "migrate-store": "hub.cli.store:migrate_store",
}

USER_ERRORS = (HubError, ClusterError, GeneratorError)


@dataclass
class HubContext:
    """What every command can read from ``ctx.obj``."""

    home: Path
    verbosity: int


def default_home(explicit: str | None = None) -> Path:
    """``--home``, else ``$HUB_HOME``, else ``~/.hub``."""
    import os

    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("HUB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".hub"


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SUBCOMMANDS:
            module_name, attr = SUBCOMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            code = getattr(exc, "exit_code", 1)
            click.echo(f"error: {scrub(str(exc))}", err=True)
            log.debug("error details", exc_info=True)
            raise click.exceptions.Exit(code) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hub")
@click.option(
    "--home",
    metavar="DIR",
    help="State home (default: $HUB_HOME, else ~/.hub).",
)
@click.option("-v", "--verbose", count=True, help="More logging: -v info, -vv debug.")
@click.pass_context
def main(ctx: click.Context, home: str | None, verbose: int) -> None:
    """gitops-hub: Git is the only way anything reaches your clusters.

    Register clusters, commit ApplicationSets, and the hub keeps every cluster
    converged to what Git declares.
    """
    setup_logging(verbose)
    ctx.obj = HubContext(home=default_home(home), verbosity=verbose)


def run() -> None:  # pragma: no cover - thin wrapper for python -m hub
    sys.exit(main())
