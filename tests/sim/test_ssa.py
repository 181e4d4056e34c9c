"""Server-side apply and managedFields, compared with what real API servers return.

Reference outputs: the ConfigMap of the Kubernetes "Server-Side Apply" documentation, and
``kubectl get --show-managed-fields -o yaml`` of Deployments created by ``kubectl create`` /
client-side apply (e.g. openshift/cluster-network-operator#3121) and applied with
``kubectl apply --server-side``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.sim import ssa
from clusters.sim.defaults import apply_defaults
from clusters.sim.patch import PatchError
from clusters.sim.ssa import ApplyConflict, server_side_apply, track_update

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:01:00Z"
T2 = "2026-01-01T00:02:00Z"
T3 = "2026-01-01T00:03:00Z"


def _load(text: str) -> dict[str, Any]:
    obj = yaml.safe_load(text)
    assert isinstance(obj, dict)
    return obj


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list(obj["metadata"].get("managedFields", []))


def _fields(
    obj: dict[str, Any], manager: str, operation: str = "Apply", subresource: str = ""
) -> Any:
    for entry in _entries(obj):
        if (
            entry["manager"] == manager
            and entry["operation"] == operation
            and entry.get("subresource", "") == subresource
        ):
            return entry["fieldsV1"]
    return None


def _create(obj: dict[str, Any], manager: str, now: str = T0) -> dict[str, Any]:
    """What a server stores for a POST by ``manager``: defaults, then ownership."""
    new = copy.deepcopy(obj)
    apply_defaults(new, allocate_cluster_ip=lambda: "10.96.0.10")
    track_update(None, new, manager=manager, now=now)
    return new


def _apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str = "gitops-hub",
    *,
    force: bool = False,
    now: str = T1,
) -> dict[str, Any]:
    out = server_side_apply(live, applied, manager=manager, force=force, now=now)
    apply_defaults(out, allocate_cluster_ip=lambda: "10.96.0.10")
    return out


def _sim_status_apply(live: dict[str, Any], status: dict[str, Any], *, now: str) -> dict[str, Any]:
    """``status`` applied to DEPLOYMENT's status subresource by the manager "sim"."""
    return server_side_apply(
        live,
        {**_load(DEPLOYMENT), "status": status},
        manager="sim",
        force=False,
        now=now,
        subresource="status",
    )


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  namespace: default
  labels: {app: nginx}
spec:
  replicas: 3
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports: [{containerPort: 80}]
"""


# --- encoding against real server output ----------------------------------------------------


def test_applying_the_documentation_config_map_records_its_fields() -> None:
    applied = _load(
        """
apiVersion: v1
kind: ConfigMap
metadata: {name: test-cm, namespace: default, labels: {test-label: test}}
data: {key: some value}
"""
    )
    out = server_side_apply(None, applied, manager="kubectl", force=False, now=T0)
    assert out["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:data": {"f:key": {}},
                "f:metadata": {"f:labels": {"f:test-label": {}}},
            },
        }
    ]
    assert out["data"] == {"key": "some value"}
    assert "uid" not in out["metadata"] and "resourceVersion" not in out["metadata"]


def test_a_created_deployment_is_owned_like_kubectl_create_on_a_real_server() -> None:
    created = _create(_load(DEPLOYMENT), "kubectl-create")
    (entry,) = _entries(created)
    assert {k: v for k, v in entry.items() if k != "fieldsV1"} == {
        "manager": "kubectl-create",
        "operation": "Update",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
    }
    expected = _load(
        """
f:metadata:
  f:labels:
    .: {}
    f:app: {}
f:spec:
  f:progressDeadlineSeconds: {}
  f:replicas: {}
  f:revisionHistoryLimit: {}
  f:selector: {}
  f:strategy:
    f:rollingUpdate:
      .: {}
      f:maxSurge: {}
      f:maxUnavailable: {}
    f:type: {}
  f:template:
    f:metadata:
      f:labels:
        .: {}
        f:app: {}
    f:spec:
      f:containers:
        k:{"name":"nginx"}:
          .: {}
          f:image: {}
          f:imagePullPolicy: {}
          f:name: {}
          f:ports:
            .: {}
            k:{"containerPort":80,"protocol":"TCP"}:
              .: {}
              f:containerPort: {}
              f:protocol: {}
          f:resources: {}
          f:terminationMessagePath: {}
          f:terminationMessagePolicy: {}
      f:dnsPolicy: {}
      f:restartPolicy: {}
      f:schedulerName: {}
      f:securityContext: {}
      f:terminationGracePeriodSeconds: {}
"""
    )
    assert entry["fieldsV1"] == expected
    # The wire form keeps the server's order: "." first, then fields sorted by name.
    assert json.dumps(entry["fieldsV1"]) == json.dumps(_sorted_like_server(expected))


def _sorted_like_server(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    keys = sorted(node, key=lambda k: (k != ".", k))
    return {k: _sorted_like_server(node[k]) for k in keys}


def test_a_server_side_apply_owns_exactly_the_applied_fields() -> None:
    out = _apply(None, _load(DEPLOYMENT), "kubectl")
    assert _fields(out, "kubectl") == _load(
        """
f:metadata:
  f:labels:
    f:app: {}
f:spec:
  f:replicas: {}
  f:selector: {}
  f:template:
    f:metadata:
      f:labels:
        f:app: {}
    f:spec:
      f:containers:
        k:{"name":"nginx"}:
          .: {}
          f:image: {}
          f:name: {}
          f:ports:
            k:{"containerPort":80,"protocol":"TCP"}:
              .: {}
              f:containerPort: {}
"""
    )
    # Defaults land in the object but belong to nobody.
    assert out["spec"]["revisionHistoryLimit"] == 10


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
            "spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}",
            {
                "f:spec": {
                    "f:ports": {
                        'k:{"port":80,"protocol":"TCP"}': {
                            ".": {},
                            "f:port": {},
                            "f:targetPort": {},
                        }
                    },
                    "f:selector": {},
                }
            },
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, finalizers: [b.example/x, a.example/y]}",
            {"f:metadata": {"f:finalizers": {'v:"a.example/y"': {}, 'v:"b.example/x"': {}}}},
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
            "spec: {template: {spec: {containers: [{name: c, env: [{name: A, valueFrom: "
            "{secretKeyRef: {name: s, key: k}}}], ports: [{containerPort: 443}, {containerPort: 80}]}],"
            " tolerations: [{key: k, operator: Exists}], securityContext: {}}}}",
            {
                "f:spec": {
                    "f:template": {
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"c"}': {
                                    ".": {},
                                    "f:env": {
                                        'k:{"name":"A"}': {
                                            ".": {},
                                            "f:name": {},
                                            "f:valueFrom": {"f:secretKeyRef": {}},
                                        }
                                    },
                                    "f:name": {},
                                    "f:ports": {
                                        'k:{"containerPort":80,"protocol":"TCP"}': {
                                            ".": {},
                                            "f:containerPort": {},
                                        },
                                        'k:{"containerPort":443,"protocol":"TCP"}': {
                                            ".": {},
                                            "f:containerPort": {},
                                        },
                                    },
                                }
                            },
                            "f:securityContext": {},
                            "f:tolerations": {},
                        }
                    }
                }
            },
        ),
        (
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
            "spec: {size: 3, items: [a, b], nested: {deep: true}}",
            {"f:spec": {"f:items": {}, "f:nested": {"f:deep": {}}, "f:size": {}}},
        ),
    ],
    ids=[
        "service ports keyed by port and defaulted protocol, atomic selector",
        "finalizers as a set, in value order",
        "env, atomic key refs, numeric key order, atomic tolerations",
        "custom resource: maps by field, lists atomic",
    ],
)
def test_fields_v1_encoding(manifest: str, expected: dict[str, Any]) -> None:
    out = server_side_apply(None, _load(manifest), manager="m", force=False, now=T0)
    fields = _fields(out, "m")
    assert fields == expected
    assert json.dumps(fields) == json.dumps(_sorted_by_element(expected))


def _sorted_by_element(node: Any) -> Any:
    # Numbers in keys sort numerically, which the plain string order would get wrong.
    if not isinstance(node, dict):
        return node

    def order(k: str) -> tuple[Any, ...]:
        if k == ".":
            return (0,)
        kind, _, body = k.partition(":")
        if kind == "k":
            return (2, tuple(sorted(json.loads(body).items())))
        return ({"f": 1, "v": 3}[kind], body)

    return {k: _sorted_by_element(node[k]) for k in sorted(node, key=order)}


# --- ownership ---------------------------------------------------------------------------------


def test_two_appliers_of_the_same_value_share_the_field() -> None:
    base = _load(DEPLOYMENT)
    one = _apply(None, base, "team-a", now=T0)
    two = _apply(one, base, "team-b", now=T1)
    assert _fields(two, "team-a")["f:spec"]["f:replicas"] == {}
    assert _fields(two, "team-b")["f:spec"]["f:replicas"] == {}

    # team-a stops declaring replicas: team-b still owns it, so it stays.
    without = copy.deepcopy(base)
    del without["spec"]["replicas"]
    three = _apply(two, without, "team-a", now=T2)
    assert three["spec"]["replicas"] == 3
    assert "f:replicas" not in _fields(three, "team-a")["f:spec"]

    # Once nobody owns it the field goes, and the server's default comes back.
    four = _apply(three, without, "team-b", now=T3)
    assert four["spec"]["replicas"] == 1


def test_changing_a_field_another_manager_owns_conflicts_unless_forced() -> None:
    live = _create(_load(DEPLOYMENT), "kubectl-client-side-apply")
    wanted = _load(DEPLOYMENT)
    wanted["spec"]["replicas"] = 5
    with pytest.raises(ApplyConflict) as info:
        _apply(live, wanted, "gitops-hub")
    assert str(info.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        ".spec.replicas"
    )
    assert info.value.conflicts == [(".spec.replicas", "kubectl-client-side-apply")]
    assert info.value.causes == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
            "field": ".spec.replicas",
        }
    ]

    forced = _apply(live, wanted, "gitops-hub", force=True)
    assert forced["spec"]["replicas"] == 5
    assert "f:replicas" in _fields(forced, "gitops-hub")["f:spec"]
    assert "f:replicas" not in _fields(forced, "kubectl-client-side-apply", "Update")["f:spec"]
    # Fields applied with the same value are shared, not taken.
    assert (
        "f:image"
        in (
            _fields(forced, "kubectl-client-side-apply", "Update")["f:spec"]["f:template"][
                "f:spec"
            ]["f:containers"]['k:{"name":"nginx"}']
        )
    )


def test_several_conflicts_are_listed_per_manager() -> None:
    live = _create(_load(DEPLOYMENT), "kubectl-create")
    wanted = _load(DEPLOYMENT)
    wanted["spec"]["replicas"] = 5
    wanted["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    with pytest.raises(ApplyConflict) as info:
        _apply(live, wanted)
    assert str(info.value) == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-create" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image'
    )


def test_a_scale_through_the_subresource_takes_replicas_from_the_applier() -> None:
    applied = _apply(None, _load(DEPLOYMENT), "gitops-hub", now=T0)
    scaled = copy.deepcopy(applied)
    scaled["spec"]["replicas"] = 7
    track_update(applied, scaled, manager="kubectl", subresource="scale", now=T1)
    entry = next(e for e in _entries(scaled) if e.get("subresource") == "scale")
    assert entry == {
        "manager": "kubectl",
        "operation": "Update",
        "apiVersion": "apps/v1",
        "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
        "subresource": "scale",
    }
    assert "f:replicas" not in _fields(scaled, "gitops-hub")["f:spec"]

    # Git still says 3: the next apply conflicts with the scaler...
    with pytest.raises(ApplyConflict) as info:
        _apply(scaled, _load(DEPLOYMENT), "gitops-hub", now=T2)
    assert str(info.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" '
        "using apps/v1: .spec.replicas"
    )
    # ...unless forced, which takes the field back and leaves the scaler with nothing.
    forced = _apply(scaled, _load(DEPLOYMENT), "gitops-hub", force=True, now=T2)
    assert forced["spec"]["replicas"] == 3
    assert [e["manager"] for e in _entries(forced)] == ["gitops-hub"]


def test_fields_a_manager_stops_applying_are_removed() -> None:
    first = _load(DEPLOYMENT)
    first["metadata"]["labels"]["tier"] = "web"
    first["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
    live = _apply(None, first, now=T0)
    # Someone else adds a label of their own with an ordinary update.
    edited = copy.deepcopy(live)
    edited["metadata"]["labels"]["owner"] = "ops"
    track_update(live, edited, manager="kubectl-label", now=T1)

    later = _apply(edited, _load(DEPLOYMENT), now=T2)
    assert later["metadata"]["labels"] == {"app": "nginx", "owner": "ops"}
    assert [c["name"] for c in later["spec"]["template"]["spec"]["containers"]] == ["nginx"]
    assert _fields(later, "kubectl-label", "Update") == {
        "f:metadata": {"f:labels": {"f:owner": {}}}
    }


def test_keyed_lists_merge_per_key_between_appliers() -> None:
    live = _apply(None, _load(DEPLOYMENT), "team-a", now=T0)
    sidecar = _load(
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx-deployment, namespace: default}
spec:
  template:
    spec:
      containers:
      - {name: proxy, image: envoy:1, env: [{name: LEVEL, value: debug}]}
"""
    )
    both = _apply(live, sidecar, "team-b", now=T1)
    containers = both["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx", "proxy"]
    assert containers[0]["image"] == "nginx:1.14.2"

    # team-a updates its container; team-b's survives untouched.
    bumped = _load(DEPLOYMENT)
    bumped["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    after = _apply(both, bumped, "team-a", now=T2)
    containers = after["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("nginx", "nginx:1.27"),
        ("proxy", "envoy:1"),
    ]

    # team-b drops its container: only that one goes.
    gone = _apply(
        after, {**sidecar, "spec": {"template": {"spec": {"containers": []}}}}, "team-b", now=T3
    )
    assert [c["name"] for c in gone["spec"]["template"]["spec"]["containers"]] == ["nginx"]


def test_managed_fields_entries_are_ordered_like_the_server_orders_them() -> None:
    live = _create(_load(DEPLOYMENT), "kubectl-create", now=T0)
    applied = _apply(live, _load(DEPLOYMENT), "gitops-hub", now=T2)
    labelled = copy.deepcopy(applied)
    labelled["metadata"]["labels"]["x"] = "y"
    track_update(applied, labelled, manager="a-labeller", now=T1)
    assert [(e["manager"], e["operation"]) for e in _entries(labelled)] == [
        ("gitops-hub", "Apply"),
        ("kubectl-create", "Update"),
        ("a-labeller", "Update"),
    ]


def test_a_no_op_apply_keeps_the_entry_time_and_the_object() -> None:
    live = _apply(None, _load(DEPLOYMENT), now=T0)
    again = _apply(live, _load(DEPLOYMENT), now=T1)
    assert again == live


def test_status_is_neither_applied_nor_owned_through_the_main_resource() -> None:
    live = _apply(None, _load(DEPLOYMENT), now=T0)
    live["status"] = {"replicas": 3}
    applied = _load(DEPLOYMENT)
    applied["status"] = {"replicas": 99}
    out = _apply(live, applied, now=T1)
    assert out["status"] == {"replicas": 3}
    assert "f:status" not in _fields(out, "gitops-hub")


def test_status_writes_are_tracked_on_the_status_subresource() -> None:
    live = _apply(None, _load(DEPLOYMENT), now=T0)
    with_status = copy.deepcopy(live)
    with_status["status"] = {"replicas": 3, "conditions": [{"type": "Available", "status": "True"}]}
    track_update(live, with_status, manager="deployment-controller", subresource="status", now=T1)
    assert _fields(with_status, "deployment-controller", "Update", "status") == {
        "f:status": {
            "f:conditions": {
                ".": {},
                'k:{"type":"Available"}': {".": {}, "f:status": {}, "f:type": {}},
            },
            "f:replicas": {},
        }
    }
    # A later apply of the same spec changes nothing and conflicts with nobody.
    assert _apply(with_status, _load(DEPLOYMENT), now=T2) == with_status

    status_apply = _sim_status_apply(with_status, {"observedGeneration": 4}, now=T3)
    assert status_apply["status"]["observedGeneration"] == 4
    assert status_apply["spec"] == with_status["spec"]
    assert _fields(status_apply, "sim", "Apply", "status") == {
        "f:status": {"f:observedGeneration": {}}
    }


def test_a_status_write_that_sets_a_new_field_adds_it_to_its_writers_set() -> None:
    """The writer's set is re-encoded when a write grows or shrinks it, and only then (an
    unchanged one keeps its stored encoding)."""
    live = _apply(None, _load(DEPLOYMENT), now=T0)
    first = copy.deepcopy(live)
    first["status"] = {"replicas": 3}
    track_update(live, first, manager="deployment-controller", subresource="status", now=T1)
    same = copy.deepcopy(first)
    same["status"] = {"replicas": 2}  # another value of the same field
    track_update(first, same, manager="deployment-controller", subresource="status", now=T2)
    assert _fields(same, "deployment-controller", "Update", "status") == {
        "f:status": {"f:replicas": {}}
    }
    grown = copy.deepcopy(same)
    grown["status"] = {"replicas": 2, "readyReplicas": 3}  # one new field, nothing else
    track_update(same, grown, manager="deployment-controller", subresource="status", now=T3)
    assert _fields(grown, "deployment-controller", "Update", "status") == {
        "f:status": {"f:readyReplicas": {}, "f:replicas": {}}
    }
    shrunk = copy.deepcopy(grown)
    shrunk["status"] = {"readyReplicas": 3}
    track_update(grown, shrunk, manager="deployment-controller", subresource="status", now=T3)
    assert _fields(shrunk, "deployment-controller", "Update", "status") == {
        "f:status": {"f:readyReplicas": {}}
    }


@pytest.mark.parametrize("reset", [[], [{}]], ids=["empty list", "one empty entry"])
def test_an_update_sending_empty_managed_fields_resets_them(reset: list[Any]) -> None:
    live = _create(_load(DEPLOYMENT), "kubectl-create")
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = reset
    new["spec"]["replicas"] = 4
    track_update(live, new, manager="kubectl-edit", now=T1)
    assert "managedFields" not in new["metadata"]


def test_an_update_may_replace_managed_fields_explicitly() -> None:
    live = _create(_load(DEPLOYMENT), "kubectl-create")
    sent = [
        {
            "manager": "someone",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        }
    ]
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = copy.deepcopy(sent)
    track_update(live, new, manager="kubectl-edit", now=T1)
    assert new["metadata"]["managedFields"] == sent

    # Without managedFields in the body, the stored ones are kept (clients that do not know
    # the field must not wipe it).
    plain = copy.deepcopy(live)
    del plain["metadata"]["managedFields"]
    plain["metadata"]["labels"]["x"] = "1"
    track_update(live, plain, manager="kubectl-edit", now=T1)
    assert _fields(plain, "kubectl-edit", "Update") == {"f:metadata": {"f:labels": {"f:x": {}}}}
    assert _fields(plain, "kubectl-create", "Update") is not None


def test_applying_to_an_untracked_object_guards_its_existing_fields() -> None:
    live = _load(DEPLOYMENT)
    apply_defaults(live, allocate_cluster_ip=lambda: "")
    wanted = _load(DEPLOYMENT)
    wanted["spec"]["replicas"] = 1
    with pytest.raises(ApplyConflict) as info:
        _apply(live, wanted)
    assert info.value.conflicts == [(".spec.replicas", "before-first-apply")]


@pytest.mark.parametrize(
    ("applied", "code", "fragment"),
    [
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c", "managedFields": []},
            },
            400,
            "metadata.managedFields must be nil",
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d"},
                "spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}},
            },
            422,
            'duplicate entries for key [name="a"]',
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "s"},
                "spec": {"ports": [{"name": "http", "targetPort": 80}]},
            },
            422,
            'omits key field "port"',
        ),
    ],
    ids=["managedFields in the configuration", "duplicate list keys", "list key left out"],
)
def test_bad_apply_configurations_are_rejected(
    applied: dict[str, Any], code: int, fragment: str
) -> None:
    with pytest.raises(PatchError) as info:
        server_side_apply(None, applied, manager="m", force=False, now=T0)
    assert info.value.code == code
    assert fragment in info.value.message


def test_apply_and_track_never_mutate_their_inputs() -> None:
    live = _create(_load(DEPLOYMENT), "kubectl-create")
    applied = _load(DEPLOYMENT)
    applied["spec"]["template"]["spec"]["containers"].append({"name": "b", "image": "b"})
    live_before, applied_before = copy.deepcopy(live), copy.deepcopy(applied)
    out = server_side_apply(live, applied, manager="m", force=True, now=T1)
    out["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    out["metadata"]["labels"]["changed"] = "yes"
    assert live == live_before and applied == applied_before

    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 9
    track_update(live, new, manager="x", now=T2)
    assert live == live_before


def test_more_than_ten_update_managers_fold_into_ancient_changes() -> None:
    obj = _create(_load(DEPLOYMENT), "m00", now="2026-01-01T00:00:00Z")
    for n in range(1, 12):
        new = copy.deepcopy(obj)
        new["metadata"]["labels"][f"l{n}"] = "x"
        track_update(obj, new, manager=f"m{n:02d}", now=f"2026-01-01T00:{n:02d}:00Z")
        obj = new
    managers = [e["manager"] for e in _entries(obj)]
    assert len(managers) == 10
    assert "ancient-changes" in managers
    assert "m00" not in managers and "m01" not in managers and "m02" not in managers
    ancient = _fields(obj, "ancient-changes", "Update")
    assert ancient["f:metadata"]["f:labels"]["f:l1"] == {}
    assert "f:replicas" in ancient["f:spec"]


def test_a_created_service_owns_its_defaults_but_not_what_the_registry_allocates() -> None:
    svc = _load(
        """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""
    )
    # The server's order: decoding defaults, ownership, then registry allocations.
    apply_defaults(svc, allocate_cluster_ip=lambda: "10.96.0.10", server_assigned=False)
    track_update(None, svc, manager="kubectl-create", now=T0)
    apply_defaults(svc, allocate_cluster_ip=lambda: "10.96.0.10")
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert _fields(svc, "kubectl-create", "Update") == {
        "f:spec": {
            "f:internalTrafficPolicy": {},
            "f:ports": {
                ".": {},
                'k:{"port":80,"protocol":"TCP"}': {
                    ".": {},
                    "f:name": {},
                    "f:port": {},
                    "f:protocol": {},
                    "f:targetPort": {},
                },
            },
            "f:selector": {},
            "f:sessionAffinity": {},
            "f:type": {},
        }
    }


_names = st.sampled_from(["a", "b", "c", "d"])
_containers = st.lists(
    st.fixed_dictionaries(
        {"name": _names},
        optional={
            "image": st.sampled_from(["x:1", "x:2", "y"]),
            "args": st.lists(st.sampled_from(["-v", "-q"]), max_size=2),
            "env": st.lists(
                st.fixed_dictionaries({"name": _names, "value": st.sampled_from(["1", "2"])}),
                max_size=3,
                unique_by=lambda e: e["name"],
            ),
        },
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda c: c["name"],
)
_configs = st.builds(
    lambda labels, containers, replicas: {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": labels},
        "spec": {
            **({"replicas": replicas} if replicas is not None else {}),
            "template": {"spec": {"containers": containers}},
        },
    },
    st.dictionaries(_names, st.sampled_from(["1", "2"]), max_size=3),
    _containers,
    st.one_of(st.none(), st.integers(0, 3)),
)


@settings(max_examples=150, deadline=None)
@given(_configs, _configs)
def test_a_sole_applier_ends_with_exactly_its_latest_configuration(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    # Without defaults: those are computed once (imagePullPolicy from the first image) and
    # legitimately differ between the two histories.
    live = server_side_apply(None, first, manager="m", force=False, now=T0)
    after = server_side_apply(live, second, manager="m", force=False, now=T1)
    fresh = server_side_apply(None, second, manager="m", force=False, now=T1)
    owners = [obj["metadata"].pop("managedFields") for obj in (after, fresh)]
    for entry in owners[0] + owners[1]:
        entry.pop("time")  # a no-op apply keeps the earlier time
    assert owners[0] == owners[1]
    assert _without_empties(after) == _without_empties(fresh)


def _without_empties(value: Any) -> Any:
    """What the server's Go types keep: no empty lists or maps."""
    if isinstance(value, dict):
        out = {k: _without_empties(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_without_empties(v) for v in value]
    return value


def test_kubectl_dry_run_output_with_null_timestamps_applies_cleanly() -> None:
    live = _apply(None, _load(DEPLOYMENT), now=T0)
    live["metadata"]["creationTimestamp"] = T0
    generated = _load(DEPLOYMENT)
    generated["metadata"]["creationTimestamp"] = None
    generated["spec"]["template"]["metadata"]["creationTimestamp"] = None
    out = _apply(live, generated, now=T1)
    assert out["metadata"]["creationTimestamp"] == T0
    assert out["spec"]["template"]["metadata"]["creationTimestamp"] is None
    template_meta = _fields(out, "gitops-hub")["f:spec"]["f:template"]["f:metadata"]
    assert template_meta == {"f:creationTimestamp": {}, "f:labels": {"f:app": {}}}


def _applied_with_sim_status(*, now: str) -> dict[str, Any]:
    """DEPLOYMENT applied by gitops-hub, then part of its status applied by "sim" (at
    ``now``): an object whose entries a later write may or may not touch."""
    live = _apply(None, _load(DEPLOYMENT), now=T0)
    return _sim_status_apply(live, {"observedGeneration": 1, "readyReplicas": 1}, now=now)


def test_status_writes_record_the_same_fields_whether_entries_are_decoded_or_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A status write decodes only the entries it may change (the applier's spec entry
    stays in its wire form): the outcome is the one of decoding every entry."""
    live = _applied_with_sim_status(now=T1)
    statuses: list[dict[str, Any]] = [
        {"replicas": 3, "observedGeneration": 2, "readyReplicas": 1, "conditions": [{"type": "A"}]},
        {"replicas": 3, "observedGeneration": 2, "readyReplicas": 1},  # a condition goes away
        {"observedGeneration": 3, "readyReplicas": 2},  # takes readyReplicas from "sim"
    ]

    def writes() -> list[dict[str, Any]]:
        obj, out = live, []
        for n, status in enumerate(statuses):
            new = copy.deepcopy(obj)
            new["status"] = status
            track_update(
                obj, new, manager="deployment-controller", subresource="status", now=f"{T2}{n}"
            )
            out.append(new)
            obj = new
        return out

    lazy = writes()
    decode_all = ssa._decode_or_empty
    monkeypatch.setattr(ssa, "_decode_or_empty", lambda raw, lazily=False: decode_all(raw))
    assert lazy == writes()
    assert _fields(lazy[-1], "gitops-hub") == _fields(live, "gitops-hub")
    # The controller took over both fields "sim" applied, so its entry is gone.
    assert _fields(lazy[0], "sim", "Apply", "status") == {"f:status": {"f:readyReplicas": {}}}
    assert _fields(lazy[-1], "sim", "Apply", "status") is None


def test_an_update_sending_back_the_stored_entries_decodes_only_what_it_touches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read-modify-write sends the stored managedFields back: the entries it leaves alone
    keep their stored encoding, and the outcome is the one of decoding every entry."""
    live = _applied_with_sim_status(now=T0)

    def edits() -> list[dict[str, Any]]:
        obj, out = live, []
        for n, change in enumerate(
            [
                {"annotations": {"note": "a"}},  # touches no other entry's fields
                {"annotations": {"note": "b"}, "labels": {"app": "nginx", "x": "1"}},
                {"annotations": {}, "labels": {"app": "other"}},  # takes app from gitops-hub
            ]
        ):
            new = copy.deepcopy(obj)  # what a controller or a patch sends back
            new["metadata"].update(change)
            track_update(obj, new, manager="kubectl-edit", now=f"{T2}{n}")
            out.append(new)
            obj = new
        return out

    lazy = edits()
    untouched = _fields(live, "sim", "Apply", "status")
    assert _fields(lazy[0], "sim", "Apply", "status") is untouched  # not decoded again
    assert _fields(lazy[0], "gitops-hub") is _fields(live, "gitops-hub")
    decode_all = ssa._decode_or_empty
    monkeypatch.setattr(ssa, "_decode_or_empty", lambda raw, lazily=False: decode_all(raw))
    assert lazy == edits()
    assert "f:metadata" not in _fields(lazy[-1], "gitops-hub")  # its only label was taken


def test_an_update_sending_other_entries_than_the_stored_ones_gets_them_normalised() -> None:
    live = _create(_load(DEPLOYMENT), "kubectl-create")
    new = copy.deepcopy(live)
    entry = new["metadata"]["managedFields"][0]
    spec = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]
    # The same key written with other spacing: a client's entry is decoded and re-encoded.
    spec["f:containers"] = {
        k.replace('{"name":', '{ "name" :'): v for k, v in spec["f:containers"].items()
    }
    assert new["metadata"]["managedFields"] != live["metadata"]["managedFields"]
    track_update(live, new, manager="kubectl-edit", now=T1)
    assert new["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_the_compare_tells_booleans_from_numbers_and_nulls_from_values() -> None:
    from clusters.sim import schema

    c = ssa._compare(
        {"a": 1, "b": True, "c": "x", "d": None, "e": 0, "f": 2},
        {"a": True, "b": 1, "c": "x", "d": None, "e": False, "f": 2.0, "g": None},
        schema.DEDUCED,
    )
    assert c.modified == {"f:a": {".": {}}, "f:b": {".": {}}, "f:e": {".": {}}}
    assert c.added == {} and c.removed == {}


def test_a_write_shares_the_entries_it_leaves_as_they_were_with_the_stored_version() -> None:
    live = _sim_status_apply(
        _apply(None, _load(DEPLOYMENT), now=T0), {"observedGeneration": 1}, now=T0
    )
    stored = {e["manager"]: e for e in _entries(live)}
    new = copy.deepcopy(live)
    new["status"] = {"observedGeneration": 1, "replicas": 3}
    track_update(live, new, manager="deployment-controller", subresource="status", now=T1)
    entries = {e["manager"]: e for e in _entries(new)}
    assert entries["gitops-hub"] is stored["gitops-hub"]
    assert entries["sim"] is stored["sim"]
    assert "deployment-controller" not in stored

    # The writer's own entry changes (its time, here its set too): a new one.
    again = copy.deepcopy(new)
    again["status"] = {"observedGeneration": 1, "replicas": 3, "readyReplicas": 1}
    track_update(new, again, manager="deployment-controller", subresource="status", now=T2)
    after = {e["manager"]: e for e in _entries(again)}
    mine = after["deployment-controller"]
    assert mine is not entries["deployment-controller"]
    assert (mine["time"], entries["deployment-controller"]["time"]) == (T2, T1)
    assert mine["fieldsV1"] == {"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}
    assert after["sim"] is stored["sim"]
    assert after["gitops-hub"] is stored["gitops-hub"]


def test_a_status_write_changes_its_writer_s_set_on_the_wire_form_sharing_the_rest() -> None:
    live = _apply(None, _load(DEPLOYMENT), now=T0)
    conditions = [{"type": "Available", "status": "True"}, {"type": "Progressing"}]
    first = copy.deepcopy(live)
    first["status"] = {"replicas": 1, "conditions": conditions}
    track_update(live, first, manager="kcm", subresource="status", now=T1)
    second = copy.deepcopy(first)
    second["status"] = {"replicas": 2, "readyReplicas": 1, "conditions": conditions}
    track_update(first, second, manager="kcm", subresource="status", now=T2)

    before, after = (
        _fields(first, "kcm", "Update", "status"),
        _fields(second, "kcm", "Update", "status"),
    )
    assert after["f:status"]["f:conditions"] is before["f:status"]["f:conditions"]
    assert list(after["f:status"]) == ["f:conditions", "f:readyReplicas", "f:replicas"]
    decoded = ssa.fp.from_fields_v1(before)
    ssa.fp.union_into(decoded, {"f:status": {"f:readyReplicas": {".": {}}}})
    assert json.dumps(after) == json.dumps(ssa.fp.to_fields_v1(decoded))
