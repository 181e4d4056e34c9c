"""``hub rollout``: the progressive sync (RollingSync) of an ApplicationSet.

``status SET`` computes the rollout from the store as the hub does; ``pause``, ``resume``
and ``promote`` record the operator's hand in the store, where a running hub reads it
within its registry poll (``hub.rollout``)."""

from __future__ import annotations

from typing import Any

import click

from hub.apps import AppStore
from hub.cli import HubContext
from hub.cli.output import OUTPUT_OPTION, emit, fit
from hub.errors import HubError, HubUsageError
from hub.home import open_store
from hub.rollout import Rollout, rollout_of


@click.group()
def rollout() -> None:
    """Progressive sync of an ApplicationSet (spec.strategy RollingSync)."""


def _rollout(apps: AppStore, name: str) -> Rollout:
    if apps.get_appset(name) is None:
        raise HubError(f"no ApplicationSet named {name!r}; `hub appset list` shows the loaded ones")
    found = rollout_of(apps, name)
    if found is None:
        raise HubUsageError(
            f"ApplicationSet {name!r} has no spec.strategy of type RollingSync: "
            "its Applications sync on their own policy"
        )
    return found


def _text(doc: dict[str, Any]) -> str:
    step = doc["currentStep"] or "-"
    lines = [
        f"Step:    {step} of {doc['steps']}",
        f"State:   {doc['message']}",
    ]
    if doc["paused"]:
        lines.append("Paused:  yes (hub rollout resume)")
    if doc["promotedStep"] is not None:
        lines.append(f"Promoted: step {doc['promotedStep']}")
    lines += ["", f"{fit('APPLICATION', 28)} {fit('STEP', 5)} {fit('STATUS', 12)} MESSAGE"]
    for a in doc["applicationStatus"]:
        lines.append(
            f"{fit(a['application'], 28)} {fit(a['step'] or '-', 5)} {fit(a['status'], 12)} "
            f"{a['message']}"
        )
    return "\n".join(lines) + "\n"


@rollout.command("status")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_obj
def status(obj: HubContext, name: str, output: str) -> None:
    """The current step of set NAME and each Application's status in the rollout."""
    with open_store(obj.home) as store:
        doc = _rollout(AppStore(store), name).as_dict()
    emit(doc, output, _text)


@rollout.command("pause")
@click.argument("name")
@click.pass_obj
def pause(obj: HubContext, name: str) -> None:
    """Start no sync of set NAME's Applications until `hub rollout resume`."""
    with open_store(obj.home) as store:
        apps = AppStore(store)
        current = _rollout(apps, name)
        apps.set_rollout_control(name, paused=True, promoted_step=current.promoted_step)
    click.echo(f"rollout of {name} paused (syncs already running finish)")


@rollout.command("resume")
@click.argument("name")
@click.pass_obj
def resume(obj: HubContext, name: str) -> None:
    """Let the rollout of set NAME go on after `hub rollout pause`."""
    with open_store(obj.home) as store:
        apps = AppStore(store)
        current = _rollout(apps, name)
        apps.set_rollout_control(name, paused=False, promoted_step=current.promoted_step)
    click.echo(f"rollout of {name} resumed")


@rollout.command("promote")
@click.argument("name")
@click.pass_obj
def promote(obj: HubContext, name: str) -> None:
    """Release the current step of set NAME now, whatever its maxUpdate (a manual gate is
    maxUpdate: 0). Earlier steps must be done; a halt or a pause still holds it."""
    with open_store(obj.home) as store:
        apps = AppStore(store)
        current = _rollout(apps, name)
        if current.current_step is None:
            raise HubError(f"the rollout of {name} has no step left to promote: every step is done")
        apps.set_rollout_control(name, paused=current.paused, promoted_step=current.current_step)
    click.echo(f"rollout of {name}: step {current.current_step} of {current.steps} released")
