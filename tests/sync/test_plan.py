"""The pure sync plan: phases, waves, kind order, dependency fix-ups, hooks, prune."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from hub.sync.model import EmptyRenderGuardError, SharedResourceError, SyncOptions
from hub.sync.plan import (
    KIND_ORDER,
    Action,
    SyncPlan,
    TaskOptions,
    applies_unchanged,
    kind_rank,
    plan_deletion,
    plan_sync,
)
from hub.sync.resources import (
    HOOK_FINALIZER,
    TRACKING_ANNOTATION,
    HookDeletePolicy,
    Phase,
    ResourceKey,
    with_tracking_id,
)
from hub.sync.validate import SourcedManifest, validate_manifests

REV = "4f2a9c1d8e7b6a5f4f2a9c1d8e7b6a5f4f2a9c1d"
STARTED = 1_700_000_000

API = {
    "Namespace": "v1",
    "ServiceAccount": "v1",
    "ConfigMap": "v1",
    "Service": "v1",
    "Secret": "v1",
    "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
    "ClusterRole": "rbac.authorization.k8s.io/v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "Ingress": "networking.k8s.io/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "CustomResourceDefinition": "apiextensions.k8s.io/v1",
    "Widget": "example.com/v1",
}


def obj(
    kind: str,
    name: str | None,
    *,
    ns: str | None = "payments",
    wave: int | None = None,
    hook: str | None = None,
    policy: str | None = None,
    options: str | None = None,
    generate_name: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if name:
        meta["name"] = name
    if generate_name:
        meta["generateName"] = generate_name
    if ns:
        meta["namespace"] = ns
    anns = {}
    if wave is not None:
        anns["argocd.argoproj.io/sync-wave"] = str(wave)
    if hook:
        anns["argocd.argoproj.io/hook"] = hook
    if policy:
        anns["argocd.argoproj.io/hook-delete-policy"] = policy
    if options:
        anns["argocd.argoproj.io/sync-options"] = options
    if anns:
        meta["annotations"] = anns
    return {"apiVersion": API[kind], "kind": kind, "metadata": meta, **extra}


def manifests(*objs: dict[str, Any]) -> list[SourcedManifest]:
    raw = [SourcedManifest(obj=o, origin=f"f{i}.yaml") for i, o in enumerate(objs)]
    return list(validate_manifests(raw, destination_namespace="payments").manifests)


def tracked(*objs: dict[str, Any], app: str = "payments") -> list[dict[str, Any]]:
    return [with_tracking_id(o, app) for o in objs]


def plan(*objs: dict[str, Any], live: list[dict[str, Any]] | None = None, **kw: Any) -> SyncPlan:
    return plan_sync(
        app="payments",
        desired=manifests(*objs),
        live=tracked(*(live or [])),
        revision=REV,
        started_at=STARTED,
        **kw,
    )


def steps(p: SyncPlan) -> list[tuple[str, int, str, str, str]]:
    return [
        (w.phase.value, w.wave, t.action.value, t.key.kind, t.key.name)
        for w in p.waves
        for t in w.tasks
    ]


def seed() -> list[dict[str, Any]]:
    return [
        obj("Ingress", "payments", wave=2),
        obj("Deployment", "payments", wave=1),
        obj("Job", None, hook="PostSync", generate_name="smoke-"),
        obj("ConfigMap", "payments-config", wave=-1),
        obj("RoleBinding", "payments-reader", wave=-2),
        obj("Namespace", "payments", ns=None, wave=-2),
        obj("Job", "db-migrate", hook="PreSync"),
        obj("HorizontalPodAutoscaler", "payments", wave=2),
        obj("Role", "payments-reader", wave=-2),
        obj("ServiceAccount", "payments", wave=-2),
        obj("Service", "payments", wave=1),
    ]


def test_seed_scenario_orders_phases_waves_kinds_and_names_like_argo_cd() -> None:
    p = plan(*seed())
    assert steps(p) == [
        # The PreSync Job lives in namespace payments, so Argo's fix-up moves the Namespace
        # in front of it, into PreSync wave 0.
        ("PreSync", 0, "apply", "Namespace", "payments"),
        ("PreSync", 0, "apply", "Job", "db-migrate"),
        ("Sync", -2, "apply", "ServiceAccount", "payments"),
        ("Sync", -2, "apply", "Role", "payments-reader"),
        ("Sync", -2, "apply", "RoleBinding", "payments-reader"),
        ("Sync", -1, "apply", "ConfigMap", "payments-config"),
        ("Sync", 1, "apply", "Service", "payments"),
        ("Sync", 1, "apply", "Deployment", "payments"),
        ("Sync", 2, "apply", "HorizontalPodAutoscaler", "payments"),
        ("Sync", 2, "apply", "Ingress", "payments"),
        ("PostSync", 0, "apply", "Job", "smoke-4f2a9c1-postsync-1700000000"),
    ]
    assert p.multi_step
    assert [w.title for w in p.waves][:3] == ["PreSync wave 0", "Sync wave -2", "Sync wave -1"]


def test_namespace_stays_in_its_wave_when_nothing_earlier_lives_in_it() -> None:
    p = plan(obj("Namespace", "payments", ns=None, wave=-2), obj("ConfigMap", "c", wave=-1))
    assert steps(p) == [
        ("Sync", -2, "apply", "Namespace", "payments"),
        ("Sync", -1, "apply", "ConfigMap", "c"),
    ]


def test_crd_moves_in_front_of_its_first_custom_resource() -> None:
    crd = obj(
        "CustomResourceDefinition",
        "widgets.example.com",
        ns=None,
        wave=5,
        spec={"group": "example.com", "names": {"kind": "Widget"}, "scope": "Namespaced"},
    )
    p = plan(crd, obj("Widget", "w1", wave=0))
    assert steps(p) == [
        ("Sync", 0, "apply", "CustomResourceDefinition", "widgets.example.com"),
        ("Sync", 0, "apply", "Widget", "w1"),
    ]


def test_every_applied_object_carries_its_tracking_id() -> None:
    p = plan(obj("ConfigMap", "c"))
    (task,) = p.tasks
    assert task.desired is not None
    assert task.desired["metadata"]["annotations"][TRACKING_ANNOTATION] == (
        "payments:/ConfigMap:payments/c"
    )


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (
            ["Deployment", "Namespace", "Widget", "ConfigMap"],
            ["Namespace", "ConfigMap", "Deployment", "Widget"],
        ),
        (["Ingress", "IngressClass", "APIService"], ["IngressClass", "Ingress", "APIService"]),
        (["Widget", "Gadget"], ["Widget", "Gadget"]),  # unknown kinds tie; name decides later
    ],
)
def test_kind_rank_orders_known_kinds_and_puts_custom_kinds_last(
    kinds: list[str], expected: list[str]
) -> None:
    assert sorted(kinds, key=kind_rank) == expected
    assert kind_rank("Namespace") == 0
    assert kind_rank("Widget") == len(KIND_ORDER)


def test_hook_with_before_hook_creation_deletes_the_old_object_before_applying() -> None:
    old = obj("Job", "db-migrate", hook="PreSync")
    p = plan(obj("Job", "db-migrate", hook="PreSync"), live=[old])
    (wave,) = p.waves
    assert [(t.action, t.key.name) for t in wave.tasks] == [
        (Action.DELETE, "db-migrate"),
        (Action.APPLY, "db-migrate"),
    ]
    apply = wave.tasks[1]
    assert apply.hook and apply.hook_delete_policies == {HookDeletePolicy.BEFORE_HOOK_CREATION}
    assert apply.desired is not None
    assert HOOK_FINALIZER in apply.desired["metadata"]["finalizers"]


def test_a_leftover_hook_finalizer_is_flagged_for_the_executor() -> None:
    old = obj("Job", "db-migrate", hook="PreSync")
    old["metadata"]["finalizers"] = [HOOK_FINALIZER]
    delete, _ = plan(obj("Job", "db-migrate", hook="PreSync"), live=[old]).tasks
    assert delete.action is Action.DELETE and delete.live_hook_finalizer
    fresh = plan(
        obj("Job", "db-migrate", hook="PreSync"), live=[obj("Job", "db-migrate", hook="PreSync")]
    )
    assert not fresh.tasks[0].live_hook_finalizer


def test_hook_succeeded_policy_does_not_delete_before_creation() -> None:
    old = obj("Job", "db-migrate", hook="PreSync", policy="HookSucceeded")
    p = plan(obj("Job", "db-migrate", hook="PreSync", policy="HookSucceeded"), live=[old])
    assert [t.action for t in p.tasks] == [Action.APPLY]


def test_generate_name_hooks_are_named_deterministically_per_operation() -> None:
    hook = obj("Job", None, hook="PreSync,PostSync", generate_name="check-")
    first = plan(hook)
    again = plan(hook)
    names = [t.key.name for t in first.tasks]
    assert names == ["check-4f2a9c1-presync-1700000000", "check-4f2a9c1-postsync-1700000000"]
    assert [t.key.name for t in again.tasks] == names
    later = plan_sync(
        app="payments", desired=manifests(hook), live=[], revision="abc", started_at=STARTED + 60
    )
    assert [t.key.name for t in later.tasks] == [
        "check-abc-presync-1700000060",
        "check-abc-postsync-1700000060",
    ]


def test_skip_objects_and_sync_fail_hooks_stay_out_of_the_waves() -> None:
    p = plan(
        obj("ConfigMap", "skipped", hook="Skip"),
        obj("Job", "cleanup", hook="SyncFail"),
        obj("ConfigMap", "c"),
    )
    assert steps(p) == [("Sync", 0, "apply", "ConfigMap", "c")]
    assert [(t.phase, t.key.name) for t in p.sync_fail] == [(Phase.SYNC_FAIL, "cleanup")]


def test_selective_sync_skips_hooks_and_unselected_resources() -> None:
    only = frozenset(
        {ResourceKey(group="apps", kind="Deployment", namespace="payments", name="payments")}
    )
    p = plan(*seed(), only=only)
    assert steps(p) == [("Sync", 1, "apply", "Deployment", "payments")]


def test_prune_tasks_mirror_creation_waves_so_the_last_created_goes_first() -> None:
    live = [
        obj("ConfigMap", "early", wave=-1),
        obj("ConfigMap", "middle", wave=0),
        obj("Deployment", "late", wave=3),
    ]
    p = plan(obj("ConfigMap", "kept", wave=0), live=live, prune=True)
    prunes = [(w.wave, t.key.name) for w in p.waves for t in w.tasks if t.action is Action.PRUNE]
    assert prunes == [(-1, "late"), (0, "middle"), (3, "early")]
    assert all(t.skip is None for t in p.tasks)


def test_prune_runs_before_applies_within_a_wave() -> None:
    p = plan(obj("Deployment", "new"), live=[obj("ConfigMap", "old")], prune=True)
    (wave,) = p.waves
    assert [(t.action, t.key.name) for t in wave.tasks] == [
        (Action.PRUNE, "old"),
        (Action.APPLY, "new"),
    ]


def test_prune_last_moves_prunes_after_the_last_sync_wave() -> None:
    live = [obj("ConfigMap", "old", wave=-5)]
    p = plan(
        obj("Deployment", "d", wave=4),
        live=live,
        prune=True,
        options=SyncOptions.parse(["PruneLast=true"]),
    )
    assert steps(p)[-1] == ("Sync", 5, "prune", "ConfigMap", "old")
    annotated = [obj("ConfigMap", "old", wave=-5, options="PruneLast=true")]
    p2 = plan(obj("Deployment", "d", wave=4), live=annotated, prune=True)
    assert steps(p2)[-1] == ("Sync", 5, "prune", "ConfigMap", "old")


@pytest.mark.parametrize(
    ("prune", "annotation", "skip"),
    [
        (False, None, "ignored (requires pruning)"),
        (True, "Prune=false", "ignored (no prune)"),
        (True, "Prune=confirm", "waiting for prune confirmation (Prune=confirm)"),
        (True, None, None),
    ],
)
def test_prune_tasks_are_recorded_but_skipped_unless_allowed(
    prune: bool, annotation: str | None, skip: str | None
) -> None:
    p = plan(
        obj("ConfigMap", "kept"), live=[obj("ConfigMap", "gone", options=annotation)], prune=prune
    )
    (task,) = [t for t in p.tasks if t.action is Action.PRUNE]
    assert task.skip == skip


def test_only_objects_tracked_by_this_app_are_ever_pruned() -> None:
    others = [
        obj("ConfigMap", "untracked"),
        *tracked(obj("ConfigMap", "billing-owned"), app="billing"),
        # an id copied from another object names that object, not this one
        {
            **obj("ConfigMap", "copied"),
            "metadata": {
                **obj("ConfigMap", "copied")["metadata"],
                "annotations": {TRACKING_ANNOTATION: "payments:/ConfigMap:payments/kept"},
            },
        },
    ]
    p = plan_sync(
        app="payments",
        desired=manifests(obj("ConfigMap", "kept")),
        live=[*others, *tracked(obj("ConfigMap", "gone"))],
        revision=REV,
        started_at=STARTED,
        prune=True,
    )
    assert [(t.action, t.key.name) for t in p.tasks] == [
        (Action.PRUNE, "gone"),
        (Action.APPLY, "kept"),
    ]


def test_an_untracked_live_object_git_declares_is_adopted_by_the_apply() -> None:
    p = plan_sync(
        app="payments",
        desired=manifests(obj("ConfigMap", "c")),
        live=[obj("ConfigMap", "c")],
        revision=REV,
        started_at=STARTED,
        prune=True,
    )
    (task,) = p.tasks
    assert task.action is Action.APPLY and task.live is not None
    assert (
        task.desired is not None and TRACKING_ANNOTATION in task.desired["metadata"]["annotations"]
    )


def test_a_resource_tracked_by_another_app_is_taken_over_with_a_warning_or_refused() -> None:
    theirs = tracked(obj("ConfigMap", "shared"), app="billing")
    p = plan_sync(
        app="payments",
        desired=manifests(obj("ConfigMap", "shared")),
        live=theirs,
        revision=REV,
        started_at=STARTED,
    )
    assert p.warnings == (
        "/ConfigMap payments/shared is tracked by app billing; this sync takes it over",
    )
    with pytest.raises(SharedResourceError, match="tracked by app billing"):
        plan_sync(
            app="payments",
            desired=manifests(obj("ConfigMap", "shared")),
            live=theirs,
            revision=REV,
            started_at=STARTED,
            options=SyncOptions.parse(["FailOnSharedResource=true"]),
        )


def test_live_hooks_are_never_pruned() -> None:
    p = plan(obj("ConfigMap", "kept"), live=[obj("Job", "old-hook", hook="PreSync")], prune=True)
    assert [t.action for t in p.tasks] == [Action.APPLY]


def test_empty_render_refuses_to_prune_everything_unless_allow_empty() -> None:
    live = [obj("ConfigMap", "a"), obj("Deployment", "b")]
    with pytest.raises(EmptyRenderGuardError, match="refusing"):
        plan(live=live, prune=True)
    allowed = plan(live=live, prune=True, allow_empty=True)
    assert sorted(t.key.name for t in allowed.tasks) == ["a", "b"]
    # without prune nothing is deleted, so there is nothing to guard
    assert all(t.skip for t in plan(live=live).tasks)


def test_apply_out_of_sync_only_skips_synced_resources_but_not_hooks() -> None:
    cm = obj("ConfigMap", "same")
    synced = frozenset({ResourceKey.of(manifests(cm)[0].obj)})
    p = plan(
        cm,
        obj("ConfigMap", "changed"),
        obj("Job", "migrate", hook="PreSync"),
        live=[obj("ConfigMap", "same"), obj("ConfigMap", "changed")],
        synced=synced,
        options=SyncOptions.parse(["ApplyOutOfSyncOnly=true"]),
    )
    assert [t.key.name for t in p.tasks] == ["migrate", "changed"]


def test_create_namespace_adds_an_untracked_presync_namespace() -> None:
    p = plan(
        obj("ConfigMap", "c"),
        options=SyncOptions.parse(["CreateNamespace=true"]),
        destination_namespace="payments",
    )
    first = p.waves[0].tasks[0]
    assert (first.phase, first.key.kind, first.key.name) == (
        Phase.PRE_SYNC,
        "Namespace",
        "payments",
    )
    assert first.desired is not None and "annotations" not in first.desired["metadata"]
    existing = plan(
        obj("ConfigMap", "c"),
        options=SyncOptions.parse(["CreateNamespace=true"]),
        destination_namespace="payments",
        namespace_exists=True,
    )
    assert [t.key.kind for t in existing.tasks] == ["ConfigMap"]


def test_resource_sync_options_win_over_app_options() -> None:
    p = plan(
        obj("ConfigMap", "a", options="Replace=true,Validate=false,ServerSideApply=false"),
        obj("ConfigMap", "b"),
        options=SyncOptions.parse(["Replace=false", "PrunePropagationPolicy=background"]),
    )
    a, b = p.tasks
    assert (a.options.replace, a.options.validate, a.options.server_side_apply) == (
        True,
        False,
        False,
    )
    assert (b.options.replace, b.options.validate, b.options.server_side_apply) == (
        False,
        True,
        True,
    )
    assert a.options.prune_propagation == b.options.prune_propagation == "background"


def test_deletion_plan_keeps_delete_false_resources() -> None:
    p = plan_deletion(
        app="payments",
        live=[
            *tracked(obj("ConfigMap", "keep", options="Delete=false"), obj("ConfigMap", "drop")),
            *tracked(obj("ConfigMap", "theirs"), app="billing"),
            obj("ConfigMap", "untracked"),
        ],
    )
    assert {t.key.name: t.skip for t in p.tasks} == {"drop": None, "keep": "ignored (Delete=false)"}


def test_plan_prints_for_dry_run() -> None:
    text = plan(*seed(), live=[obj("ConfigMap", "old")]).format()
    assert text.splitlines()[0] == "PreSync wave 0"
    assert "prune  /ConfigMap payments/old (skipped: ignored (requires pruning))" in text
    assert "apply  batch/Job payments/db-migrate (hook, BeforeHookCreation)" in text


# --------------------------------------------------------------------------- properties

_KINDS = ["Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Job", "Role", "Widget"]


@st.composite
def _objects(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=0, max_value=12))
    out = []
    names: set[tuple[str, str]] = set()
    for _ in range(n):
        kind = draw(st.sampled_from(_KINDS))
        name = draw(st.sampled_from(["a", "b", "c", "d", "payments"]))
        if (kind, name) in names:
            continue
        names.add((kind, name))
        wave = draw(st.integers(min_value=-3, max_value=3))
        hook = draw(st.sampled_from([None, None, None, "PreSync", "PostSync"]))
        ns = None if kind == "Namespace" else "payments"
        out.append(obj(kind, name, ns=ns, wave=wave, hook=hook if kind == "Job" else None))
    return out


def _order(objs: list[dict[str, Any]]) -> list[tuple[str, int, str, str, str]]:
    return steps(plan(*objs))


@settings(max_examples=150, deadline=None)
@given(_objects(), st.randoms(use_true_random=False))
def test_ordering_is_deterministic_and_stable_under_input_permutation(
    objs: list[dict[str, Any]], rnd: Any
) -> None:
    expected = _order(objs)
    shuffled = list(objs)
    rnd.shuffle(shuffled)
    assert _order(shuffled) == expected


@settings(max_examples=150, deadline=None)
@given(_objects())
def test_ordering_is_a_total_order_by_phase_then_wave(objs: list[dict[str, Any]]) -> None:
    order = plan(*objs)
    keys = [(w.phase.order, w.wave) for w in order.waves]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    tasks = order.tasks
    assert len({(t.phase, t.action, t.key) for t in tasks}) == len(tasks)
    for w in order.waves:
        applies = [t for t in w.tasks if t.action is Action.APPLY and t.note == ""]
        ranks = [(kind_rank(t.key.kind), t.key.name) for t in applies]
        assert ranks == sorted(ranks)


def test_objects_outside_the_project_are_never_pruned_but_warned_about() -> None:
    def outside(key: ResourceKey) -> str | None:
        return "namespace kube-system is not permitted" if key.namespace == "kube-system" else None

    p = plan(
        obj("ConfigMap", "kept"),
        live=[obj("ConfigMap", "gone"), obj("ConfigMap", "sys", ns="kube-system")],
        prune=True,
        prune_forbidden=outside,
    )
    skips = {t.key.name: t.skip for t in p.tasks if t.action is Action.PRUNE}
    assert skips == {
        "gone": None,
        "sys": "not pruned: outside the project: namespace kube-system is not permitted",
    }
    assert any("kube-system/sys is not pruned" in w for w in p.warnings)


def test_first_write_is_the_first_request_the_executor_will_send() -> None:
    # The seed plan starts with its Namespace; without it, with the PreSync hook.
    assert (first := plan(*seed()).first_write) is not None
    assert (first.hook, first.key.kind) == (False, "Namespace")
    hooked = plan(*(o for o in seed() if o["kind"] != "Namespace"))
    assert (first := hooked.first_write) is not None
    assert (first.hook, first.key.name) == (True, "db-migrate")
    # A wave's prunes go before its applies.
    pruning = plan(obj("Deployment", "new"), live=[obj("ConfigMap", "old")], prune=True)
    assert (first := pruning.first_write) is not None
    assert (first.action, first.key.name) == (Action.PRUNE, "old")
    # A skipped prune writes nothing: the first apply comes first, even in a later wave.
    skipped = plan(obj("ConfigMap", "kept", wave=3), live=[obj("ConfigMap", "gone", wave=-4)])
    assert skipped.tasks[0].skip == "ignored (requires pruning)"
    assert (first := skipped.first_write) is not None
    assert (first.action, first.key.name) == (Action.APPLY, "kept")
    # Kinds order applies within a wave: the Namespace before what lives in it.
    ordered = plan(obj("ConfigMap", "c"), obj("Namespace", "payments", ns=None))
    assert (first := ordered.first_write) is not None
    assert first.key.kind == "Namespace"


def test_a_plan_that_writes_nothing_has_no_first_write() -> None:
    assert plan().first_write is None
    only_skipped = plan(live=[obj("ConfigMap", "gone")])
    assert only_skipped.tasks and only_skipped.first_write is None


def _key(o: dict[str, Any]) -> ResourceKey:
    return ResourceKey.of(o)


def test_an_apply_of_an_object_already_as_declared_is_marked_unchanged() -> None:
    cm, deploy = obj("ConfigMap", "c"), obj("Deployment", "d")
    p = plan(cm, deploy, live=[cm, deploy], alike=frozenset({_key(cm)}))
    by_name = {t.key.name: t for t in p.tasks}
    assert (by_name["c"].unchanged, by_name["d"].unchanged) == (True, False)
    # the first change passes over it; the first write does not
    assert p.first_write is by_name["c"]
    assert p.first_change is by_name["d"]
    # nothing but alike keys is ever marked, and only when the object is live
    assert not any(t.unchanged for t in plan(cm, deploy, live=[cm, deploy]).tasks)
    missing = plan(cm, live=[], alike=frozenset({_key(cm)}))
    assert not missing.tasks[0].unchanged


def test_a_plan_whose_applies_are_all_unchanged_has_no_first_change() -> None:
    cm = obj("ConfigMap", "c")
    p = plan(cm, live=[cm], alike=frozenset({_key(cm)}))
    assert p.first_write is p.tasks[0] and p.first_change is None


@pytest.mark.parametrize(
    ("why", "desired", "live"),
    [
        # an object the apply adopts (no tracking id yet) or takes over from another app
        ("untracked", obj("ConfigMap", "c"), obj("ConfigMap", "c")),
        ("other app", obj("ConfigMap", "c"), with_tracking_id(obj("ConfigMap", "c"), "other")),
        # a status in Git: the compare never looks at it, an apply may write it
        ("status", obj("ConfigMap", "c", status={"x": "1"}), obj("ConfigMap", "c")),
        # other requests than the apply the comparison predicts
        ("replace", obj("ConfigMap", "c", options="Replace=true"), obj("ConfigMap", "c")),
        ("force", obj("ConfigMap", "c", options="Force=true"), obj("ConfigMap", "c")),
        ("csa", obj("ConfigMap", "c", options="ServerSideApply=false"), obj("ConfigMap", "c")),
    ],
)
def test_an_apply_that_could_still_change_something_is_not_unchanged(
    why: str, desired: dict[str, Any], live: dict[str, Any]
) -> None:
    tracked_live = live if why in ("untracked", "other app") else tracked(live)[0]
    p = plan_sync(
        app="payments",
        desired=manifests(desired),
        live=[tracked_live],
        revision=REV,
        started_at=STARTED,
        alike=frozenset({_key(desired)}),
    )
    (task,) = p.tasks
    assert task.action is Action.APPLY and not task.unchanged, why


def test_hooks_and_prunes_are_never_unchanged() -> None:
    job, cm = obj("Job", "migrate", hook="PreSync"), obj("ConfigMap", "c")
    p = plan(
        job,
        cm,
        live=[job, cm, obj("ConfigMap", "gone")],
        prune=True,
        alike=frozenset({_key(job), _key(cm), _key(obj("ConfigMap", "gone"))}),
    )
    marked = {(t.action, t.key.name) for t in p.tasks if t.unchanged}
    assert marked == {(Action.APPLY, "c")}
    assert {t.key.name for t in p.tasks} == {"migrate", "c", "gone"}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


# metadata of any shape, often with a tracking id that may or may not match
_meta = _json | st.fixed_dictionaries(
    {
        "annotations": _json
        | st.dictionaries(
            st.sampled_from([TRACKING_ANNOTATION, "x"]), st.sampled_from(["a", "b"]) | _json
        )
    }
)
_obj = st.dictionaries(st.sampled_from(["status", "spec", "kind"]), _json)


@settings(max_examples=300, deadline=None)
@given(
    desired=st.tuples(_obj, _meta).map(lambda om: {**om[0], "metadata": om[1]}),
    live=st.none() | st.tuples(_obj, _meta).map(lambda om: {**om[0], "metadata": om[1]}),
    replace=st.booleans(),
)
def test_applies_unchanged_takes_any_object_shape(
    desired: dict[str, Any], live: dict[str, Any] | None, replace: bool
) -> None:
    # Live objects and Git's manifests of any shape: an answer, never an exception, and
    # never "unchanged" without our tracking id on both sides.
    answer = applies_unchanged(desired, live, TaskOptions(replace=replace))
    event(f"unchanged: {answer}")
    if answer:
        assert live is not None and not replace and "status" not in desired
        anns = desired["metadata"]["annotations"]
        assert anns[TRACKING_ANNOTATION] == live["metadata"]["annotations"][TRACKING_ANNOTATION]
