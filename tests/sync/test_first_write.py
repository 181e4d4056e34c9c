"""``SyncPlan.first_write`` names the task whose request ``run_wave`` sends first, for any
plan: the dry run leaves that one object to its own request on the promise that nothing is
written before it (``hub.sync.attempt.dry_run``). Plans from ``plan_sync`` over random
manifests (kinds, waves, hooks with their delete policies, Prune=false) and live objects
(pruned or not); the executor is ``run_wave`` itself, its writes recorded instead of sent.
No cluster."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hub.sync.wave
from hub.sync.operation import GateItem
from hub.sync.plan import Action, SyncPlan, SyncTask
from hub.sync.resources import ResourceKey
from tests.sync.test_plan import obj, plan

KINDS = ["ConfigMap", "Deployment", "Service", "Job", "Namespace", "Role"]
HOOKS = [None, None, None, "PreSync", "Sync", "PostSync"]
POLICIES = [None, "BeforeHookCreation", "HookSucceeded"]


@st.composite
def objects(draw: st.DrawFn, prefix: str) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(KINDS))
        hook = draw(st.sampled_from(HOOKS)) if kind == "Job" else None
        out.append(
            obj(
                kind,
                f"{prefix}{i}",
                ns=None if kind == "Namespace" else "payments",
                wave=draw(st.integers(-2, 2)),
                hook=hook,
                policy=draw(st.sampled_from(POLICIES)) if hook else None,
                options=draw(st.sampled_from([None, "Prune=false"])),
            )
        )
    return out


async def writes_of(p: SyncPlan, monkeypatch: pytest.MonkeyPatch) -> list[SyncTask]:
    """The tasks whose requests ``run_wave`` sends, in order, wave after wave."""
    sent: list[SyncTask] = []

    async def write(_run: Any, task: SyncTask, *_a: Any) -> GateItem:
        sent.append(task)
        return GateItem(task=task, res=None, gone=True)  # type: ignore[arg-type]

    async def no_wait(*_a: Any, **_kw: Any) -> None:
        return None

    monkeypatch.setattr(hub.sync.wave, "apply_task", write)
    monkeypatch.setattr(hub.sync.wave, "delete_task", write)
    monkeypatch.setattr(hub.sync.wave, "gate", no_wait)
    run = SimpleNamespace(
        emit=lambda _e: None,
        check=lambda: None,
        result=lambda *_a: None,
        pruned=[],
        unverified_write=None,
        applied_unchanged=0,
        rules=SimpleNamespace(has_check=lambda *_a: False),
        writes_out=lambda: None,
    )
    for wave in p.waves:
        await hub.sync.wave.run_wave(run, wave, wait_health=p.multi_step)  # type: ignore[arg-type]
    return sent


@settings(max_examples=200, deadline=None)
@given(
    desired=objects("d"),
    gone=objects("l"),
    existing=st.lists(st.booleans(), max_size=5),
    prune=st.booleans(),
    alike=st.lists(st.booleans(), max_size=10),
)
def test_first_write_is_what_the_executor_sends_first(
    desired: list[dict[str, Any]],
    gone: list[dict[str, Any]],
    existing: list[bool],
    prune: bool,
    alike: list[bool],
) -> None:
    # live: objects Git dropped (pruned or skipped) and some of the desired ones (a hook
    # already there is deleted before it is created again: BeforeHookCreation); any object
    # may be found alike by the comparison, hooks and objects Git dropped included
    live = gone + [o for o, there in zip(desired, existing, strict=False) if there]
    keys = frozenset(
        ResourceKey.of(o) for o, same in zip(desired + gone, alike, strict=False) if same
    )
    p = plan(*desired, live=live, prune=prune, allow_empty=True, alike=keys)
    with pytest.MonkeyPatch.context() as mp:
        sent = anyio.run(writes_of, p, mp)
    first = p.first_write
    if not sent:
        assert first is None
    else:
        assert first is sent[0], (first, sent[0])
    # the first change is the first request that is not an apply of an unchanged object
    changes = [t for t in sent if not t.unchanged]
    assert p.first_change is (changes[0] if changes else None)
    # only live, non-hook applies of alike objects are ever unchanged
    live_keys = {ResourceKey.of(o) for o in live}
    for t in p.tasks:
        if t.unchanged:
            assert t.action is Action.APPLY and not t.hook
            assert t.key in keys and t.key in live_keys
