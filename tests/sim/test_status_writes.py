"""A status write keeps everything but the status, and shares it with the stored version
where the kind's status defaults read nothing else (clusters.sim.store)."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest

from clusters.sim import store as sim_store
from clusters.sim.kinds import ResourceType
from clusters.sim.store import ClusterStore

NS = "default"


def _store() -> ClusterStore:
    s = ClusterStore("c")
    s.check_writes = True  # whatever the environment says
    namespaces = s.kinds.by_kind("v1", "Namespace")
    assert namespaces is not None
    s.create(namespaces, "", {"metadata": {"name": NS}}, manager="test")
    return s


def _deployment() -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "labels": {"team": "a"}},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"}]},
            },
        },
    }


def _pod(resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": NS},
        "spec": {"containers": [{"name": "c", "image": "nginx:1", "resources": resources}]},
    }


def _type(s: ClusterStore, api_version: str, kind: str) -> ResourceType:
    rt = s.kinds.by_kind(api_version, kind)
    assert rt is not None
    return rt


def _stored_deployment(s: ClusterStore) -> tuple[ResourceType, dict[str, Any]]:
    """A Deployment "web" created by kubectl: its type and its stored version."""
    rt = _type(s, "apps/v1", "Deployment")
    s.create(rt, NS, _deployment(), manager="kubectl")
    stored = s.find(rt.group_kind, NS, "web")
    assert stored is not None
    return rt, stored


def _status_write(s: ClusterStore, kind: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    rt = _type(s, "apps/v1" if kind == "Deployment" else "v1", kind)
    current = s.find(rt.group_kind, NS, name)
    assert current is not None
    body = {**copy.deepcopy(current), "status": status}
    s.update(rt, NS, name, body, manager="kube-controller-manager", subresource="status")
    stored = s.find(rt.group_kind, NS, name)
    assert stored is not None
    return stored


def test_a_deployment_status_write_shares_the_rest_and_agrees_with_the_long_way() -> None:
    s = _store()
    _, before = _stored_deployment(s)
    kept = copy.deepcopy(before)
    after = _status_write(s, "Deployment", "web", {"observedGeneration": 1, "replicas": 1})
    assert after["status"] == {"observedGeneration": 1, "replicas": 1}
    assert after["spec"] is before["spec"]  # shared, not copied
    assert after["metadata"]["labels"] is before["metadata"]["labels"]
    assert before == kept  # and the stored version it shares with is left as it was
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    managers = {e["manager"]: e for e in after["metadata"]["managedFields"]}
    assert managers["kube-controller-manager"]["subresource"] == "status"


def test_a_pod_status_write_is_defaulted_whole_since_its_qos_class_reads_the_spec() -> None:
    s = _store()
    rt = _type(s, "v1", "Pod")
    guaranteed = {"limits": {"cpu": "1", "memory": "1Gi"}}
    s.create(rt, NS, _pod(guaranteed), manager="kubectl")
    after = _status_write(s, "Pod", "p", {"phase": "Running"})
    assert after["status"]["qosClass"] == "Guaranteed"


def test_the_check_catches_a_kind_whose_status_defaults_read_the_spec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Shared, a Pod's status would be defaulted without its spec: BestEffort, wrongly.
    monkeypatch.setattr(
        sim_store, "_STATUS_ONLY_DEFAULTS", sim_store._STATUS_ONLY_DEFAULTS | {("", "Pod")}
    )
    s = _store()
    rt = _type(s, "v1", "Pod")
    s.create(rt, NS, _pod({"limits": {"cpu": "1", "memory": "1Gi"}}), manager="kubectl")
    with pytest.raises(AssertionError, match="the long way gives"):
        _status_write(s, "Pod", "p", {"phase": "Running"})


def test_the_suite_s_simulators_check_their_shared_status_writes() -> None:
    # tests/conftest.py turns it on for every simulator the suite starts (not on import:
    # the benchmarks import its helpers and must not pay for the check).
    assert os.environ.get(sim_store.CHECK_WRITES_ENV) == "1"
    assert ClusterStore("c").check_writes


def test_an_update_shares_the_sent_field_sets_and_leaves_the_body_as_it_was() -> None:
    s = _store()
    rt, current = _stored_deployment(s)
    body = copy.deepcopy(current)
    body["spec"]["replicas"] = 2
    entry = body["metadata"]["managedFields"][0]
    entry["subresource"] = None  # a null the Go round trip drops, from the write's copy
    sent = copy.deepcopy(body)

    copied = sim_store._clone_body(body)
    assert copied["metadata"]["managedFields"][0]["fieldsV1"] is entry["fieldsV1"]
    assert copied["metadata"]["managedFields"][0] is not entry
    assert copied["spec"] is not body["spec"] and copied["spec"] == body["spec"]

    s.update(rt, NS, "web", body, manager="kubectl-edit")
    assert body == sent  # the caller's object, entries included, is left as it was
    stored = s.find(rt.group_kind, NS, "web")
    assert stored is not None and stored["spec"]["replicas"] == 2
    managers = [e["manager"] for e in stored["metadata"]["managedFields"]]
    assert managers == ["kubectl", "kubectl-edit"]


def test_an_update_shares_what_it_left_as_it_was_with_the_stored_version() -> None:
    s = _store()
    rt, before = _stored_deployment(s)
    kept = copy.deepcopy(before)
    body = copy.deepcopy(before)
    body["metadata"]["annotations"] = {"note": "a"}
    s.update(rt, NS, "web", body, manager="kubectl-edit")
    after = s.find(rt.group_kind, NS, "web")
    assert after is not None and after["metadata"]["annotations"] == {"note": "a"}
    assert after["spec"] is before["spec"]  # equal as sent, so shared
    assert after["metadata"]["labels"] is before["metadata"]["labels"]
    assert before == kept

    # A change deep inside shares the rest around it.
    body = copy.deepcopy(after)
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    s.update(rt, NS, "web", body, manager="kubectl-edit")
    changed = s.find(rt.group_kind, NS, "web")
    assert changed is not None
    assert changed["spec"] is not after["spec"]
    assert changed["spec"]["selector"] is after["spec"]["selector"]
    assert changed["spec"]["template"]["metadata"] is after["spec"]["template"]["metadata"]
    assert changed["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"


@pytest.mark.parametrize(
    ("new", "old"),
    [
        ({"a": True}, {"a": 1}),  # equal in Python, not as JSON
        ({"a": 1}, {"a": 1.0}),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # another key order
        ({"a": [1, 2]}, {"a": [1, 2, 3]}),
        ({"a": {"x": None}}, {"a": {}}),
    ],
)
def test_only_what_is_the_same_json_is_shared(new: dict[str, Any], old: dict[str, Any]) -> None:
    sent = copy.deepcopy(new)
    kept = sim_store._unchanged_or_new(new, old)
    assert kept is not old
    assert json.dumps(kept) == json.dumps(sent)
    assert sim_store._unchanged_or_new(copy.deepcopy(old), old) is old


def test_an_apply_leaves_the_stored_version_as_it_was_and_shares_its_untouched_sets() -> None:
    s = _store()
    rt = _type(s, "apps/v1", "Deployment")
    s.patch(rt, NS, "web", "apply", json.dumps(_deployment()).encode(), manager="hub")
    _status_write(s, "Deployment", "web", {"observedGeneration": 1, "replicas": 1})
    before = s.find(rt.group_kind, NS, "web")
    assert before is not None
    kept = copy.deepcopy(before)
    changed = _deployment()
    changed["spec"]["replicas"] = 3
    s.patch(rt, NS, "web", "apply", json.dumps(changed).encode(), manager="hub")
    after = s.find(rt.group_kind, NS, "web")
    assert after is not None and after["spec"]["replicas"] == 3
    assert before == kept  # the apply read the stored version without changing it

    def status_set(obj: dict[str, Any]) -> Any:
        (entry,) = [e for e in obj["metadata"]["managedFields"] if e.get("subresource")]
        return entry["fieldsV1"]

    assert status_set(after) is status_set(before)  # untouched by the apply: shared
