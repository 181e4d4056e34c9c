"""``hub migrate-store``: move a SQLite home's state to PostgreSQL (docs/store.md)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from hub.cli import HubContext
from hub.cli.audit import audited, note
from hub.errors import HubUsageError


@click.command("migrate-store")
@click.option(
    "--to",
    "url",
    required=True,
    metavar="URL",
    help="An empty PostgreSQL database: postgresql://USER:PASSWORD@HOST:PORT/DATABASE.",
)
@click.pass_obj
@audited("store.migrate")  # recorded in the new store; never the URL's password
def migrate_store(obj: HubContext, url: str) -> None:
    """Copy this home's SQLite state to an empty PostgreSQL database, then use it.

    Every table is copied in one transaction (credentials stay sealed under the same
    master key), the row counts are checked, and only then is the URL recorded in
    HOME/database.url (mode 0600). Refused while a hub serves this home, and into a
    database that already holds tables. HOME/hub.db is left as it was, as a backup.
    """
    from hub.api.client import HubAlreadyRunning, hold_serve_lock
    from hub.db import redact_url, url_password, validate_url
    from hub.home import ENV_DATABASE_URL, database_location, describe_location, write_database_url
    from hub.logs import redact
    from hub.store import Store
    from hub.store_copy import copy_to_postgres

    redact(url_password(url))
    validate_url(url)
    home = obj.home
    location = database_location(home)
    if not isinstance(location, Path):
        via = f" ({ENV_DATABASE_URL} is set)" if os.environ.get(ENV_DATABASE_URL) else ""
        raise HubUsageError(
            f"hub home {home} already keeps its state in {describe_location(location)}{via}; "
            "migrate-store copies a SQLite home"
        )
    if not location.exists():
        raise HubUsageError(f"no state database at {location}: nothing to migrate")
    # Hold the serve lock for the whole copy: no hub may write the SQLite file meanwhile.
    try:
        fd = hold_serve_lock(home, api=False)
    except HubAlreadyRunning as exc:
        raise HubUsageError(f"{exc}; then run `hub migrate-store` again") from None
    try:
        with Store.open(location) as source:
            report = copy_to_postgres(source, url)
        write_database_url(home, url)
    finally:
        os.close(fd)
    note(f"to {redact_url(url)}")
    total = sum(report.rows.values())
    for table, count in sorted(report.rows.items()):
        click.echo(f"  {table:<22} {count:>8} rows")
    click.echo(
        f"copied {total} rows in {len(report.rows)} tables (schema version {report.version}) "
        f"to {redact_url(url)}; row counts checked"
    )
    click.echo(
        f"hub home {home} now uses postgresql {redact_url(url)}; {location} is kept unchanged "
        "as a backup (delete it once the hub runs well on PostgreSQL)"
    )
