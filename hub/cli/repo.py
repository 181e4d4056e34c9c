"""``hub repo add|list|rm``: credentials for chart repositories and HTTPS Git, sealed at rest."""

from __future__ import annotations

import sys

import click

from hub.cli import HubContext
from hub.cli.output import OUTPUT_OPTION, dump, render_table
from hub.errors import HubUsageError
from hub.home import load_keyring, open_store
from hub.repo_credentials import RepoCredentialStore


@click.group("repo")
def repo() -> None:
    """Credentials for Helm chart repositories and HTTPS Git (encrypted at rest)."""


@repo.command("add")
@click.argument("url")
@click.option("--username", required=True, help="User name for HTTP basic auth.")
@click.option(
    "--password-stdin",
    is_flag=True,
    required=True,
    help="Read the password from standard input (never from the command line).",
)
@click.option(
    "--pass-credentials",
    is_flag=True,
    help="Also send the credentials to chart archives on other hosts (Helm's flag).",
)
@click.pass_obj
def add(
    obj: HubContext, url: str, username: str, password_stdin: bool, pass_credentials: bool
) -> None:
    """Store the credentials for the repositories at URL (and every URL below it)."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else ""
    if not password:
        raise HubUsageError("no password on standard input (use --password-stdin)")
    with open_store(obj.home) as store:
        key = RepoCredentialStore(store, lambda: load_keyring(obj.home)).add(
            url, username, password, pass_credentials=pass_credentials
        )
    click.echo(f"credentials for {key} stored (user {username})")


@repo.command("list")
@OUTPUT_OPTION
@click.pass_obj
def list_(obj: HubContext, output: str) -> None:
    """List the repositories with credentials (never the passwords)."""
    with open_store(obj.home) as store:
        items = RepoCredentialStore(store, lambda: load_keyring(obj.home)).list()
    if output != "table":
        click.echo(dump([i.as_dict() for i in items], output), nl=False)
        return
    if not items:
        click.echo("no repository credentials (add some with `hub repo add`)")
        return
    rows = [
        [i.url, i.username, "yes" if i.pass_credentials else "no", i.created_at[:10]] for i in items
    ]
    click.echo(
        render_table(["URL", "USERNAME", "PASS-CREDENTIALS", "ADDED"], rows, shrink_first=(1,))
    )


@repo.command("rm")
@click.argument("url")
@click.pass_obj
def rm(obj: HubContext, url: str) -> None:
    """Forget the credentials stored for URL."""
    with open_store(obj.home) as store:
        removed = RepoCredentialStore(store, lambda: load_keyring(obj.home)).remove(url)
    if not removed:
        raise HubUsageError(f"{url}: no credentials stored (see `hub repo list`)")
    click.echo(f"credentials for {url} removed")
