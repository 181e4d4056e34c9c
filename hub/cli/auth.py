"""``hub user ...`` and ``hub token ...``: local API users and their tokens.

A token is printed once, on creation, to standard output (and nowhere else); the store
keeps only its hash. Every change is recorded in the audit trail (``hub audit``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from hub.cli import HubContext
from hub.cli.audit import audited, note
from hub.cli.output import OUTPUT_OPTION, dump, render_table
from hub.errors import HubUsageError

if TYPE_CHECKING:
    from hub.store import Store


@click.group("user")
def user() -> None:
    """Local users of the HTTP API (their roles come from the RBAC policy: docs/access.md)."""


@user.command("add")
@click.argument("name")
@click.pass_obj
@audited("user.add")
def user_add(obj: HubContext, name: str) -> None:
    """Add user NAME. Give it roles with `g, NAME, role:...` lines in $HUB_HOME/rbac.csv
    and a token with `hub token create --user NAME`."""
    from hub.auth.tokens import add_user
    from hub.home import open_store

    with open_store(obj.home) as store:
        add_user(store, name)
    click.echo(f"user {name} added; create a token with `hub token create --user {name}`")


@user.command("list")
@OUTPUT_OPTION
@click.pass_obj
def user_list(obj: HubContext, output: str) -> None:
    """List users and how many active tokens each has."""
    from hub.auth.tokens import list_users
    from hub.home import open_store

    with open_store(obj.home) as store:
        rows = list_users(store)
    docs = [
        {"name": n, "createdAt": c.isoformat(timespec="seconds"), "activeTokens": k}
        for n, c, k in rows
    ]
    if output != "table":
        click.echo(dump(docs, output), nl=False)
    elif not rows:
        click.echo("no users (add one with `hub user add NAME`)")
    else:
        click.echo(
            render_table(
                ("NAME", "CREATED", "ACTIVE TOKENS"),
                [(n, c.isoformat(timespec="seconds"), str(k)) for n, c, k in rows],
            )
        )


@user.command("rm")
@click.argument("name")
@click.pass_obj
@audited("user.rm")
def user_rm(obj: HubContext, name: str) -> None:
    """Remove user NAME and revoke all its tokens."""
    from hub.auth.tokens import remove_user
    from hub.home import open_store

    with open_store(obj.home) as store:
        revoked = remove_user(store, name)
    note(f"{revoked} token(s) revoked")
    click.echo(f"user {name} removed; {revoked} token(s) revoked")


@click.group("token")
def token() -> None:
    """API tokens of users and project roles (stored hashed; shown once)."""


@token.command("create")
@click.option("--user", "user_name", metavar="NAME", help="A token of this user.")
@click.option(
    "--project-role",
    metavar="PROJECT:ROLE",
    help="A token of this AppProject role (spec.roles[] of the AppProject).",
)
@click.option("--expires-in", metavar="DURATION", help="e.g. 24h, 7d (default: never).")
@click.option("--description", default="", help="What the token is for.")
@click.pass_obj
@audited("token.create", "user_name", "project_role")
def token_create(
    obj: HubContext,
    user_name: str | None,
    project_role: str | None,
    expires_in: str | None,
    description: str,
) -> None:
    """Create a token and print it once (to standard output; its id to standard error).

    Use it as `Authorization: Bearer <token>`, or as $HUB_API_TOKEN for the CLI."""
    from hub.auth.tokens import create_token, parse_duration, project_role_subject
    from hub.home import open_store

    if (user_name is None) == (project_role is None):
        raise HubUsageError("give one of --user NAME or --project-role PROJECT:ROLE")
    lifetime = None if expires_in is None else parse_duration(expires_in)
    if len(description) > 200 or any(c in description for c in "\r\n"):
        raise HubUsageError("--description: one line of at most 200 characters")
    with open_store(obj.home) as store:
        if project_role is not None:
            subject = project_role_subject(project_role)
            _check_project_role(store, subject)
            text, info = create_token(
                store,
                subject=subject,
                kind="project-role",
                description=description,
                expires_in=lifetime,
            )
        else:
            assert user_name is not None
            text, info = create_token(
                store, subject=user_name, kind="user", description=description, expires_in=lifetime
            )
    note(f"token {info.id} for {info.subject}")
    expiry = "never expires" if info.expires_at is None else f"expires {info.expires_at:%c} UTC"
    click.echo(f"token {info.id} for {info.subject} ({expiry}); it is shown only now:", err=True)
    click.echo(text)


def _check_project_role(store: Store, subject: str) -> None:
    """A project role must exist when its AppProject is loaded; warn when it is not yet."""
    _, project, role = subject.split(":", 2)
    with store.read() as db:
        row = db.execute("SELECT manifest FROM app_projects WHERE name = ?", (project,)).fetchone()
    if row is None:
        click.echo(
            f"warning: AppProject {project} is not loaded (yet); the token grants nothing until "
            f"a source declares it with a role {role}",
            err=True,
        )
        return
    spec = json.loads(row[0]).get("spec") or {}
    roles = [r.get("name") for r in spec.get("roles") or [] if isinstance(r, dict)]
    if role not in roles:
        raise HubUsageError(
            f"AppProject {project} has no role {role!r} (its roles: "
            f"{', '.join(str(r) for r in roles) or 'none'}); add it to spec.roles in Git"
        )


@token.command("list")
@OUTPUT_OPTION
@click.pass_obj
def token_list(obj: HubContext, output: str) -> None:
    """List tokens: id, owner, state, expiry, last use (never the secret)."""
    from hub.auth.tokens import list_tokens
    from hub.home import open_store

    with open_store(obj.home) as store:
        infos = list_tokens(store)
    now = datetime.now(UTC)
    docs = [i.to_json(now) for i in infos]
    if output != "table":
        click.echo(dump(docs, output), nl=False)
        return
    if not infos:
        click.echo("no tokens (create one with `hub token create`)")
        return
    click.echo(
        render_table(
            ("ID", "OWNER", "STATE", "EXPIRES", "LAST USED", "DESCRIPTION"),
            [
                (
                    str(d["id"]),
                    str(d["subject"]),
                    str(d["state"]),
                    str(d["expiresAt"] or "never"),
                    str(d["lastUsedAt"] or "never"),
                    str(d["description"]),
                )
                for d in docs
            ],
            shrink_first=(5, 1),
        )
    )


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@click.pass_obj
@audited("token.revoke", "token_id")
def token_revoke(obj: HubContext, token_id: str) -> None:
    """Revoke token ID (`hub token list` shows the ids); it stops working at once."""
    from hub.auth.tokens import revoke_token
    from hub.home import open_store

    with open_store(obj.home) as store:
        info = revoke_token(store, token_id)
    already = " (it already was)" if info.revoked_at is not None else ""
    click.echo(f"token {token_id} of {info.subject} revoked{already}")
