"""``hub notify check|secret``: notification settings and the secrets they reference."""

from __future__ import annotations

import sys

import click

from hub.cli import HubContext
from hub.cli.output import OUTPUT_OPTION, dump, render_table
from hub.errors import HubUsageError
from hub.home import load_keyring, open_store
from hub.notifications.config import FILENAME, load_config
from hub.notifications.dispatcher import outbox_rows, retry_failed
from hub.notifications.secrets import NotificationSecrets


@click.group("notify")
def notify() -> None:
    """Notifications (Argo CD Notifications' triggers, templates and services)."""


@notify.command("check")
@click.pass_obj
def check(obj: HubContext) -> None:
    """Parse $HUB_HOME/notifications.yaml and report what it defines (exit 2 if bad)."""
    config = load_config(obj.home)
    if config is None:
        click.echo(f"no {obj.home / FILENAME}: notifications are off")
        return
    click.echo(f"triggers: {', '.join(sorted(config.triggers))}")
    click.echo(f"templates: {', '.join(sorted(config.templates))}")
    click.echo(f"services: {', '.join(sorted(config.services())) or '(none)'}")


@notify.command("outbox")
@click.option(
    "--state", type=click.Choice(["pending", "sent", "failed"]), help="Only rows in this state."
)
@OUTPUT_OPTION
@click.pass_obj
def outbox(obj: HubContext, state: str | None, output: str) -> None:
    """Notifications queued, sent or failed (newest first), with their last error."""
    with open_store(obj.home) as store:
        rows = outbox_rows(store, state=state)
    if output != "table":
        click.echo(dump(rows, output), nl=False)
        return
    if not rows:
        click.echo("no notifications")
        return
    headers = ("APP", "TRIGGER", "SERVICE", "RECIPIENT", "STATE", "ATTEMPTS", "LAST ERROR")
    table = [
        [str(r["app"]), str(r["trigger"]), str(r["service"]), str(r["recipient"]),
         str(r["state"]), str(r["attempts"]), str(r["lastError"] or "")]
        for r in rows
    ]  # fmt: skip
    click.echo(render_table(headers, table))


@notify.command("retry")
@click.pass_obj
def retry(obj: HubContext) -> None:
    """Send the notifications that ran out of attempts again (a running hub picks them up)."""
    with open_store(obj.home) as store:
        count = retry_failed(store)
    click.echo(f"{count} notification(s) queued again")


@notify.group("secret")
def secret() -> None:
    """Secrets that services reference as $NAME (sealed with the master key)."""


@secret.command("set")
@click.argument("name")
@click.pass_obj
def secret_set(obj: HubContext, name: str) -> None:
    """Store secret NAME; the value is read from standard input (one line)."""
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise HubUsageError(f"secret {name}: no value on standard input")
    with open_store(obj.home) as store:
        NotificationSecrets(store, lambda: load_keyring(obj.home)).set(name, value)
    click.echo(f"secret {name} stored")


@secret.command("list")
@click.pass_obj
def secret_list(obj: HubContext) -> None:
    """The names of the stored secrets (never their values)."""
    with open_store(obj.home) as store:
        for name in NotificationSecrets(store, lambda: load_keyring(obj.home)).names():
            click.echo(name)


@secret.command("rm")
@click.argument("name")
@click.pass_obj
def secret_rm(obj: HubContext, name: str) -> None:
    """Remove secret NAME."""
    with open_store(obj.home) as store:
        if not NotificationSecrets(store, lambda: load_keyring(obj.home)).remove(name):
            raise HubUsageError(f"no notification secret {name}")
    click.echo(f"secret {name} removed")
