"""``hub audit``: the audit trail; ``audited``: the decorator that records a CLI write."""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from hub.cli import HubContext
from hub.cli.output import OUTPUT_OPTION, dump, render_table
from hub.errors import HubError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def _record(obj: HubContext, action: str, target: str, result: str, detail: str) -> None:
    from hub.auth.audit import record_cli
    from hub.home import open_store

    try:
        with open_store(obj.home) as store:
            record_cli(store, action, target, result, detail)
    except (HubError, sqlite3.Error) as exc:  # no home yet: the command said why already
        log.warning("audit entry for %s %s not recorded: %s", action, target, exc)


DETAIL_KEY = "hub.audit.detail"


def note(detail: str) -> None:
    """What the audited command did, for its audit entry (e.g. the id of a new token)."""
    click.get_current_context().meta[DETAIL_KEY] = detail


def audited(action: str, *targets: str) -> Callable[[F], F]:
    """Record the decorated command (under ``@click.pass_obj``) in the audit trail:
    ``ok`` (with what it ``note``d), or ``error`` with the message. ``targets`` name the
    parameters whose first non-empty value is the target recorded (default: ``name``)."""
    names = targets or ("name",)

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(obj: HubContext, *args: Any, **kwargs: Any) -> Any:
            what = next((str(kwargs[n]) for n in names if kwargs.get(n)), "")
            try:
                result = fn(obj, *args, **kwargs)
            except click.exceptions.Exit as exc:
                ok = exc.exit_code == 0
                _record(obj, action, what, "ok" if ok else "error", f"exit {exc.exit_code}")
                raise
            except click.exceptions.Abort:
                _record(obj, action, what, "error", "aborted")
                raise
            except Exception as exc:
                _record(obj, action, what, "error", str(exc))
                raise
            _record(obj, action, what, "ok", click.get_current_context().meta.get(DETAIL_KEY, ""))
            return result

        return run  # type: ignore[return-value]

    return wrap


@click.command("audit")
@click.option(
    "--since", metavar="DURATION", help="Only entries newer than this (e.g. 30m, 1h, 7d)."
)
@OUTPUT_OPTION
@click.pass_obj
def audit(obj: HubContext, since: str | None, output: str) -> None:
    """Show the audit trail: every write, who did it (user, token id), from where, and the
    result (ok, refused, error), oldest first."""
    from hub.auth.audit import entries
    from hub.auth.tokens import parse_duration
    from hub.home import open_store

    start = None if since is None else datetime.now(UTC) - parse_duration(since, "--since")
    with open_store(obj.home) as store:
        rows = entries(store, since=start)
    if output != "table":
        click.echo(dump([e.to_json() for e in rows], output), nl=False)
        return
    if not rows:
        click.echo("no audit entries" + (f" in the last {since}" if since else ""))
        return
    click.echo(
        render_table(
            ("TIME", "ACTOR", "TOKEN", "VIA", "FROM", "ACTION", "TARGET", "RESULT", "DETAIL"),
            [
                (
                    e.at.isoformat(timespec="seconds"),
                    e.actor or "anonymous",
                    e.token_id or "-",
                    e.via,
                    e.remote or "-",
                    e.action,
                    e.target or "-",
                    e.result,
                    e.detail,
                )
                for e in rows
            ],
            width=160,  # an audit line is read whole; the detail is never cut
            clip_last=False,
            shrink_first=(6, 1),
        )
    )
