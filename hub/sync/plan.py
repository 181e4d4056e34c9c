"""The pure sync plan: which objects to apply, delete and prune, in which phase and wave.

This mirrors gitops-engine's ``getSyncTasks`` and ``syncTasks.Sort``:

1. One apply task per desired resource (phase Sync) and per hook and hook phase; ``Skip``
   objects get none; live objects Git no longer declares get prune tasks (never live hooks).
2. Prune tasks get their waves mirrored (the last created is pruned first); ``PruneLast``
   moves them to (last Sync wave + 1).
3. Sort by phase, wave, kind rank (``kind_rank``), name; then the two dependency fix-ups:
   a Namespace moves in front of the first task living in it, a CRD in front of the first
   of its custom resources, each taking that task's phase and wave.
4. Within a phase+wave the executor runs prunes first, then BeforeHookCreation deletes, then
   applies (``PlanWave.tasks`` is in that order). SyncFail hooks are kept aside.

The plan decides nothing about time: the executor (I/O half) applies one wave, waits until
every applied object with a health check is Healthy and fresh (``health.gate_health``), and
stops at the first failure, running ``sync_fail`` tasks then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hub.sync.model import EmptyRenderGuardError, SharedResourceError, SyncOptions
from hub.sync.resources import (
    DELETE_HOOK_TYPES,
    HOOK_FINALIZER,
    TRACKING_ANNOTATION,
    HookDeletePolicy,
    HookType,
    Phase,
    ResourceKey,
    annotations_of,
    clone_tree,
    effective_sync_options,
    hook_delete_policies,
    hook_phases,
    is_delete_hook,
    is_hook,
    is_skip,
    owning_app,
    sync_wave,
    with_tracking_id,
)
from hub.sync.validate import SourcedManifest

# gitops-engine sync_tasks.go kindOrder (from Helm's kind_sorter); every other kind after.
KIND_ORDER: tuple[str, ...] = (
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
)
_KIND_RANK = {kind: i for i, kind in enumerate(KIND_ORDER)}
PRUNE_PROPAGATION_POLICIES = ("foreground", "background", "orphan")


def kind_rank(kind: str) -> int:
    """Apply order of a kind within a wave: lower first; only the kind is compared (not the
    group, as in Argo CD), unknown kinds (all custom resources) rank last together."""
    return _KIND_RANK.get(kind, len(KIND_ORDER))


class Action(StrEnum):
    APPLY = "apply"
    PRUNE = "prune"
    DELETE = "delete"  # a hook's previous object, removed before re-creating (BeforeHookCreation)


_ACTION_ORDER = {Action.PRUNE: 0, Action.DELETE: 1, Action.APPLY: 2}


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """Sync options that change how the executor writes one object."""

    server_side_apply: bool = True
    replace: bool = False
    force: bool = False
    validate: bool = True
    prune_propagation: str = "foreground"
    skip_dry_run_on_missing_resource: bool = False


@dataclass(frozen=True, kw_only=True)
class SyncTask:
    action: Action
    phase: Phase
    wave: int
    key: ResourceKey
    desired: dict[str, Any] | None = None  # the exact object to apply (apply tasks)
    live: dict[str, Any] | None = None
    hook: bool = False
    hook_delete_policies: frozenset[HookDeletePolicy] = frozenset()
    options: TaskOptions = field(default_factory=TaskOptions)
    origin: str = ""
    # Set when the task is recorded but must not be executed, with the reason to report
    # (Argo's PruneSkipped results: "ignored (requires pruning)", "ignored (no prune)").
    skip: str | None = None
    note: str = ""
    # An apply of an object already live as Git declares it (``applies_unchanged``):
    # accepted, it changes nothing; refused, it leaves the object as declared.
    unchanged: bool = False

    @property
    def live_hook_finalizer(self) -> bool:
        """The live object still carries our hook finalizer (a previous run did not finish):
        the executor must remove it before deleting or re-running the hook, as Argo does at
        the start of every pass, or the delete hangs "Pending deletion" (gitops-engine#482)."""
        meta = (self.live or {}).get("metadata") or {}
        finalizers = meta.get("finalizers") if isinstance(meta, Mapping) else None
        return isinstance(finalizers, list) and HOOK_FINALIZER in finalizers

    def describe(self) -> str:
        parts = [f"{self.action.value:<6} {self.key}"]
        extra = []
        if self.hook:
            extra.append("hook")
            if self.hook_delete_policies:
                extra.append("/".join(sorted(p.value for p in self.hook_delete_policies)))
        if self.skip:
            extra.append(f"skipped: {self.skip}")
        if self.note:
            extra.append(self.note)
        if self.options.replace:
            extra.append("Replace")
        if extra:
            parts.append(f"({', '.join(extra)})")
        return " ".join(parts)


@dataclass(frozen=True, kw_only=True)
class PlanWave:
    phase: Phase
    wave: int
    tasks: tuple[SyncTask, ...]

    @property
    def title(self) -> str:
        return f"{self.phase.value} wave {self.wave}"


@dataclass(frozen=True, kw_only=True)
class SyncPlan:
    waves: tuple[PlanWave, ...]
    sync_fail: tuple[SyncTask, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def tasks(self) -> tuple[SyncTask, ...]:
        return tuple(t for w in self.waves for t in w.tasks)

    @property
    def multi_step(self) -> bool:
        """More than one phase/wave: applied resources must be healthy before the next step
        (a single-step sync succeeds right after apply, as in Argo CD)."""
        return len(self.waves) > 1

    @property
    def first_write(self) -> SyncTask | None:
        """The task whose request is the plan's first write to the cluster (None: the plan
        writes nothing): the first one not skipped, since a wave lists its prunes and hook
        deletes before its applies, in the order ``run_wave`` sends them."""
        return next((t for w in self.waves for t in w.tasks if not t.skip), None)

    @property
    def first_change(self) -> SyncTask | None:
        """The task whose request is the plan's first write that can change the cluster
        (None: there is none): ``first_write``, passing over applies of objects already
        live as declared (``SyncTask.unchanged``)."""
        return next(
            (t for w in self.waves for t in w.tasks if not t.skip and not t.unchanged), None
        )

    def format(self) -> str:
        """The plan as text, for ``--dry-run``."""
        lines: list[str] = []
        for w in self.waves:
            lines.append(w.title)
            lines.extend(f"  {t.describe()}" for t in w.tasks)
        if self.sync_fail:
            lines.append("SyncFail (only if the sync fails)")
            lines.extend(f"  {t.describe()}" for t in self.sync_fail)
        if not lines:
            lines.append("nothing to do")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- building


@dataclass(kw_only=True)
class _Task:
    """Mutable working copy while ordering (Argo mutates waveOverride and phase)."""

    action: Action
    phase: Phase
    wave: int
    key: ResourceKey
    desired: dict[str, Any] | None
    live: dict[str, Any] | None
    hook: bool = False
    policies: frozenset[HookDeletePolicy] = frozenset()
    options: TaskOptions = field(default_factory=TaskOptions)
    origin: str = ""
    skip: str | None = None
    note: str = ""
    unchanged: bool = False

    def sort_key(self) -> tuple[int, int, int, str, str, str, str, int]:
        return (
            self.phase.order,
            self.wave,
            kind_rank(self.key.kind),
            self.key.name,
            self.key.namespace,
            self.key.group,
            self.key.kind,
            _ACTION_ORDER[self.action],
        )

    def freeze(self, action: Action | None = None) -> SyncTask:
        return SyncTask(
            action=action or self.action,
            phase=self.phase,
            wave=self.wave,
            key=self.key,
            desired=self.desired if (action or self.action) is Action.APPLY else None,
            live=self.live,
            hook=self.hook,
            hook_delete_policies=self.policies,
            options=self.options,
            origin=self.origin,
            skip=self.skip,
            note=self.note,
            unchanged=self.unchanged and (action or self.action) is Action.APPLY,
        )


def _task_options(
    obj: Mapping[str, Any] | None, app_options: SyncOptions, warnings: list[str]
) -> TaskOptions:
    opts = effective_sync_options(obj, app_options)
    policy = (opts.get("PrunePropagationPolicy") or "foreground").lower()
    if policy not in PRUNE_PROPAGATION_POLICIES:
        warnings.append(
            f"PrunePropagationPolicy={policy!r} is not one of {', '.join(PRUNE_PROPAGATION_POLICIES)}; "
            "using foreground"
        )
        policy = "foreground"
    return TaskOptions(
        server_side_apply=not opts.has("ServerSideApply", "false"),
        replace=opts.has("Replace", "true"),
        force=opts.has("Force", "true"),
        validate=not opts.has("Validate", "false"),
        prune_propagation=policy,
        skip_dry_run_on_missing_resource=opts.has("SkipDryRunOnMissingResource", "true"),
    )


def applies_unchanged(
    desired: Mapping[str, Any], live: Mapping[str, Any] | None, options: TaskOptions
) -> bool:
    """Whether a server-side apply of ``desired`` over ``live``, which the comparison found
    alike (``AppComparison.alike_keys``), would change nothing the object holds.

    The comparison leaves out what an apply can still write: our tracking id (absent on
    an object the apply adopts, or naming another app) and a ``status`` in Git (kept by
    an apply to a kind without the status subresource). A PUT (``Replace=true``) and
    ``Force=true`` are other requests than the apply the comparison predicts."""
    if live is None or options.replace or options.force or not options.server_side_apply:
        return False
    if "status" in desired:
        return False
    ours = annotations_of(desired).get(TRACKING_ANNOTATION)
    return ours is not None and ours == annotations_of(live).get(TRACKING_ANNOTATION)


def hook_name(generate_name: str, *, revision: str, phase: Phase, started_at: int) -> str:
    """Argo's deterministic name for a ``generateName`` hook: the same for every pass of one
    operation, different for the next operation."""
    rev = revision[:7] if len(revision) >= 8 else revision
    return generate_name + f"{rev}-{phase.value}-{started_at}".lower()


def _crd_target(obj: Mapping[str, Any]) -> str | None:
    if obj.get("kind") != "CustomResourceDefinition":
        return None
    if not str(obj.get("apiVersion") or "").startswith("apiextensions.k8s.io/"):
        return None
    spec = obj.get("spec") or {}
    names = spec.get("names") if isinstance(spec, Mapping) else None
    group = spec.get("group") if isinstance(spec, Mapping) else None
    kind = names.get("kind") if isinstance(names, Mapping) else None
    if isinstance(group, str) and isinstance(kind, str):
        return f"{group}/{kind}"
    return None


def _adjust_deps(tasks: list[_Task], *, crd: bool) -> None:
    """Argo's ``adjustDeps``: move each dependency (Namespace / CRD) in front of the first
    task that needs it, with that task's phase and wave. Prune tasks are not considered."""
    first_index: dict[str, int] = {}
    for i in range(len(tasks)):
        t = tasks[i]
        if t.desired is None or t.action is not Action.APPLY:
            continue
        if crd:
            dep = _crd_target(t.desired)
        else:
            dep = t.key.name if (t.key.kind == "Namespace" and t.key.group == "") else None
        if dep is not None:
            index = first_index.get(dep)
            if index is not None:
                t.wave = tasks[index].wave
                t.phase = tasks[index].phase
                t.note = "moved before its first dependent"
                tasks[index + 1 : i + 1] = tasks[index:i]
                tasks[index] = t
                for k, v in first_index.items():
                    if v >= index:
                        first_index[k] = v + 1
        else:
            ref = f"{t.key.group}/{t.key.kind}" if crd else t.key.namespace
            if ref and ref not in first_index:
                first_index[ref] = i


def order_tasks(tasks: list[_Task]) -> list[_Task]:
    """Sort and apply the dependency fix-ups (exposed for the ordering property tests)."""
    ordered = sorted(tasks, key=_Task.sort_key)
    _adjust_deps(ordered, crd=False)
    _adjust_deps(ordered, crd=True)
    return ordered


def _mirror_prune_waves(tasks: list[_Task]) -> None:
    prune = [t for t in tasks if t.action is Action.PRUNE]
    waves = sorted({t.wave for t in prune})
    mirror = dict(zip(waves, reversed(waves), strict=True))
    for t in prune:
        t.wave = mirror[t.wave]


def _apply_prune_last(tasks: list[_Task], app_options: SyncOptions) -> None:
    last = 0
    for t in tasks:
        if t.phase is Phase.SYNC and t.wave > last:
            last = t.wave
    last += 1
    app_prune_last = app_options.has("PruneLast", "true")
    for t in tasks:
        if t.action is not Action.PRUNE:
            continue
        if app_prune_last or effective_sync_options(t.live, SyncOptions()).has("PruneLast", "true"):
            t.wave = last
            t.note = "PruneLast"


def _group(tasks: list[_Task]) -> tuple[list[PlanWave], list[SyncTask]]:
    groups: dict[tuple[int, int], list[_Task]] = {}
    sync_fail: list[SyncTask] = []
    for t in tasks:
        if t.phase is Phase.SYNC_FAIL:
            if (
                t.action is Action.APPLY
                and t.live is not None
                and (HookDeletePolicy.BEFORE_HOOK_CREATION in t.policies)
            ):
                sync_fail.append(t.freeze(Action.DELETE))
            sync_fail.append(t.freeze())
            continue
        groups.setdefault((t.phase.order, t.wave), []).append(t)
    waves: list[PlanWave] = []
    for (_, wave), members in sorted(groups.items()):
        prunes = [m.freeze() for m in members if m.action is Action.PRUNE]
        deletes = [
            m.freeze(Action.DELETE)
            for m in members
            if m.action is Action.APPLY
            and m.hook
            and m.live is not None
            and HookDeletePolicy.BEFORE_HOOK_CREATION in m.policies
        ]
        applies = [m.freeze() for m in members if m.action is Action.APPLY]
        waves.append(
            PlanWave(phase=members[0].phase, wave=wave, tasks=(*prunes, *deletes, *applies))
        )
    return waves, sync_fail


def plan_sync(
    *,
    app: str,
    desired: Sequence[SourcedManifest],
    live: Iterable[Mapping[str, Any]],
    revision: str,
    started_at: int,
    options: SyncOptions | None = None,
    prune: bool = False,
    allow_empty: bool = False,
    prune_confirmed: bool = False,
    only: frozenset[ResourceKey] | None = None,
    skip_hooks: bool = False,
    synced: frozenset[ResourceKey] = frozenset(),
    alike: frozenset[ResourceKey] = frozenset(),
    destination_namespace: str = "",
    namespace_exists: bool | None = None,
    hook_finalizer: bool = True,
    prune_forbidden: Callable[[ResourceKey], str | None] | None = None,
) -> SyncPlan:
    """Plan one sync operation.

    - ``desired``: validated manifests (namespaces settled); ``live``: the app's tracked live
      objects, live hooks included, plus any live objects Git declares (adopted by the apply).
      Only objects whose tracking id names ``app`` are ever pruned.
    - ``revision`` and ``started_at`` (operation start, Unix seconds) name ``generateName``
      hooks deterministically; re-plan with the same values on every pass of one operation.
    - ``prune``: execute prune tasks (else they are recorded as "requires pruning").
      With ``prune`` and not ``allow_empty``, a render that would prune every resource raises
      ``EmptyRenderGuardError`` (argo-cd#10987) — for manual syncs too.
    - ``only``: a selective sync (self-heal) of these keys; hooks never run in one.
    - ``synced``: keys the comparison found Synced, skipped under ``ApplyOutOfSyncOnly=true``.
    - ``alike``: keys the comparison found Synced with no ignore rule in the way
      (``AppComparison.alike_keys``); their applies are marked ``unchanged`` when
      ``applies_unchanged`` agrees.
    - ``namespace_exists``: whether the destination namespace exists, for ``CreateNamespace``.
    - ``prune_forbidden``: why a live object must never be pruned (outside the app's
      AppProject), or None; such objects are skipped with a warning.
    """
    app_options = options or SyncOptions()
    warnings: list[str] = []
    live_by_key: dict[ResourceKey, dict[str, Any]] = {}
    for obj in live:
        live_by_key[ResourceKey.of(obj)] = dict(obj)

    resources = [m for m in desired if not is_hook(m.obj)]
    hooks = [m for m in desired if is_hook(m.obj)]
    desired_keys = {m.key for m in resources}
    # Only what this app's tracking id claims is ever pruned (DESIGN.md); other live objects
    # may be passed (Git declares them and the apply adopts them) but are never deleted.
    prunable = [
        (k, obj)
        for k, obj in live_by_key.items()
        if k not in desired_keys
        and owning_app(obj) == app
        and not is_hook(obj)
        and not is_skip(obj)
    ]
    if prune and not allow_empty and not resources and prunable:
        raise EmptyRenderGuardError(
            f"app {app}: the render at {revision or 'this revision'} declares no resources, so "
            f"pruning would delete all {len(prunable)} live resources; refusing. Fix the source "
            "path, or set syncPolicy.automated.allowEmpty: true if emptying the app is intended"
        )

    tasks: list[_Task] = []
    apply_out_of_sync_only = app_options.has("ApplyOutOfSyncOnly", "true")
    fail_on_shared = app_options.has("FailOnSharedResource", "true")
    shared: list[str] = []
    for m in resources:
        if is_skip(m.obj):
            continue
        key = m.key
        if only is not None and key not in only:
            continue
        live_obj = live_by_key.get(key)
        owner = owning_app(live_obj) if live_obj is not None else None
        if owner not in (None, app):
            if fail_on_shared:
                shared.append(f"{key} (tracked by app {owner})")
            else:
                warnings.append(f"{key} is tracked by app {owner}; this sync takes it over")
        if apply_out_of_sync_only and key in synced and live_obj is not None:
            continue
        target = with_tracking_id(m.obj, app)
        task_options = _task_options(m.obj, app_options, warnings)
        tasks.append(
            _Task(
                action=Action.APPLY,
                phase=Phase.SYNC,
                wave=sync_wave(m.obj),
                key=key,
                desired=target,
                live=live_obj,
                options=task_options,
                origin=m.origin,
                unchanged=key in alike and applies_unchanged(target, live_obj, task_options),
            )
        )

    if shared:
        raise SharedResourceError(
            f"app {app}: FailOnSharedResource=true and Git declares resources another app "
            f"tracks: {', '.join(shared)}"
        )

    for key, obj in sorted(prunable, key=lambda kv: kv[0]):
        if only is not None and key not in only:
            continue
        opts = effective_sync_options(obj, app_options)
        skip = None
        if not prune:
            skip = "ignored (requires pruning)"
        elif opts.has("Prune", "false"):
            skip = "ignored (no prune)"
        elif opts.has("Prune", "confirm") and not prune_confirmed:
            skip = "waiting for prune confirmation (Prune=confirm)"
        forbidden = prune_forbidden(key) if prune_forbidden is not None else None
        if forbidden is not None:
            skip = f"not pruned: outside the project: {forbidden}"
            warnings.append(f"{key} is not pruned: {forbidden}")
        tasks.append(
            _Task(
                action=Action.PRUNE,
                phase=Phase.SYNC,
                wave=sync_wave(obj),
                key=key,
                desired=None,
                live=obj,
                options=_task_options(obj, app_options, warnings),
                skip=skip,
            )
        )

    if not skip_hooks and only is None:
        for m in hooks:
            for phase in hook_phases(m.obj):
                target = _named_hook(m.obj, revision, phase, started_at)
                if hook_finalizer:
                    meta = target["metadata"]
                    finalizers = list(meta.get("finalizers") or [])
                    if HOOK_FINALIZER not in finalizers:
                        meta["finalizers"] = [*finalizers, HOOK_FINALIZER]
                key = ResourceKey.of(target)
                # the tracking id must name the final object, generated name included
                target = with_tracking_id(target, app)
                tasks.append(
                    _Task(
                        action=Action.APPLY,
                        phase=phase,
                        wave=sync_wave(m.obj),
                        key=key,
                        desired=target,
                        live=live_by_key.get(key),
                        hook=True,
                        policies=hook_delete_policies(m.obj),
                        options=_task_options(m.obj, app_options, warnings),
                        origin=m.origin,
                    )
                )

    if (
        app_options.has("CreateNamespace", "true")
        and destination_namespace
        and namespace_exists is not True
        and ResourceKey(group="", kind="Namespace", namespace="", name=destination_namespace)
        not in desired_keys
    ):
        # Deliberately untracked: a namespace we only created must never become a prune
        # candidate (deleting it would delete everything in it).
        tasks.append(
            _Task(
                action=Action.APPLY,
                phase=Phase.PRE_SYNC,
                wave=0,
                key=ResourceKey(
                    group="", kind="Namespace", namespace="", name=destination_namespace
                ),
                desired={
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": destination_namespace},
                },
                live=None,
                note="CreateNamespace",
            )
        )

    _mirror_prune_waves(tasks)
    _apply_prune_last(tasks, app_options)
    waves, sync_fail = _group(order_tasks(tasks))
    return SyncPlan(
        waves=tuple(waves), sync_fail=tuple(sync_fail), warnings=tuple(dict.fromkeys(warnings))
    )


def _named_hook(
    obj: Mapping[str, Any], revision: str, phase: Phase, started_at: int
) -> dict[str, Any]:
    out: dict[str, Any] = clone_tree(dict(obj))
    meta = out.setdefault("metadata", {})
    if not meta.get("name"):
        meta["name"] = hook_name(
            str(meta.get("generateName") or ""),
            revision=revision,
            phase=phase,
            started_at=started_at,
        )
        meta.pop("generateName", None)
    return out


def plan_deletion(
    *,
    app: str,
    live: Iterable[Mapping[str, Any]],
    options: SyncOptions | None = None,
    delete_confirmed: bool = False,
) -> SyncPlan:
    """Delete an app's tracked resources (the app itself is going away), last wave first.
    ``Delete=false`` keeps a resource; ``Delete=confirm`` waits for confirmation. Hooks and
    PreDelete/PostDelete hooks are not run here."""
    app_options = options or SyncOptions()
    warnings: list[str] = []
    tasks: list[_Task] = []
    for obj in live:
        if is_hook(obj) or owning_app(obj) != app:
            continue
        opts = effective_sync_options(obj, app_options)
        skip = None
        if opts.has("Delete", "false"):
            skip = "ignored (Delete=false)"
        elif opts.has("Delete", "confirm") and not delete_confirmed:
            skip = "waiting for deletion confirmation (Delete=confirm)"
        tasks.append(
            _Task(
                action=Action.PRUNE,
                phase=Phase.SYNC,
                wave=sync_wave(obj),
                key=ResourceKey.of(obj),
                desired=None,
                live=dict(obj),
                options=_task_options(obj, app_options, warnings),
                skip=skip,
                note=f"app {app} deleted",
            )
        )
    _mirror_prune_waves(tasks)
    waves, _ = _group(order_tasks(tasks))
    return SyncPlan(waves=tuple(waves), warnings=tuple(dict.fromkeys(warnings)))


@dataclass(frozen=True, kw_only=True)
class DeleteHook:
    """One PreDelete/PostDelete hook of an Application being deleted."""

    hook_type: HookType
    key: ResourceKey
    desired: dict[str, Any]  # the object to create: final name, tracking id
    live: dict[str, Any] | None  # the object a previous attempt created, if still there
    policies: frozenset[HookDeletePolicy]

    def __str__(self) -> str:
        return f"{self.hook_type.value} hook {self.key}"


def delete_hook_name(generate_name: str, *, revision: str, hook_type: HookType) -> str:
    """The name of a ``generateName`` delete hook: the same on every attempt of one
    deletion (so a retry finds the hook it created instead of running it again)."""
    rev = revision[:7] if len(revision) >= 8 else revision
    return generate_name + f"{rev}-{hook_type.value}".lower().lstrip("-")


def plan_delete_hooks(
    *,
    app: str,
    manifests: Iterable[Mapping[str, Any]],
    live: Iterable[Mapping[str, Any]],
    hook_type: HookType,
    revision: str = "",
) -> tuple[DeleteHook, ...]:
    """The ``hook_type`` hooks (PreDelete or PostDelete) among the app's last rendered
    ``manifests`` (validated: namespaces settled), each paired with its live object when a
    previous attempt created it (Argo CD creates only the missing ones and judges the rest by
    their health). In apply order (wave, kind, name); they all run at once, as in Argo CD.
    Without our hook finalizer: they run outside a sync operation, which never cuts them
    short."""
    if hook_type not in DELETE_HOOK_TYPES:
        raise ValueError(f"{hook_type.value} is not a delete hook type")
    live_by_key = {ResourceKey.of(o): o for o in live}
    found: dict[ResourceKey, tuple[int, DeleteHook]] = {}
    for m in manifests:
        if not is_delete_hook(m, hook_type):
            continue
        target: dict[str, Any] = clone_tree(dict(m))
        meta = target.setdefault("metadata", {})
        if not meta.get("name"):
            meta["name"] = delete_hook_name(
                str(meta.get("generateName") or ""), revision=revision, hook_type=hook_type
            )
            meta.pop("generateName", None)
        key = ResourceKey.of(target)
        live_obj = live_by_key.get(key)
        found[key] = (
            sync_wave(m),
            DeleteHook(
                hook_type=hook_type,
                key=key,
                desired=with_tracking_id(target, app),
                live=dict(live_obj) if live_obj is not None else None,
                policies=hook_delete_policies(m),
            ),
        )
    ordered = sorted(found.values(), key=lambda wh: (wh[0], kind_rank(wh[1].key.kind), wh[1].key))
    return tuple(h for _, h in ordered)
