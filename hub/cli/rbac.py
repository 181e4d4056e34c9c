"""``hub rbac ...``: check the RBAC policy, as ``argocd admin settings rbac`` does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hub.cli import HubContext
from hub.errors import HubUsageError

if TYPE_CHECKING:
    from hub.auth.policy import Authorizer


def _authorizer(obj: HubContext, policy_file: str | None) -> Authorizer:
    from pathlib import Path

    from hub.auth.policy import Authorizer, RbacConfig, load_authorizer, parse_policy_csv
    from hub.home import open_store

    if policy_file is not None:
        path = Path(policy_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise HubUsageError(f"--policy-file {path}: cannot read: {exc}") from None
        config = RbacConfig(default_role="", policy=parse_policy_csv(text, str(path)))
        return Authorizer.build(config)
    with open_store(obj.home) as store:
        return load_authorizer(obj.home, store)


@click.group("rbac")
def rbac() -> None:
    """The access policy: $HUB_HOME/rbac.csv, rbac.yaml and the AppProjects' roles."""


@rbac.command("can")
@click.argument("subject")
@click.argument("action")
@click.argument("resource")
@click.argument("obj_name", metavar="OBJECT")
@click.option(
    "--policy-file", metavar="PATH", help="Check this policy CSV alone (no default role)."
)
@click.option("-v", "--explain", is_flag=True, help="Say which policy line decided.")
@click.pass_obj
def can(
    obj: HubContext,
    subject: str,
    action: str,
    resource: str,
    obj_name: str,
    policy_file: str | None,
    explain: bool,
) -> None:
    """Whether SUBJECT may ACTION RESOURCE OBJECT: prints Yes (exit 0) or No (exit 1).

    e.g. `hub rbac can proj:team-a:deployer sync applications team-a/web`."""
    authz = _authorizer(obj, policy_file)
    for problem in authz.problems:
        click.echo(f"warning: {problem} (ignored)", err=True)
    decision = authz.decide_uncached(subject, resource, action, obj_name)
    click.echo("Yes" if decision.allowed else "No")
    if explain:
        click.echo(decision.message(), err=True)
    raise click.exceptions.Exit(0 if decision.allowed else 1)


@rbac.command("validate")
@click.option("--policy-file", metavar="PATH", help="Check this policy CSV instead.")
@click.pass_obj
def validate(obj: HubContext, policy_file: str | None) -> None:
    """Check the policy: exit 2 naming the first bad line, 1 when AppProject roles have
    lines that are ignored, else 0."""
    authz = _authorizer(obj, policy_file)
    for problem in authz.problems:
        click.echo(f"{problem} (ignored)", err=True)
    rules, groups = len(authz.policy.rules), len(authz.policy.groups)
    click.echo(f"policy valid: {rules} policy line(s), {groups} group line(s)")
    raise click.exceptions.Exit(1 if authz.problems else 0)
