"""``hub notify check|secret``: notification settings and the secrets they reference."""

from __future__ import annotations

import sys

import click

from hub.cli import HubContext
from hub.errors import HubUsageError
from hub.home import load_keyring, open_store
from hub.notifications.config import FILENAME, load_config
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
