"""The ApplicationSet controller: decisions as pure functions, then one store write per set.

Entry points (the ``hub serve`` runtime and ``hub appset reconcile`` call these):

- ``reconcile_once(home, source=None)``: load every source (or one), ingest it, reconcile
  every ApplicationSet once; returns a ``ReconcileReport``. This is ``hub appset
  reconcile`` and the first half of ``hub serve --once``.
- ``AppSetController(store, git).ingest(loads, configured)``: take freshly loaded sources
  into the store (ApplicationSet manifests, AppProjects, plain Applications); removed
  ApplicationSets are deleted here. A source that failed to load changes nothing; nor
  does a file that stopped being an ApplicationSet (``hub.sources.check_set_files``), nor
  a revision held by the source deletion guard (rule 8).
- ``AppSetController.reconcile_appsets(clusters, names=None)``: expand the stored
  ApplicationSets (the last good manifests) against the registry's clusters and Git and
  apply the plans. Call it after ``ingest`` and on cluster events (add, relabel, remove).
- ``plan_appset`` / ``plan_deleted_appset`` / ``plan_plain_apps``: the pure decisions,
  unit-tested without a store.

Rules (Argo CD's, plus the hub's guards; docs/hub.md has the full table):

1. A generator, template or Git error keeps every Application and sets ErrorOccurred=True,
   ParametersGenerated=False, ResourcesUpToDate=False. Nothing is created, updated or deleted.
2. An invalid generated Application (bad or duplicate name, a template placeholder left in
   its name, project, destination or source, unknown project, destination not a
   registered cluster, a repository or destination its AppProject does not permit
   (``hub.sync.projects``), name owned by another set or source) is an error of the whole set:
   nothing is created, updated or deleted for it, whatever its policy (ErrorOccurred
   reason ApplicationValidationError). So is a ``spec.strategy`` type other than
   RollingSync and AllAtOnce (reason UnsupportedField). RollingSync (``hub.rollout``) does
   not change what is generated; it decides when each Application's automated sync runs.
3. ``syncPolicy.applicationsSync``: create-only (no update, no delete), create-update (no
   delete), create-delete (no update), sync (default: everything).
4. An owned Application no longer generated is deleted: when its destination cluster is no
   longer registered, its finalizer is stripped and the record removed (workloads left
   alone); with ``resources-finalizer.argocd.argoproj.io`` it is marked ``deleting`` for the
   reconciler to delete its resources first; without it the record is removed and the
   workloads keep running.
5. Empty-result guard (hub rule): a set that owns Applications and now generates none,
   without any error, deletes them only when its ``applicationsSync`` is *explicitly*
   ``sync`` or ``create-delete`` (or it is annotated ``gitops-hub/allow-empty: "true"``);
   otherwise everything is kept with ErrorOccurred=True, reason ``EmptyResultGuard``.
6. An ApplicationSet removed from its source deletes its Applications as in rule 4 (never
   cascading with ``preserveResourcesOnDeletion``); a policy forbidding deletion
   (create-only, create-update) keeps them, disowned.
7. Deletion cap (hub rule, opt-in): ``gitops-hub/max-deletions: "N"`` or ``"P%"`` keeps
   every deletion of a pass that would delete more (ErrorOccurred reason ``DeletionGuard``).
8. Source deletion guard (hub rule): a clean source revision whose removed sets and plain
   Applications would delete all of the source's Applications (more than half of more
   than 10) is held, like a failed load, until ``hub source confirm NAME`` names that SHA.
   While a source's newest revision is not applied, each of its sets says so
   (ErrorOccurred reason ``SourceError`` or ``SourceDeletionGuard``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from clusters.registry import ClusterRecord
from generators.clusters import SECRET_TYPE_CLUSTER, SECRET_TYPE_LABEL, ClusterInfo
from generators.errors import GeneratorError
from generators.expand import (
    GENERATION_ERROR,
    RENDER_ERROR,
    VALIDATION_ERROR,
    Context,
    Result,
    generate,
)
from generators.spec import STRATEGY_TYPES, ApplicationSet, parse_appset
from hub.apps import (
    AppRecord,
    AppSetRecord,
    AppStore,
    AppTxn,
    Condition,
    DesiredApp,
    ProjectRecord,
    has_cascade_finalizer,
)
from hub.sources import (
    AppManifest,
    SourceGit,
    SourceLoad,
    SourceRecord,
    SourceStore,
    check_set_files,
    load_source,
)
from hub.store import Store
from hub.sync.model import Application, SyncError, parse_application
from hub.sync.projects import (
    ClusterRef,
    Project,
    ProjectError,
    ProjectScope,
    app_violation,
    parse_project,
    scope_for,
)

log = logging.getLogger(__name__)

POLICIES = ("create-only", "create-update", "create-delete", "sync")
DEFAULT_POLICY = "sync"
ALLOW_EMPTY_ANNOTATION = "gitops-hub/allow-empty"
EMPTY_GUARD = "EmptyResultGuard"
MAX_DELETIONS_ANNOTATION = "gitops-hub/max-deletions"
DELETION_GUARD = "DeletionGuard"
UNSUPPORTED = "UnsupportedField"
SOURCE_ERROR = "SourceError"
SOURCE_GUARD = "SourceDeletionGuard"
#: Up to this many Applications a source revision is held only when it deletes them all.
SOURCE_GUARD_SMALL = 10
UP_TO_DATE = "ApplicationSetUpToDate"

ActionKind = Literal["create", "update", "delete", "keep", "skip", "disown"]
#: Actions after which the owner of some Application may differ (an update can adopt).
_OWNERSHIP_MOVES: frozenset[ActionKind] = frozenset({"create", "update", "delete", "disown"})
DeletionMode = Literal["cascade", "orphan"]


def allows_update(policy: str) -> bool:
    return policy in ("create-update", "sync")


def allows_delete(policy: str) -> bool:
    return policy in ("create-delete", "sync")


# ---------------------------------------------------------------- inputs and outputs


def cluster_info(record: ClusterRecord) -> ClusterInfo:
    """A registry record as the clusters generator sees an Argo CD cluster Secret."""
    labels = {**record.labels, SECRET_TYPE_LABEL: SECRET_TYPE_CLUSTER}
    return ClusterInfo(
        name=record.name,
        server=record.server,
        project=record.project or "",
        labels=labels,
        annotations=dict(record.annotations),
    )


def cluster_ref(record: ClusterRecord) -> ClusterRef:
    """A registry record as the AppProject destination rules see it."""
    return ClusterRef(name=record.name, server=record.server, project=record.project)


def project_policies(manifests: Mapping[str, Mapping[str, Any]]) -> dict[str, Project]:
    """Typed AppProjects by name. One that cannot be read (the source check refuses such
    files, so only an old store holds one) permits nothing rather than everything."""
    out = {}
    for name, manifest in manifests.items():
        try:
            out[name] = parse_project(manifest)
        except ProjectError:
            log.warning("AppProject %s cannot be read; it permits nothing", name)
            out[name] = Project(name=name)
    return out


def project_scope(
    apps: AppStore, refs: Sequence[ClusterRef], app: Application, cluster: str
) -> ProjectScope:
    """What a sync of ``app`` to the registered cluster ``cluster`` must stay inside;
    ``refs``: every registered cluster (``cluster_ref``), built once per registry change
    by the hub, not per sync."""
    record = apps.get_project(app.project)
    policies = project_policies({} if record is None else {record.name: record.manifest})
    own = next((r for r in refs if r.name == cluster), ClusterRef(name=cluster, server=""))
    return scope_for(app.project, policies, own, app.destination.namespace, refs)


def _server_key(server: str) -> str:
    return server.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class Fleet:
    """What validation and deletion need to know about the world outside the set."""

    clusters: tuple[ClusterRecord, ...] = ()
    projects: frozenset[str] = frozenset({"default"})
    #: The defined AppProjects, typed (a name in ``projects`` without one: nothing checked).
    policies: Mapping[str, Project] = field(default_factory=dict)

    # Indexes, built on first use: a set generating an Application per cluster asks for
    # every one of them, and a scan of the fleet per Application was clusters^2 work.
    @cached_property
    def _refs(self) -> tuple[ClusterRef, ...]:
        return tuple(cluster_ref(c) for c in self.clusters)

    @cached_property
    def _by_server(self) -> dict[str, ClusterRecord]:
        out: dict[str, ClusterRecord] = {}
        for c in self.clusters:
            out.setdefault(_server_key(c.server), c)  # the first registered wins, as before
        return out

    @cached_property
    def _by_name(self) -> dict[str, ClusterRecord]:
        out: dict[str, ClusterRecord] = {}
        for c in self.clusters:
            out.setdefault(c.name, c)
        return out

    def project_violation(self, app: Application, cluster: ClusterRecord) -> str | None:
        """Why ``app``'s AppProject refuses its source or its destination, or None."""
        if app.project not in self.policies:
            return None
        scope = scope_for(
            app.project,
            self.policies,
            cluster_ref(cluster),
            app.destination.namespace,
            self._refs,
        )
        repos = [s.repo_url for s in app.declared_sources()]
        return app_violation(scope, repos, app.namespace)

    def resolve(self, server: str, name: str) -> ClusterRecord | None:
        """The registered cluster an Application destination names, if any: by server when
        it has one, else by name."""
        if server:
            return self._by_server.get(_server_key(server))
        if name:
            return self._by_name.get(name)
        return None

    def has_cluster(self, name: str | None) -> bool:
        return name is not None and name in self._by_name


@dataclass(frozen=True, kw_only=True)
class Action:
    kind: ActionKind
    app: str
    reason: str
    desired: DesiredApp | None = None
    deletion: DeletionMode | None = None

    def describe(self) -> str:
        verb = {
            "create": "created",
            "update": "updated",
            "keep": "kept",
            "skip": "skipped",
            "disown": "disowned",
            "delete": "deleting (cascade)" if self.deletion == "cascade" else "deleted",
        }[self.kind]
        return f"{verb} {self.app}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.kind, "app": self.app, "reason": self.reason}
        if self.deletion is not None:
            out["deletion"] = self.deletion
        return out


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What to do for one ApplicationSet (``kind='appset'``) or one source's plain apps."""

    kind: Literal["appset", "source"]
    name: str
    actions: tuple[Action, ...] = ()
    conditions: tuple[Condition, ...] = ()
    #: Apps of this clean generation (for the empty-result guard); None when it failed.
    generated: int | None = None
    error: str | None = None
    deleted: bool = False  # the ApplicationSet itself goes away

    def count(self, kind: ActionKind) -> int:
        return sum(1 for a in self.actions if a.kind == kind)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "deleted": self.deleted,
            "generated": self.generated,
            "error": self.error,
            "actions": [a.as_dict() for a in self.actions],
            "conditions": [c.as_dict() for c in self.conditions],
        }


# ---------------------------------------------------------------- pure decisions


def deletion_of(
    app: AppRecord, fleet: Fleet, *, preserve: bool = False
) -> tuple[DeletionMode, str]:
    """How an Application leaves: cascade (resources first) or orphan, and why."""
    if not fleet.has_cluster(app.cluster) and fleet.resolve(app.dest_server, app.dest_name) is None:
        where = app.cluster or app.dest_server or app.dest_name or "?"
        return "orphan", (
            f"destination cluster {where} is no longer registered: finalizer stripped, "
            "nothing on that cluster is touched"
        )
    if preserve:
        return "orphan", "preserveResourcesOnDeletion: its workloads are left running"
    if has_cascade_finalizer(app.finalizers):
        return "cascade", "resources finalizer: its resources are deleted from the cluster first"
    return "orphan", "no resources finalizer: its workloads are left running"


def _error_conditions(reason: str, message: str) -> tuple[Condition, ...]:
    return (
        Condition(type="ErrorOccurred", status="True", reason=reason, message=message),
        Condition(
            type="ParametersGenerated",
            status="False" if reason in (GENERATION_ERROR, RENDER_ERROR) else "True",
            reason=reason,
            message=message,
        ),
        Condition(type="ResourcesUpToDate", status="False", reason=reason, message=message),
    )


def _ok_conditions() -> tuple[Condition, ...]:
    ok = "All applications have been generated successfully"
    return (
        Condition(type="ErrorOccurred", status="False", reason=UP_TO_DATE, message=ok),
        Condition(
            type="ParametersGenerated",
            status="True",
            reason="ParametersGenerated",
            message="Successfully generated parameters for all Applications",
        ),
        Condition(type="ResourcesUpToDate", status="True", reason=UP_TO_DATE, message=ok),
    )


def _validate_generated(
    manifest: Mapping[str, Any],
    appset: ApplicationSet,
    fleet: Fleet,
    owners: Mapping[str, str],
    *,
    source: str,
    file: str,
) -> tuple[DesiredApp | None, str]:
    name = str(manifest["metadata"]["name"])
    owner = owners.get(name)
    if owner is not None and owner != f"appset/{appset.name}":
        return None, f"application {name!r} already exists and belongs to {owner}"
    try:
        app = parse_application(manifest, source_file=f"ApplicationSet {appset.name}")
    except SyncError as exc:
        return None, str(exc)
    if app.project not in fleet.projects:
        return None, (
            f"application {name!r}: project {app.project!r} does not exist (commit an "
            "AppProject to a source, or use project 'default')"
        )
    cluster = fleet.resolve(app.destination.server, app.destination.name)
    if cluster is None:
        dest = app.destination.server or app.destination.name or "(none)"
        return None, (
            f"application {name!r}: destination {dest} is not a registered cluster "
            "(see `hub cluster list`)"
        )
    refused = fleet.project_violation(app, cluster)
    if refused is not None:
        return None, f"application {name!r}: {refused}"
    return (
        DesiredApp.from_manifest(
            manifest, appset=appset.name, source=source, file=file, cluster=cluster.name
        ),
        "",
    )


def unsupported_fields(appset: ApplicationSet) -> str | None:
    """Why the hub refuses to act on ``appset`` at all, or None.

    ``spec.strategy`` decides *when* each Application may be updated; acting on a set that
    asks for a rollout the hub does not know as if it had asked for none would change every
    Application at once, so a type other than RollingSync (``hub.rollout``) and AllAtOnce
    (the default) is refused."""
    strategy = appset.spec.strategy
    if strategy is None or strategy.type in STRATEGY_TYPES:
        return None
    return (
        f"spec.strategy.type {strategy.type!r} is not supported by gitops-hub (use "
        f"{' or '.join(STRATEGY_TYPES)}): nothing is created, updated or deleted for this set"
    )


def _refused(name: str, owned: Sequence[AppRecord], reason: str, message: str, why: str) -> Plan:
    """A plan that keeps every owned Application and reports ``reason`` on the set."""
    return Plan(
        kind="appset",
        name=name,
        actions=tuple(Action(kind="keep", app=a.name, reason=f"{why}: kept as is") for a in owned),
        conditions=_error_conditions(reason, message),
        error=message,
    )


def plan_appset(
    appset: ApplicationSet,
    result: Result,
    owned: Sequence[AppRecord],
    fleet: Fleet,
    *,
    owners: Mapping[str, str] | None = None,
    source: str = "",
    file: str = "",
) -> Plan:
    """Decide creates, updates, deletes and keeps for one generated ApplicationSet.

    ``owned`` are the Applications the store says this set owns; ``owners`` maps every
    other existing Application name to its owner (``appset/NAME`` or ``source/NAME``)."""
    owners = owners or {}
    explicit = appset.spec.sync_policy.applications_sync
    policy = explicit or DEFAULT_POLICY
    by_name = {a.name: a for a in owned}

    unsupported = unsupported_fields(appset)
    if unsupported is not None:
        return _refused(appset.name, owned, UNSUPPORTED, unsupported, "unsupported field")

    if result.failed:
        reason = GENERATION_ERROR if result.generation_failed else RENDER_ERROR
        message = "; ".join(
            c.message for c in result.conditions if c.reason in (GENERATION_ERROR, RENDER_ERROR)
        )
        keeps = tuple(
            Action(kind="keep", app=a.name, reason=f"generation failed ({reason}): kept as is")
            for a in owned
        )
        return Plan(
            kind="appset",
            name=appset.name,
            actions=keeps,
            conditions=_error_conditions(reason, message),
            error=message,
        )

    # Every generated Application must be valid before any is written: one left-over
    # placeholder, bad name or unknown destination usually means a template mistake that
    # affects them all, and skipping the invalid ones would delete what they replace.
    problems = [c.message for c in result.conditions if c.reason == VALIDATION_ERROR]
    valid: list[tuple[DesiredApp, str]] = []
    for generated in sorted(result.applications, key=lambda g: g.name):
        desired, problem = _validate_generated(
            generated.manifest, appset, fleet, owners, source=source, file=file
        )
        if desired is None:
            problems.append(problem)
        else:
            valid.append((desired, generated.param_set.source))
    if problems:
        message = "; ".join(problems) + (
            "; nothing created, updated or deleted for this set until every generated "
            "Application is valid (preview with `hub appset generate FILE`)"
        )
        return _refused(appset.name, owned, VALIDATION_ERROR, message, "invalid Application")

    actions: list[Action] = []
    generated_names = {desired.name for desired, _ in valid}
    for desired, origin in valid:
        current = by_name.get(desired.name)
        if current is None:
            why = f"new: generated by {origin}"
            if desired.name in owners:
                why = "adopted: an Application of that name had no owner"
            actions.append(Action(kind="create", app=desired.name, reason=why, desired=desired))
        elif current.deleting:
            actions.append(
                Action(
                    kind="keep",
                    app=current.name,
                    reason="being deleted; it is created again once its resources are gone",
                )
            )
        elif desired.same_desired(current):
            actions.append(Action(kind="keep", app=current.name, reason="up to date"))
        elif allows_update(policy):
            actions.append(
                Action(
                    kind="update",
                    app=current.name,
                    reason="template output changed",
                    desired=desired,
                )
            )
        else:
            actions.append(
                Action(
                    kind="keep",
                    app=current.name,
                    reason=f"changed, but policy {policy} does not update",
                )
            )

    leaving = [a for a in owned if a.name not in generated_names]
    conditions: tuple[Condition, ...]
    guard = _empty_guard(appset, explicit, owned, generated_names)
    if guard is not None:
        actions.extend(
            Action(
                kind="keep",
                app=a.name,
                reason="deletion in progress" if a.deleting else f"{EMPTY_GUARD}: not deleted",
            )
            for a in leaving
        )
        conditions = _error_conditions(EMPTY_GUARD, guard)
        return Plan(
            kind="appset",
            name=appset.name,
            actions=tuple(actions),
            conditions=conditions,
            generated=None,
            error=guard,
        )
    for app in leaving:
        if app.deleting:
            actions.append(Action(kind="keep", app=app.name, reason="deletion in progress"))
        elif not allows_delete(policy):
            actions.append(
                Action(
                    kind="keep",
                    app=app.name,
                    reason=f"no longer generated, but policy {policy} does not delete",
                )
            )
        else:
            mode, why = deletion_of(app, fleet)
            actions.append(
                Action(
                    kind="delete", app=app.name, reason=f"no longer generated; {why}", deletion=mode
                )
            )
    shrink = _deletion_guard(appset, owned, actions)
    if shrink is not None:
        actions = [
            Action(kind="keep", app=a.app, reason=f"{DELETION_GUARD}: not deleted")
            if a.kind == "delete"
            else a
            for a in actions
        ]
        return Plan(
            kind="appset",
            name=appset.name,
            actions=tuple(actions),
            conditions=_error_conditions(DELETION_GUARD, shrink),
            generated=None,
            error=shrink,
        )
    if not generated_names and leaving and allows_delete(policy):
        log.warning(
            "ApplicationSet %s generated no Applications; deleting its %d Applications "
            "(applicationsSync %s allows it)",
            appset.name,
            len(leaving),
            policy,
        )
    return Plan(
        kind="appset",
        name=appset.name,
        actions=tuple(actions),
        conditions=_ok_conditions(),
        generated=len(generated_names),
    )


def _empty_guard(
    appset: ApplicationSet,
    explicit_policy: str | None,
    owned: Sequence[AppRecord],
    generated_names: Collection[str],
) -> str | None:
    """Why a sudden empty result must not delete, or None when it may."""
    live = [a for a in owned if not a.deleting]
    if generated_names or not live:
        return None
    allow = appset.annotations.get(ALLOW_EMPTY_ANNOTATION, "").lower()
    if allow == "true":
        return None
    if explicit_policy is not None and allows_delete(explicit_policy) and allow != "false":
        return None
    if explicit_policy is not None and not allows_delete(explicit_policy):
        return None  # the policy deletes nothing anyway; no need to flag an error
    return (
        f"generated 0 Applications without an error but owns {len(live)}: nothing deleted. "
        "Check the generators (a list emptied, a selector or directory that matches "
        "nothing; preview with `hub appset generate FILE`). If every Application of the set "
        f'really should go, annotate the set {ALLOW_EMPTY_ANNOTATION}: "true" for that '
        "change, or remove the set's file to delete the set"
    )


def max_deletions(value: str, owned: int) -> int:
    """The ``gitops-hub/max-deletions`` limit: a count (``"2"``) or a share of the owned
    Applications (``"25%"``, rounded down); raises ValueError for anything else."""
    text = value.strip()
    if text.endswith("%"):
        percent = int(text[:-1])
        if not 0 <= percent <= 100:
            raise ValueError(value)
        return owned * percent // 100
    count = int(text)
    if count < 0:
        raise ValueError(value)
    return count


def _deletion_guard(
    appset: ApplicationSet, owned: Sequence[AppRecord], actions: Sequence[Action]
) -> str | None:
    """Why this reconcile may not delete as many Applications as planned, or None."""
    value = appset.annotations.get(MAX_DELETIONS_ANNOTATION)
    deleting = sum(1 for a in actions if a.kind == "delete")
    if value is None or deleting == 0:
        return None
    live = sum(1 for a in owned if not a.deleting)
    try:
        limit = max_deletions(value, live)
    except ValueError:
        return (
            f"annotation {MAX_DELETIONS_ANNOTATION}: {value!r} is not a count or a "
            "percentage like '25%'; nothing deleted"
        )
    if deleting <= limit:
        return None
    return (
        f"{deleting} of {live} Applications would be deleted, more than "
        f"{MAX_DELETIONS_ANNOTATION}: {value!r} allows ({limit}); nothing deleted. Raise the "
        "limit for one reconcile if this is intended"
    )


def plan_deleted_appset(
    name: str, manifest: Mapping[str, Any], owned: Sequence[AppRecord], fleet: Fleet, why: str
) -> Plan:
    """The ApplicationSet left its source (file deleted, or the source removed)."""
    sync_policy = (manifest.get("spec") or {}).get("syncPolicy") or {}
    policy = str(sync_policy.get("applicationsSync") or DEFAULT_POLICY)
    preserve = bool(sync_policy.get("preserveResourcesOnDeletion"))
    actions: list[Action] = []
    for app in owned:
        if app.deleting:
            actions.append(Action(kind="keep", app=app.name, reason="deletion in progress"))
        elif not allows_delete(policy):
            actions.append(
                Action(
                    kind="disown",
                    app=app.name,
                    reason=f"{why}; policy {policy} keeps its Applications (now unowned)",
                )
            )
        else:
            mode, reason = deletion_of(app, fleet, preserve=preserve)
            actions.append(
                Action(kind="delete", app=app.name, reason=f"{why}; {reason}", deletion=mode)
            )
    return Plan(kind="appset", name=name, actions=tuple(actions), deleted=True)


def plan_plain_apps(
    source: str,
    declared: Sequence[AppManifest],
    stored: Sequence[AppRecord],
    fleet: Fleet,
    owners: Mapping[str, str],
) -> Plan:
    """Applications committed as such: created, updated, deleted as the files say."""
    by_name = {a.name: a for a in stored}
    actions: list[Action] = []
    problems: list[str] = []
    for item in sorted(declared, key=lambda m: m.name):
        app = item.app
        owner = owners.get(app.name)
        if owner is not None and owner != f"source/{source}":
            problem = f"{item.file}: application {app.name!r} already belongs to {owner}"
            problems.append(problem)
            actions.append(Action(kind="skip", app=app.name, reason=problem))
            continue
        cluster = fleet.resolve(app.destination.server, app.destination.name)
        if cluster is None or app.project not in fleet.projects:
            problem = f"{item.file}: application {app.name!r}: " + (
                f"project {app.project!r} does not exist"
                if cluster is not None
                else f"destination {app.destination.server or app.destination.name} "
                "is not a registered cluster"
            )
            problems.append(problem)
            actions.append(Action(kind="skip", app=app.name, reason=problem))
            continue
        refused = fleet.project_violation(app, cluster)
        if refused is not None:
            problem = f"{item.file}: application {app.name!r}: {refused}"
            problems.append(problem)
            actions.append(Action(kind="skip", app=app.name, reason=problem))
            continue
        desired = DesiredApp.from_manifest(
            item.manifest, appset=None, source=source, file=item.file, cluster=cluster.name
        )
        current = by_name.get(app.name)
        if current is None:
            actions.append(
                Action(kind="create", app=app.name, reason=f"new in {item.file}", desired=desired)
            )
        elif current.deleting:
            actions.append(Action(kind="keep", app=app.name, reason="being deleted"))
        elif desired.same_desired(current):
            actions.append(Action(kind="keep", app=app.name, reason="up to date"))
        else:
            actions.append(
                Action(kind="update", app=app.name, reason=f"{item.file} changed", desired=desired)
            )
    names = {m.name for m in declared}
    for current in stored:
        if current.name in names:
            continue
        if current.deleting:
            actions.append(Action(kind="keep", app=current.name, reason="deletion in progress"))
            continue
        mode, why = deletion_of(current, fleet)
        actions.append(
            Action(
                kind="delete",
                app=current.name,
                reason=f"removed from the source; {why}",
                deletion=mode,
            )
        )
    conditions = tuple(
        Condition(type="InvalidSpecError", status="True", message=p) for p in problems
    )
    return Plan(
        kind="source",
        name=source,
        actions=tuple(actions),
        conditions=conditions,
        error="; ".join(problems) or None,
    )


# ---------------------------------------------------------------- applying


def _may_write(current: AppRecord, desired: DesiredApp) -> bool:
    """Whether ``desired``'s owner may overwrite the stored row ``current``."""
    if current.appset is None and current.source is None:
        return True  # disowned: adoptable
    if desired.appset is not None:
        return current.appset == desired.appset  # its set (possibly from a new source)
    return current.appset is None and current.source == desired.source


def apply_actions(txn: AppTxn, actions: Iterable[Action]) -> None:
    for action in actions:
        if action.kind in ("create", "update"):
            desired = action.desired
            assert desired is not None
            current = txn.get_app(desired.name)
            if current is not None and not _may_write(current, desired):
                # Planned from an older read; someone else took the name meanwhile.
                log.warning(
                    "application %s: not written, it now belongs to %s",
                    desired.name,
                    current.appset or current.source,
                )
                continue
            txn.put_desired(desired)
        elif action.kind == "disown":
            txn.disown(action.app)
        elif action.kind == "delete":
            if action.deletion == "cascade":
                txn.mark_deleting(action.app, action.reason)
            else:
                txn.delete_app(action.app)
            log.info("application %s: %s", action.app, action.describe())


@dataclass(frozen=True, kw_only=True)
class SourceOutcome:
    name: str
    sha: str | None
    ok: bool
    errors: tuple[str, ...] = ()
    appsets: int = 0
    applications: int = 0
    projects: int = 0
    held: bool = False  # clean, but held by the source deletion guard

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha": self.sha,
            "ok": self.ok,
            "held": self.held,
            "errors": list(self.errors),
            "appsets": self.appsets,
            "applications": self.applications,
            "projects": self.projects,
        }


@dataclass(frozen=True, kw_only=True)
class ReconcileReport:
    sources: tuple[SourceOutcome, ...] = ()
    plans: tuple[Plan, ...] = ()

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.sources) and not any(p.error for p in self.plans)

    def actions(self, kind: ActionKind) -> list[Action]:
        return [a for p in self.plans for a in p.actions if a.kind == kind]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sources": [s.as_dict() for s in self.sources],
            "plans": [p.as_dict() for p in self.plans],
        }


@dataclass(frozen=True, kw_only=True)
class ControllerOptions:
    include_local_cluster: bool = False
    new_git_file_globbing: bool = False


def with_source_error(plan: Plan, record: SourceRecord, file: str) -> Plan:
    """``plan`` of a set whose source's newest revision is not applied (a bad file, the
    set's own file included, or a revision held by the source deletion guard): the set runs
    on its last good manifest and says why on its conditions."""
    held = record.held_sha is not None
    message = record.file_errors.get(file) or (
        f"source {record.source.name}: {record.last_error}"
        if held
        else f"source {record.source.name} is not applied (last good revision "
        f"{(record.last_sha or '-')[:12]} kept): {record.last_error}"
    )
    if plan.error:
        message = f"{message}; {plan.error}"
    reason = SOURCE_GUARD if held else SOURCE_ERROR
    generated = next((c for c in plan.conditions if c.type == "ParametersGenerated"), None)
    conditions = [
        Condition(type="ErrorOccurred", status="True", reason=reason, message=message),
        *([generated] if generated is not None else []),
        Condition(type="ResourcesUpToDate", status="False", reason=reason, message=message),
    ]
    return replace(plan, conditions=tuple(conditions), error=message)


def source_guard_trips(deleting: int, owned: int) -> bool:
    """Whether a source revision deleting ``deleting`` of the ``owned`` Applications of its
    source must be held: all of them, or more than half of more than 10."""
    if deleting == 0 or owned == 0:
        return False
    if owned <= SOURCE_GUARD_SMALL:
        return deleting >= owned
    return deleting * 2 > owned


def _set_files(stored_sets: Iterable[AppSetRecord], source: str) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for stored in stored_sets:
        if stored.source == source:
            files.setdefault(stored.file, []).append(stored.name)
    return files


def _declared(loads: Iterable[SourceLoad]) -> dict[str, str]:
    declared: dict[str, str] = {}
    for load in loads:
        for item in load.appsets:
            declared.setdefault(item.name, load.source.name)
    return declared


class AppSetController:
    """Applies the decisions above to the store. One instance per hub process."""

    def __init__(
        self, store: Store, git: SourceGit, options: ControllerOptions | None = None
    ) -> None:
        self.store = store
        self.apps = AppStore(store)
        self.git = git
        self.options = options or ControllerOptions()

    def _fleet(self, clusters: Sequence[ClusterRecord]) -> Fleet:
        records = self.apps.list_projects()
        projects = frozenset({"default", *(p.name for p in records)})
        policies = project_policies({p.name: p.manifest for p in records})
        return Fleet(clusters=tuple(clusters), projects=projects, policies=policies)

    def ingest(
        self,
        loads: Sequence[SourceLoad],
        clusters: Sequence[ClusterRecord],
        *,
        configured: Collection[str] | None = None,
    ) -> tuple[list[SourceOutcome], list[Plan]]:
        """Take loaded sources into the store; returns outcomes and the plans applied for
        removed ApplicationSets and plain Applications.

        ``configured``: every source name that still exists; ApplicationSets of sources not
        in it are deleted (the source was removed). None skips that step (one-source runs).
        """
        outcomes: list[SourceOutcome] = []
        plans: list[Plan] = []
        sources = SourceStore(self.store)
        stored_sets = self.apps.list_appsets()
        loads = [check_set_files(load, _set_files(stored_sets, load.source.name)) for load in loads]
        # Which source declares each set in this run, so a set moved between two sources
        # is handed over instead of deleted by one and refused by the other.
        declared = _declared(load for load in loads if load.ok)
        records = {r.source.name: r for r in sources.list()}
        held: dict[str, str] = {}
        for load in loads:
            if load.ok:
                record = records.get(load.source.name)
                confirmed = record.confirmed_sha if record is not None else None
                hold = self._source_guard(load, stored_sets, declared, clusters, confirmed)
                if hold is not None:
                    held[load.source.name] = hold
        if held:
            declared = _declared(load for load in loads if load.ok and load.source.name not in held)
        clean = {
            load.source.name: load for load in loads if load.ok and load.source.name not in held
        }
        for load in loads:
            hold = held.get(load.source.name)
            if hold is not None:
                sources.record_hold(load, hold)
                log.error("source %s: %s", load.source.name, hold)
                outcomes.append(
                    SourceOutcome(
                        name=load.source.name,
                        sha=load.sha,
                        ok=False,
                        held=True,
                        errors=(hold,),
                        appsets=len(load.appsets),
                        applications=len(load.applications),
                        projects=len(load.projects),
                    )
                )
                continue
            sources.record_load(load)
            outcomes.append(
                SourceOutcome(
                    name=load.source.name,
                    sha=load.sha,
                    ok=load.ok,
                    errors=load.errors,
                    appsets=len(load.appsets),
                    applications=len(load.applications),
                    projects=len(load.projects),
                )
            )
            if not load.ok:
                log.error("source %s: %s", load.source.name, "; ".join(load.errors))
                continue
            assert load.sha is not None
            taken = {
                s.name: s.source
                for s in stored_sets
                if s.source != load.source.name
                and (s.source not in clean or declared.get(s.name) == s.source)
            }
            with self.apps.transaction() as txn:
                txn.replace_projects(
                    load.source.name,
                    [
                        ProjectRecord(
                            name=p.name,
                            source=load.source.name,
                            file=p.file,
                            manifest=p.manifest,
                            sha=load.sha,
                        )
                        for p in load.projects
                    ],
                )
                for item in load.appsets:
                    if item.name in taken:
                        plans.append(
                            Plan(
                                kind="appset",
                                name=item.name,
                                error=f"{load.source.name}:{item.file}: ApplicationSet "
                                f"{item.name!r} already comes from source {taken[item.name]}; "
                                "ignored",
                            )
                        )
                        continue
                    txn.put_appset(
                        name=item.name,
                        source=load.source.name,
                        file=item.file,
                        manifest=item.manifest,
                        sha=load.sha,
                    )
            present = {a.name for a in load.appsets}
            for stored in stored_sets:
                if (
                    stored.source == load.source.name
                    and stored.name not in present
                    and stored.name not in declared  # moved to another source: kept
                ):
                    plans.append(
                        self._delete_appset(
                            stored.name,
                            stored.manifest,
                            clusters,
                            f"ApplicationSet removed from source {load.source.name} "
                            f"({stored.file} at {load.sha[:12]})",
                        )
                    )
            fleet = self._fleet(clusters)
            plain = plan_plain_apps(
                load.source.name,
                load.applications,
                self.apps.list_apps(source=load.source.name, plain=True),
                fleet,
                self.apps.owners(),
            )
            with self.apps.transaction() as txn:
                apply_actions(txn, plain.actions)
            plans.append(plain)
        if configured is not None:
            for stored in self.apps.list_appsets():
                if stored.source not in configured and stored.name not in declared:
                    plans.append(
                        self._delete_appset(
                            stored.name,
                            stored.manifest,
                            clusters,
                            f"source {stored.source} was removed",
                        )
                    )
            fleet = self._fleet(clusters)
            for app in self.apps.list_apps(plain=True):
                if app.source is not None and app.source not in configured:
                    plan = plan_plain_apps(app.source, [], [app], fleet, {})
                    with self.apps.transaction() as txn:
                        apply_actions(txn, plan.actions)
                    plans.append(plan)
        return outcomes, plans

    def _source_guard(
        self,
        load: SourceLoad,
        stored_sets: Sequence[AppSetRecord],
        declared: Mapping[str, str],
        clusters: Sequence[ClusterRecord],
        confirmed: str | None,
    ) -> str | None:
        """Why ``load`` (clean) must be held rather than applied, or None.

        A source that no longer declares a set owns none of its Applications (Argo CD's
        meaning); a force-push or a wrong ``--path`` can make that every Application of
        the source at once. Like the empty-result guard, such a revision waits for a
        person: ``hub source confirm NAME`` lets exactly that revision through."""
        name = load.source.name
        fleet = self._fleet(clusters)
        present = {a.name for a in load.appsets}
        deleting: list[str] = []
        removed_sets: list[str] = []
        for stored in stored_sets:
            if stored.source != name or stored.name in present or stored.name in declared:
                continue
            plan = plan_deleted_appset(
                stored.name, stored.manifest, self.apps.list_apps(appset=stored.name), fleet, ""
            )
            removed_sets.append(stored.name)
            deleting += [a.app for a in plan.actions if a.kind == "delete"]
        plain = plan_plain_apps(
            name, load.applications, self.apps.list_apps(source=name, plain=True), fleet, {}
        )
        deleting += [a.app for a in plain.actions if a.kind == "delete"]
        live = self.apps.count_apps(source=name, deleting=False)
        if not source_guard_trips(len(deleting), live):
            return None
        assert load.sha is not None
        if confirmed == load.sha:
            log.warning(
                "source %s: revision %s deletes %d of its %d Applications (confirmed)",
                name,
                load.sha[:12],
                len(deleting),
                live,
            )
            return None
        sets = f" (ApplicationSets gone: {', '.join(sorted(removed_sets))})" if removed_sets else ""
        return (
            f"revision {load.sha[:12]} would delete {len(deleting)} of the {live} "
            f"Applications of source {name}{sets}: held, nothing deleted, the last good "
            f"revision stays in force. If this is intended, run `hub source confirm {name}`; "
            "otherwise fix the branch (a force-push or a wrong --path looks like this)"
        )

    def _delete_appset(
        self, name: str, manifest: Mapping[str, Any], clusters: Sequence[ClusterRecord], why: str
    ) -> Plan:
        plan = plan_deleted_appset(
            name, manifest, self.apps.list_apps(appset=name), self._fleet(clusters), why
        )
        with self.apps.transaction() as txn:
            apply_actions(txn, plan.actions)
            txn.delete_appset(name)
        log.info("ApplicationSet %s deleted: %s", name, why)
        return plan

    def reconcile_appsets(
        self,
        clusters: Sequence[ClusterRecord],
        names: Collection[str] | None = None,
        *,
        source: str | None = None,
    ) -> list[Plan]:
        """Expand and apply the stored ApplicationSets (all, ``names``, or one source's)."""
        fleet = self._fleet(clusters)
        context = Context(
            clusters=tuple(cluster_info(c) for c in clusters),
            include_local_cluster=self.options.include_local_cluster,
            repo_reader=self.git,
            new_git_file_globbing=self.options.new_git_file_globbing,
        )
        plans = []
        sources = {r.source.name: r for r in SourceStore(self.store).list()}
        # Who owns what, read once and again only after a set's actions may have moved it
        # (one whole-table read per set was sets x Applications rows per reconcile).
        owners: dict[str, str] | None = None
        for stored in self.apps.list_appsets(source=source):
            if names is not None and stored.name not in names:
                continue
            where = f"{stored.source}:{stored.file}"
            owned = self.apps.list_apps(appset=stored.name)
            try:
                appset = parse_appset(stored.manifest, source=where)
            except GeneratorError as exc:  # only if parsing rules changed since it was stored
                message = f"{where}: {exc}"
                plan = Plan(
                    kind="appset",
                    name=stored.name,
                    actions=tuple(
                        Action(kind="keep", app=a.name, reason="spec unreadable") for a in owned
                    ),
                    conditions=_error_conditions(GENERATION_ERROR, message),
                    error=message,
                )
            else:
                if owners is None:
                    owners = self.apps.owners()
                plan = plan_appset(
                    appset,
                    generate(appset, context),
                    owned,
                    fleet,
                    owners=owners,
                    source=stored.source,
                    file=stored.file,
                )
            record = sources.get(stored.source)
            if record is not None and record.last_error:
                plan = with_source_error(plan, record, stored.file)
            with self.apps.transaction() as txn:
                apply_actions(txn, plan.actions)
                txn.set_appset_status(
                    stored.name,
                    conditions=plan.conditions,
                    status={
                        "applications": len(owned),
                        **{k: plan.count(k) for k in ("create", "update", "delete", "skip")},
                    },
                    generated=plan.generated,
                    last_error=plan.error,
                )
            if any(a.kind in _OWNERSHIP_MOVES for a in plan.actions):
                owners = None
            if plan.error:
                log.error("ApplicationSet %s: %s", stored.name, plan.error)
            plans.append(plan)
        return plans


def reconcile_once(
    home: Path,
    *,
    source: str | None = None,
    git: SourceGit | None = None,
    options: ControllerOptions | None = None,
) -> ReconcileReport:
    """Load the sources (or one), ingest them and reconcile their ApplicationSets once."""
    from hub.services import open_services

    with open_services(home) as parts:
        if git is None:
            git = parts.git
        sources = SourceStore(parts.store)
        records = sources.list() if source is None else [sources.get(source)]
        loads = [load_source(r.source, git) for r in records]
        clusters = list(parts.registry.list())
        controller = AppSetController(parts.store, git, options)
        outcomes, plans = controller.ingest(
            loads,
            clusters,
            configured=None if source is not None else {r.source.name for r in records},
        )
        plans += controller.reconcile_appsets(clusters, source=source)
    return ReconcileReport(sources=tuple(outcomes), plans=tuple(plans))


__all__ = [
    "Action",
    "AppSetController",
    "ControllerOptions",
    "Fleet",
    "Plan",
    "ReconcileReport",
    "cluster_info",
    "deletion_of",
    "plan_appset",
    "plan_deleted_appset",
    "plan_plain_apps",
    "reconcile_once",
]
