"""The ApplicationSet controller's decisions, as pure functions: no store, no cluster."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from clusters.registry import ClusterRecord
from generators.expand import Context, generate
from generators.spec import ApplicationSet, parse_appset
from hub.apps import RESOURCES_FINALIZER, AppRecord, DesiredApp
from hub.appsets import (
    ALLOW_EMPTY_ANNOTATION,
    DELETION_GUARD,
    EMPTY_GUARD,
    MAX_DELETIONS_ANNOTATION,
    UNSUPPORTED,
    Fleet,
    Plan,
    cluster_info,
    max_deletions,
    plan_appset,
    plan_deleted_appset,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cluster(name: str, **labels: str) -> ClusterRecord:
    return ClusterRecord(name=name, server=f"https://{name}.example:6443", labels=labels)


PROD = (cluster("a", env="prod"), cluster("b", env="prod"), cluster("c", env="prod"))


def make_appset(
    *,
    policy: str | None = None,
    preserve: bool = False,
    generators: list[Any] | None = None,
    namespace: str = "guestbook",
    annotations: Mapping[str, str] | None = None,
    project: str = "default",
    name_template: str = "gb-{{name}}",
) -> ApplicationSet:
    sync_policy: dict[str, Any] = {}
    if policy is not None:
        sync_policy["applicationsSync"] = policy
    if preserve:
        sync_policy["preserveResourcesOnDeletion"] = True
    return parse_appset(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {
                "name": "gb",
                "namespace": "argocd",
                "annotations": dict(annotations or {}),
            },
            "spec": {
                "generators": generators
                or [{"clusters": {"selector": {"matchLabels": {"env": "prod"}}}}],
                "template": {
                    "metadata": {"name": name_template},
                    "spec": {
                        "project": project,
                        "source": {"repoURL": "https://git.example/gb.git", "path": "gb"},
                        "destination": {"server": "{{server}}", "namespace": namespace},
                    },
                },
                "syncPolicy": sync_policy,
            },
        },
        source="test.yaml",
    )


def record(app: DesiredApp, *, deletion: str | None = None) -> AppRecord:
    return AppRecord(
        name=app.name,
        appset=app.appset,
        source=app.source,
        file=app.file,
        cluster=app.cluster,
        dest_server=app.dest_server,
        dest_name=app.dest_name,
        namespace=app.namespace,
        project=app.project,
        spec=json.loads(json.dumps(app.spec)),
        labels=app.labels,
        annotations=app.annotations,
        finalizers=app.finalizers,
        generation=1,
        desired_revision=app.desired_revision,
        desired_sha=None,
        synced_sha=None,
        sync_status="Synced",
        health_status="Healthy",
        conditions=(),
        operation_state=None,
        created_at=T0,
        updated_at=T0,
        reconciled_at=None,
        deletion=deletion,
        deletion_reason=None,
        deletion_requested_at=None,
    )


def plan(
    appset: ApplicationSet,
    clusters: Sequence[ClusterRecord],
    owned: Sequence[AppRecord] = (),
    *,
    fleet: Sequence[ClusterRecord] | None = None,
    owners: Mapping[str, str] | None = None,
    projects: frozenset[str] = frozenset({"default"}),
) -> Plan:
    """Generate ``appset`` against ``clusters`` (the registry as the generator sees it);
    ``fleet`` is the registry for destination checks (default: the same clusters)."""
    result = generate(appset, Context(clusters=tuple(cluster_info(c) for c in clusters)))
    known = Fleet(clusters=tuple(fleet if fleet is not None else clusters), projects=projects)
    return plan_appset(appset, result, owned, known, owners=owners or {}, source="s")


def existing(appset: ApplicationSet, clusters: Sequence[ClusterRecord] = PROD) -> list[AppRecord]:
    """The Applications a first clean reconcile of ``appset`` would have stored."""
    first = plan(appset, clusters)
    return [record(a.desired) for a in first.actions if a.desired is not None]


def kinds(p: Plan) -> dict[str, str]:
    return {a.app: a.kind for a in p.actions}


def condition(p: Plan, type_: str) -> tuple[str, str]:
    c = next(c for c in p.conditions if c.type == type_)
    return c.status, c.reason


# ---------------------------------------------------------------- creation and conditions


def test_a_first_reconcile_creates_one_app_per_selected_cluster_with_the_finalizer() -> None:
    p = plan(make_appset(), [*PROD, cluster("d", env="dev")])
    assert kinds(p) == {"gb-a": "create", "gb-b": "create", "gb-c": "create"}
    assert p.generated == 3 and p.error is None
    for action in p.actions:
        assert action.desired is not None
        assert action.desired.finalizers == (RESOURCES_FINALIZER,)
        assert action.desired.cluster == action.app.removeprefix("gb-")
        assert action.desired.appset == "gb" and action.desired.source == "s"
    assert condition(p, "ErrorOccurred") == ("False", "ApplicationSetUpToDate")
    assert condition(p, "ParametersGenerated")[0] == "True"
    assert condition(p, "ResourcesUpToDate") == ("True", "ApplicationSetUpToDate")


def test_the_clusters_generator_sees_the_argo_secret_type_label() -> None:
    labels = cluster_info(cluster("a", env="prod")).labels
    assert labels == {"env": "prod", "argocd.argoproj.io/secret-type": "cluster"}
    selected = make_appset(
        generators=[
            {
                "clusters": {
                    "selector": {"matchLabels": {"argocd.argoproj.io/secret-type": "cluster"}}
                }
            }
        ]
    )
    assert len(plan(selected, PROD).actions) == 3


def test_an_unchanged_set_keeps_everything() -> None:
    s = make_appset()
    p = plan(s, PROD, existing(s))
    assert set(kinds(p).values()) == {"keep"}
    assert all(a.reason == "up to date" for a in p.actions)


# ---------------------------------------------------------------- applicationsSync


@pytest.mark.parametrize(
    ("policy", "changed", "leaving"),
    [
        (None, "update", "delete"),
        ("sync", "update", "delete"),
        ("create-update", "update", "keep"),
        ("create-delete", "keep", "delete"),
        ("create-only", "keep", "keep"),
    ],
)
def test_applications_sync_policy_decides_updates_and_deletes(
    policy: str | None, changed: str, leaving: str
) -> None:
    before = existing(make_appset(policy=policy))
    after = make_appset(policy=policy, namespace="moved")
    # Cluster c is relabelled out and d in: c leaves, d is created under every policy.
    clusters = [PROD[0], PROD[1], cluster("c", env="dev"), cluster("d", env="prod")]
    p = plan(after, clusters, before)
    assert kinds(p) == {"gb-a": changed, "gb-b": changed, "gb-c": leaving, "gb-d": "create"}
    if changed == "keep":
        assert "does not update" in next(a.reason for a in p.actions if a.app == "gb-a")
    if leaving == "keep":
        assert "does not delete" in next(a.reason for a in p.actions if a.app == "gb-c")


# ---------------------------------------------------------------- deletion modes


def test_a_cluster_relabelled_out_of_the_selector_loses_its_app_by_cascade() -> None:
    s = make_appset()
    p = plan(s, [PROD[0], PROD[1], cluster("c", env="staging")], existing(s))
    leaving = next(a for a in p.actions if a.app == "gb-c")
    assert (leaving.kind, leaving.deletion) == ("delete", "cascade")
    assert "resources are deleted from the cluster first" in leaving.reason


def test_without_the_finalizer_the_app_is_removed_and_workloads_left_running() -> None:
    s = make_appset(preserve=True)  # generated apps get no finalizer
    before = existing(s)
    assert all(a.finalizers == () for a in before)
    p = plan(s, PROD[:2], before, fleet=PROD)
    leaving = next(a for a in p.actions if a.app == "gb-c")
    assert (leaving.kind, leaving.deletion) == ("delete", "orphan")
    assert "left running" in leaving.reason


def test_a_removed_cluster_strips_the_finalizer() -> None:
    s = make_appset()
    p = plan(s, PROD[:2], existing(s))  # c is gone from the registry altogether
    leaving = next(a for a in p.actions if a.app == "gb-c")
    assert (leaving.kind, leaving.deletion) == ("delete", "orphan")
    assert "no longer registered: finalizer stripped" in leaving.reason


def test_an_app_already_being_deleted_is_left_to_the_reconciler() -> None:
    s = make_appset()
    before = existing(s)
    before[2] = record(
        DesiredApp.from_manifest(before[2].manifest(), appset="gb", source="s", cluster="c"),
        deletion="deleting",
    )
    gone = plan(s, [PROD[0], PROD[1], cluster("c")], before)
    assert kinds(gone)["gb-c"] == "keep"
    back = plan(s, PROD, before)
    assert kinds(back)["gb-c"] == "keep"
    assert "created again" in next(a.reason for a in back.actions if a.app == "gb-c")


# ---------------------------------------------------------------- errors keep everything


def test_a_render_error_keeps_every_application_and_sets_the_error_conditions() -> None:
    s = make_appset(name_template="gb-{{name}}")
    before = existing(s)
    broken = parse_appset(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": "gb", "namespace": "argocd"},
            "spec": {
                "goTemplate": True,
                "goTemplateOptions": ["missingkey=error"],
                "generators": [{"clusters": {}}],
                "template": {
                    "metadata": {"name": "gb-{{ .name }}-{{ .nosuchkey }}"},
                    "spec": {"project": "default", "destination": {"server": "{{ .server }}"}},
                },
            },
        }
    )
    p = plan(broken, PROD[:1], before)
    assert set(kinds(p).values()) == {"keep"} and len(p.actions) == 3
    assert p.generated is None and p.error and "nosuchkey" in p.error
    assert condition(p, "ErrorOccurred") == ("True", "RenderTemplateParamsError")
    assert condition(p, "ParametersGenerated")[0] == "False"
    assert condition(p, "ResourcesUpToDate")[0] == "False"


def test_a_generator_error_keeps_every_application() -> None:
    s = make_appset()
    before = existing(s)
    git = make_appset(
        generators=[
            {
                "git": {
                    "repoURL": "https://git.example/x.git",
                    "revision": "HEAD",
                    "directories": [{"path": "*"}],
                }
            }
        ]
    )
    p = plan(git, PROD, before)  # no repo reader in the context: the generator fails
    assert set(kinds(p).values()) == {"keep"}
    assert condition(p, "ErrorOccurred") == ("True", "ApplicationGenerationFromParamsError")


# ---------------------------------------------------------------- invalid apps: the set is in error


def test_a_duplicate_name_is_an_error_of_the_set_and_nothing_is_created() -> None:
    s = make_appset(name_template="gb")
    first = plan(s, PROD)
    assert kinds(first) == {}
    assert condition(first, "ErrorOccurred") == ("True", "ApplicationValidationError")
    assert "duplicate application name 'gb'" in (first.error or "")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"project": "nope"}, "project 'nope' does not exist"),
        ({"fleet": ()}, "is not a registered cluster"),
        ({"owners": {"gb-a": "appset/other"}}, "belongs to appset/other"),
    ],
)
def test_an_invalid_generated_app_keeps_every_app_of_the_set(
    change: dict[str, Any], problem: str
) -> None:
    s = make_appset()
    before = existing(s)[:1]  # gb-a exists
    s2 = make_appset(project=change.get("project", "default"))
    p = plan(s2, PROD, before, fleet=change.get("fleet"), owners=change.get("owners"))
    assert kinds(p) == {"gb-a": "keep"}  # gb-b and gb-c are not created either
    assert problem in (p.error or "")
    assert condition(p, "ErrorOccurred") == ("True", "ApplicationValidationError")
    assert p.generated is None


@pytest.mark.parametrize("policy", [None, "sync", "create-delete"])
@pytest.mark.parametrize(
    ("name", "destination"),
    [
        ("gb-{{name}}-{{metadata.labels.team}}", "{{server}}"),  # the typo
        ("gb-{{name}}", "{{serverr}}"),  # a placeholder left in the destination
        ("GB_{{name}}", "{{server}}"),  # an invalid name in every app
    ],
)
def test_a_template_typo_in_every_app_deletes_nothing_whatever_the_policy(
    policy: str | None, name: str, destination: str
) -> None:
    before = existing(make_appset(policy=policy))
    broken = make_appset(policy=policy, name_template=name)
    if destination != "{{server}}":
        raw = dict(broken.spec.raw)
        broken = parse_appset(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "ApplicationSet",
                "metadata": {"name": "gb", "namespace": "argocd"},
                "spec": {
                    **raw,
                    "template": {
                        "metadata": {"name": name},
                        "spec": {
                            "project": "default",
                            "source": {"repoURL": "https://git.example/gb.git", "path": "gb"},
                            "destination": {"server": destination, "namespace": "gb"},
                        },
                    },
                },
            },
            source="test.yaml",
        )
    p = plan(broken, PROD, before)
    assert set(kinds(p).values()) == {"keep"} and len(p.actions) == 3
    assert condition(p, "ErrorOccurred") == ("True", "ApplicationValidationError")
    assert "placeholder" in (p.error or "") or "not a valid Kubernetes name" in (p.error or "")
    assert "nothing created, updated or deleted" in (p.error or "")


def test_the_empty_result_guard_does_not_advise_setting_applications_sync() -> None:
    s = make_appset()
    p = plan(s, [cluster("a")], existing(s))
    assert condition(p, "ErrorOccurred") == ("True", EMPTY_GUARD)
    assert "applicationsSync" not in (p.error or "")
    assert ALLOW_EMPTY_ANNOTATION in (p.error or "")


# ---------------------------------------------------------------- unsupported fields


def with_strategy_of(strategy: dict[str, Any]) -> ApplicationSet:
    s = make_appset()
    return parse_appset(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": "gb", "namespace": "argocd"},
            "spec": {**s.spec.raw, "strategy": strategy},
        },
        source="test.yaml",
    )


@pytest.mark.parametrize(
    "strategy",
    [
        {"type": "RollingSync", "rollingSync": {"steps": [{"matchExpressions": []}]}},
        {"type": "AllAtOnce"},
    ],
)
def test_a_known_strategy_generates_as_usual(strategy: dict[str, Any]) -> None:
    # RollingSync decides when apps sync (hub.rollout), not what is generated.
    p = plan(with_strategy_of(strategy), PROD, existing(make_appset())[:1])
    assert kinds(p) == {"gb-a": "keep", "gb-b": "create", "gb-c": "create"}
    assert p.error is None


@pytest.mark.parametrize("strategy", [{"type": "Canary"}, {"type": "BlueGreen", "x": 1}])
def test_an_unknown_strategy_is_refused_and_nothing_is_written(strategy: dict[str, Any]) -> None:
    p = plan(with_strategy_of(strategy), PROD, existing(make_appset())[:1])
    assert kinds(p) == {"gb-a": "keep"}
    assert condition(p, "ErrorOccurred") == ("True", UNSUPPORTED)
    assert "spec.strategy" in (p.error or "") and "not supported" in (p.error or "")
    assert strategy["type"] in (p.error or "")


def test_an_unowned_app_of_the_same_name_is_adopted() -> None:
    p = plan(make_appset(), PROD[:1], owners={})
    assert kinds(p) == {"gb-a": "create"}


# ---------------------------------------------------------------- the empty-result guard


@pytest.mark.parametrize(
    ("policy", "annotation", "expected"),
    [
        (None, None, "guard"),  # implicit sync: the hub refuses to wipe the set
        ("sync", None, "delete"),  # explicit: Argo CD's behaviour
        ("create-delete", None, "delete"),
        ("create-update", None, "keep"),  # deletes nothing anyway, no error
        ("create-only", None, "keep"),
        (None, "true", "delete"),
        ("sync", "false", "guard"),
    ],
)
def test_a_set_that_suddenly_generates_nothing(
    policy: str | None, annotation: str | None, expected: str
) -> None:
    annotations = {} if annotation is None else {ALLOW_EMPTY_ANNOTATION: annotation}
    s = make_appset(policy=policy, annotations=annotations)
    before = existing(s)
    p = plan(s, [cluster("a"), cluster("b"), cluster("c")], before)  # nobody is prod now
    assert len(p.actions) == 3
    if expected == "guard":
        assert set(kinds(p).values()) == {"keep"}
        assert condition(p, "ErrorOccurred") == ("True", EMPTY_GUARD)
        assert p.error and "generated 0 Applications" in p.error and "owns 3" in p.error
        assert p.generated is None
    else:
        assert set(kinds(p).values()) == {expected}
        assert condition(p, "ErrorOccurred")[0] == "False"
        assert p.generated == 0


def test_the_guard_does_not_fire_for_a_set_that_was_already_empty() -> None:
    p = plan(make_appset(), [cluster("a")])
    assert p.actions == () and p.error is None


# ---------------------------------------------------------------- a deleted ApplicationSet


@pytest.mark.parametrize(
    ("sync_policy", "kind", "mode"),
    [
        ({}, "delete", "cascade"),
        ({"preserveResourcesOnDeletion": True}, "delete", "orphan"),
        ({"applicationsSync": "create-only"}, "disown", None),
        ({"applicationsSync": "create-update"}, "disown", None),
        ({"applicationsSync": "create-delete"}, "delete", "cascade"),
    ],
)
def test_deleting_the_appset_file(sync_policy: dict[str, Any], kind: str, mode: str | None) -> None:
    before = existing(make_appset())
    manifest = {"spec": {"syncPolicy": sync_policy}}
    p = plan_deleted_appset("gb", manifest, before, Fleet(clusters=PROD), "file removed")
    assert p.deleted
    assert {(a.kind, a.deletion) for a in p.actions} == {(kind, mode)}
    assert all(a.reason.startswith("file removed") for a in p.actions)


def test_deleting_the_appset_strips_finalizers_of_apps_on_removed_clusters() -> None:
    before = existing(make_appset())
    p = plan_deleted_appset("gb", {}, before, Fleet(clusters=PROD[:2]), "file removed")
    modes = {a.app: a.deletion for a in p.actions}
    assert modes == {"gb-a": "cascade", "gb-b": "cascade", "gb-c": "orphan"}


# ---------------------------------------------------------------- the deletion guard


@pytest.mark.parametrize(
    ("limit", "remaining", "allowed"),
    [
        ("1", 2, True),  # one of three leaves
        ("1", 1, False),  # two would leave
        ("2", 1, True),
        ("34%", 2, True),  # 34% of 3 = 1
        ("34%", 1, False),
        ("100%", 0, True),
        ("0", 2, False),
    ],
)
def test_max_deletions_caps_a_shrinking_result(limit: str, remaining: int, allowed: bool) -> None:
    s = make_appset(policy="sync", annotations={MAX_DELETIONS_ANNOTATION: limit})
    before = existing(s)
    clusters = [*PROD[:remaining], *(cluster(c.name) for c in PROD[remaining:])]
    p = plan(s, clusters, before)
    leaving = {f"gb-{c.name}" for c in PROD[remaining:]}
    if allowed:
        assert {a.app for a in p.actions if a.kind == "delete"} == leaving
        assert p.error is None
    else:
        assert [a for a in p.actions if a.kind == "delete"] == []
        assert all("DeletionGuard" in a.reason for a in p.actions if a.app in leaving)
        assert condition(p, "ErrorOccurred") == ("True", DELETION_GUARD)
        assert p.error and f"{len(leaving)} of 3 Applications would be deleted" in p.error


def test_creates_and_updates_proceed_while_the_deletion_guard_holds() -> None:
    s = make_appset(annotations={MAX_DELETIONS_ANNOTATION: "0"})
    before = existing(s)
    moved = make_appset(annotations={MAX_DELETIONS_ANNOTATION: "0"}, namespace="moved")
    p = plan(moved, [PROD[0], cluster("b"), cluster("c"), cluster("d", env="prod")], before)
    assert kinds(p) == {"gb-a": "update", "gb-b": "keep", "gb-c": "keep", "gb-d": "create"}


@pytest.mark.parametrize("value", ["many", "-1", "150%", ""])
def test_a_bad_max_deletions_value_deletes_nothing(value: str) -> None:
    s = make_appset(annotations={MAX_DELETIONS_ANNOTATION: value})
    p = plan(s, PROD[:2], existing(s), fleet=PROD)
    assert kinds(p)["gb-c"] == "keep" and "is not a count or a percentage" in (p.error or "")


def test_max_deletions_parses_counts_and_percentages() -> None:
    assert max_deletions("3", 10) == 3
    assert max_deletions(" 25% ", 10) == 2
    assert max_deletions("0%", 10) == 0
    for bad in ("x", "-2", "101%"):
        with pytest.raises(ValueError):
            max_deletions(bad, 10)


def test_the_fleet_resolves_a_destination_by_server_else_by_name_first_registered_first() -> None:
    a = ClusterRecord(name="a", server="https://one.example:6443/")
    b = ClusterRecord(name="b", server="https://one.example:6443")  # same server as a
    c = ClusterRecord(name="c", server="https://c.example:6443")
    fleet = Fleet(clusters=(a, b, c))
    assert fleet.resolve("https://one.example:6443", "") is a  # trailing slash ignored
    assert fleet.resolve("https://one.example:6443/", "c") is a  # a server wins over a name
    assert fleet.resolve("https://nowhere.example", "c") is None  # never by name then
    assert fleet.resolve("", "c") is c
    assert fleet.resolve("", "zz") is None
    assert fleet.resolve("", "") is None
    assert fleet.has_cluster("b") and not fleet.has_cluster("zz") and not fleet.has_cluster(None)
    # The same answers as a scan of the fleet in registration order, on a larger fleet.
    many = tuple(
        ClusterRecord(name=f"c{i}", server=f"https://s{i % 7}.example:6443") for i in range(50)
    )
    big = Fleet(clusters=many)
    for i in range(7):
        server = f"https://s{i}.example:6443"
        assert big.resolve(server, "") is next(c for c in many if c.server == server)
    assert big.resolve("", "c42") is many[42]
