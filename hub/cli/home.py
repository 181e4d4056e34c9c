"""``hub init`` and ``hub key rotate``: the state home and its master key."""

from __future__ import annotations

import os

import click

from hub.cli import HubContext
from hub.cli.audit import audited
from hub.home import ENV_MASTER_KEY, ENV_NEW_MASTER_KEY, init_home, key_path, rotate_master_key


@click.command("init")
@click.option(
    "--database",
    metavar="URL",
    help="Keep the state in this PostgreSQL database (postgresql://USER:PASSWORD@HOST:PORT/DB),"
    " recorded in HOME/database.url (mode 0600). Default: SQLite in HOME/hub.db, or "
    "HUB_DATABASE_URL when set.",
)
@click.pass_obj
def init(obj: HubContext, database: str | None) -> None:
    """Create the state home: the state database and a new random master key.

    The key goes to HOME/master.key (mode 0600) unless HUB_MASTER_KEY is set, in
    which case that key is used and no key file is written. On an existing home
    nothing is changed but the permissions: the home is made 0700 and its files
    0600 (or, when this user cannot, the command to run is printed and the exit
    code is 2).
    """
    result = init_home(obj.home, database=database)
    if not result.created:
        for change in result.tightened:
            click.echo(f"permissions tightened: {change}")
        nothing = "; nothing else changed" if result.tightened else "; nothing changed"
        click.echo(f"hub home {result.home} is already initialised{nothing}")
        click.echo(f"state database: {result.database}")
        if not os.environ.get(ENV_MASTER_KEY) and not key_path(result.home).exists():
            click.echo(
                f"warning: {key_path(result.home)} does not exist and {ENV_MASTER_KEY} is not "
                "set: stored credentials cannot be read until the key is restored",
                err=True,
            )
        return
    click.echo(f"initialised hub home {result.home} (master key: {result.key_source})")
    click.echo(f"state database: {result.database}")


@click.group("key")
def key() -> None:
    """Manage the master key that wraps every stored credential."""


@key.command("rotate")
@click.pass_obj
@audited("key.rotate")
def rotate(obj: HubContext) -> None:
    """Re-wrap every stored credential with a new master key, in one transaction.

    With a key file, a new key replaces HOME/master.key; the old key is kept as
    master.key.old only until the rotation has succeeded. If a rotation was
    interrupted, running this again finishes it.

    With HUB_MASTER_KEY set, the new key must be given in HUB_NEW_MASTER_KEY;
    afterwards, replace HUB_MASTER_KEY with it wherever it is stored.
    """
    result = rotate_master_key(obj.home)
    click.echo(
        f"rotated the master key: {result.rewrapped} credential(s) re-wrapped, "
        f"new key id {result.new_key_id} ({result.source})"
    )
    if result.source == ENV_NEW_MASTER_KEY:
        click.echo(f"now set {ENV_MASTER_KEY} to the value of {ENV_NEW_MASTER_KEY}")
