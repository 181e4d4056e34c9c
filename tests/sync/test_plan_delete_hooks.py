"""The pure half of PreDelete/PostDelete hooks: which hooks a deletion runs (with their
final names and tracking ids), and that a sync never runs them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.crypto import MasterKey
from hub.store import Store
from hub.sync.history import OperationPhase, SyncHistory
from hub.sync.plan import delete_hook_name, plan_delete_hooks, plan_deletion
from hub.sync.resources import (
    TRACKING_ANNOTATION,
    HookDeletePolicy,
    HookType,
    ResourceKey,
    hook_phases,
    is_delete_hook,
    unknown_hook_values,
)
from hub.worker import last_synced_manifests
from tests.sync.test_history import keyring, op
from tests.sync.test_plan import REV, manifests, obj, plan, steps, tracked


def _rendered(*objs: dict[str, Any]) -> list[dict[str, Any]]:
    return [m.obj for m in manifests(*objs)]


def test_a_sync_never_runs_pre_or_post_delete_hooks() -> None:
    p = plan(
        obj("ConfigMap", "settings"),
        obj("Job", "pre-check", hook="PreDelete"),
        obj("Job", "goodbye", hook="PostDelete", policy="HookSucceeded"),
        obj("Job", None, hook="PostDelete", generate_name="bye-"),
    )
    assert steps(p) == [("Sync", 0, "apply", "ConfigMap", "settings")]
    assert not p.sync_fail


def test_a_hook_naming_a_sync_phase_beside_predelete_runs_in_that_phase_only() -> None:
    p = plan(obj("Job", "both", hook="PreSync,PreDelete"))
    assert steps(p) == [("PreSync", 0, "apply", "Job", "both")]


def test_delete_hook_types_are_known_and_run_in_no_sync_phase() -> None:
    for value, kind in (("PreDelete", HookType.PRE_DELETE), ("PostDelete", HookType.POST_DELETE)):
        job = obj("Job", "x", hook=value)
        assert is_delete_hook(job, kind)
        assert hook_phases(job) == ()
        assert unknown_hook_values(job) == ()
    helm = obj("Job", "h")
    helm["metadata"]["annotations"] = {"helm.sh/hook": "pre-delete"}
    assert is_delete_hook(helm, HookType.PRE_DELETE)
    assert not is_delete_hook(helm, HookType.POST_DELETE)
    assert not is_delete_hook(obj("Job", "s", hook="PostSync"), HookType.POST_DELETE)


def test_predelete_hooks_are_planned_with_names_tracking_ids_and_policies() -> None:
    rendered = _rendered(
        obj("Deployment", "web"),
        obj("Job", "pre-b", hook="PreDelete", wave=1),
        obj("Job", "pre-a", hook="PreDelete", wave=1),
        obj("ConfigMap", "pre-first", hook="PreDelete", wave=-1),
        obj("Job", None, hook="PreDelete", generate_name="gen-"),
        obj("Job", "post", hook="PostDelete", policy="HookSucceeded"),
    )
    hooks = plan_delete_hooks(
        app="payments", manifests=rendered, live=[], hook_type=HookType.PRE_DELETE, revision=REV
    )
    assert [h.key.name for h in hooks] == [
        "pre-first",
        f"gen-{REV[:7]}-predelete",
        "pre-a",
        "pre-b",
    ]
    for h in hooks:
        assert h.hook_type is HookType.PRE_DELETE and h.live is None
        assert h.desired["metadata"]["name"] == h.key.name
        assert "generateName" not in h.desired["metadata"]
        ann = h.desired["metadata"]["annotations"][TRACKING_ANNOTATION]
        assert ann == f"payments:{h.key.group}/{h.key.kind}:payments/{h.key.name}"
        # no hook finalizer: nothing can cut a delete hook short the way a sync is
        assert not h.desired["metadata"].get("finalizers")
    assert hooks[0].policies == frozenset({HookDeletePolicy.BEFORE_HOOK_CREATION})

    (post,) = plan_delete_hooks(
        app="payments", manifests=rendered, live=[], hook_type=HookType.POST_DELETE
    )
    assert post.key == ResourceKey(group="batch", kind="Job", namespace="payments", name="post")
    assert post.policies == frozenset({HookDeletePolicy.HOOK_SUCCEEDED})
    assert str(post) == "PostDelete hook batch/Job payments/post"


def test_a_hook_a_previous_attempt_created_is_paired_with_its_live_object() -> None:
    rendered = _rendered(obj("Job", None, hook="PreDelete", generate_name="gen-"))
    name = delete_hook_name("gen-", revision=REV, hook_type=HookType.PRE_DELETE)
    live = tracked(obj("Job", name, hook="PreDelete"))
    (hook,) = plan_delete_hooks(
        app="payments", manifests=rendered, live=live, hook_type=HookType.PRE_DELETE, revision=REV
    )
    assert hook.live is not None and hook.live["metadata"]["name"] == name


def test_only_delete_hook_types_are_planned() -> None:
    with pytest.raises(ValueError, match="not a delete hook type"):
        plan_delete_hooks(app="a", manifests=[], live=[], hook_type=HookType.PRE_SYNC)


def test_the_resource_deletion_plan_leaves_delete_hooks_to_their_own_steps() -> None:
    p = plan_deletion(
        app="payments",
        live=tracked(obj("ConfigMap", "settings"), obj("Job", "pre", hook="PreDelete")),
    )
    assert [t.key.name for t in p.tasks] == ["settings"]


@settings(deadline=None)  # a loaded machine must not fail it
@given(
    generate_name=st.from_regex(r"[a-z][a-z0-9-]{0,20}-", fullmatch=True),
    revision=st.from_regex(r"[0-9a-f]{0,40}", fullmatch=True),
    hook_type=st.sampled_from([HookType.PRE_DELETE, HookType.POST_DELETE]),
)
def test_delete_hook_names_are_stable_lowercase_and_keep_the_prefix(
    generate_name: str, revision: str, hook_type: HookType
) -> None:
    name = delete_hook_name(generate_name, revision=revision, hook_type=hook_type)
    assert name == delete_hook_name(generate_name, revision=revision, hook_type=hook_type)
    assert name.startswith(generate_name) and name == name.lower()
    assert name.endswith(hook_type.value.lower())


@settings(deadline=None)
@given(
    values=st.lists(
        st.sampled_from(["PreDelete", "PostDelete", "PreSync", "Skip", "Bogus", " PostDelete"]),
        max_size=4,
    )
)
def test_hook_annotation_lists_are_parsed_for_delete_hooks(values: list[str]) -> None:
    job = obj("Job", "x", hook=",".join(values) or None)
    names = {v.strip() for v in values}
    assert is_delete_hook(job, HookType.PRE_DELETE) == ("PreDelete" in names)
    assert is_delete_hook(job, HookType.POST_DELETE) == ("PostDelete" in names)


def test_a_deletion_takes_its_hooks_from_the_last_successful_sync_with_manifests(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "hub.db", create=True)
    try:
        history = SyncHistory(store, lambda: keyring(MasterKey.generate("t")))
        assert last_synced_manifests(history, "a") == ([], "")
        pre = obj("Job", "pre", hook="PreDelete")
        for n, phase, recorded in (
            (1, OperationPhase.SUCCEEDED, [pre]),
            (2, OperationPhase.FAILED, [obj("Job", "newer-but-failed", hook="PreDelete")]),
            (3, OperationPhase.SUCCEEDED, None),  # nothing sealed: cannot tell
        ):
            history.record(op("a", n, phase), finished_at=datetime.now(UTC), manifests=recorded)
        assert last_synced_manifests(history, "a") == ([pre], f"{1:040x}")
    finally:
        store.close()
