"""PreDelete and PostDelete hooks: run outside any sync operation, when an Application is
deleted with cascade (Argo CD's ``controller/hook.go``).

``run_delete_hooks`` creates the hooks a previous attempt has not created yet and waits
until each is done by the same judgement as the sync's wave gate (``health.gate_health`` and
``health.task_outcome``: Healthy or no health check succeeds, Degraded fails, anything else
runs). It polls instead of watching: a deletion is rare, and the rest of the deletion path
(``hub.worker.async_delete_app_resources``) polls the same way. A failed
hook is deleted at once, as Argo CD does, so that the next attempt of the deletion creates
it again (with the hook's definition of that time).

Async, on the caller's loop (``AsyncKube``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from clusters.kube import ApiResource, AsyncKube, Conflict, KubeError
from hub.sync.health import HealthRules, Outcome, gate_health, task_outcome
from hub.sync.plan import DeleteHook

POLL_S = 0.5


@dataclass(frozen=True, kw_only=True)
class HookRun:
    """What running a set of delete hooks came to (each entry names its hook)."""

    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # with the hook's health message
    running: tuple[str, ...] = ()  # still running when the wait ran out

    @property
    def done(self) -> bool:
        """Every hook succeeded (Argo CD removes its pre/post-delete finalizer then)."""
        return not self.failed and not self.running


async def run_delete_hooks(
    kube: AsyncKube,
    hooks: Sequence[DeleteHook],
    *,
    rules: HealthRules | None = None,
    deadline: float,
    poll_s: float = POLL_S,
) -> HookRun:
    """Create the missing ``hooks``, wait (until the ``time.monotonic()`` ``deadline``) for
    all of them to finish, delete the failed ones."""
    pending: dict[str, tuple[DeleteHook, ApiResource]] = {}
    failed: list[str] = []
    for hook in hooks:
        try:
            res = await kube.resource_of(hook.desired)
            if hook.live is None:
                # Conflict: created meanwhile (another pass); judged by its health below.
                with contextlib.suppress(Conflict):
                    await kube.create(hook.desired)
        except KubeError as exc:
            failed.append(f"{hook} could not be created: {exc}")
            continue
        pending[str(hook)] = (hook, res)
    succeeded: list[str] = []
    while pending:
        for name, (hook, res) in list(pending.items()):
            obj = await kube.get_or_none(res, hook.key.name, hook.key.namespace)
            health = gate_health(obj, rules)
            outcome = task_outcome(health, hook=True)
            if outcome is Outcome.RUNNING:
                continue
            del pending[name]
            if outcome is Outcome.SUCCEEDED:
                succeeded.append(name)
                continue
            status = health.status.value if health else "Unknown"
            message = (health.message if health else "") or "no message"
            failed.append(f"{name} failed ({status}): {message}")
            # On an error the next attempt finds it still failed and deletes it again.
            with contextlib.suppress(KubeError):
                await kube.delete(res, hook.key.name, hook.key.namespace, propagation="Background")
        if not pending or time.monotonic() >= deadline:
            break
        await anyio.sleep(poll_s)
    return HookRun(
        succeeded=tuple(succeeded),
        failed=tuple(failed),
        running=tuple(f"{name} still running" for name in pending),
    )


__all__ = ["HookRun", "run_delete_hooks"]
