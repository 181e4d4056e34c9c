"""Desired vs live comparison: normalisation, managedFields ownership, ignoreDifferences."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.sync.diff import (
    _METADATA_NOISE,
    _NOISE_ANNOTATIONS,
    AppComparison,
    DiffReason,
    JqRunner,
    SyncStatus,
    _drop_nulls,
    compare_app,
    compare_resource,
    managed_fields_of,
    normalize,
    parse_fields_v1,
    parse_quantity,
)
from hub.sync.model import DiffError, IgnoreDifference
from hub.sync.resources import TRACKING_ANNOTATION, with_tracking_id


def compare(desired: list[dict[str, Any]], live: list[dict[str, Any]], **kw: Any) -> AppComparison:
    return compare_app(desired, live, app="payments", **kw)


def desired_deployment(replicas: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "payments", "namespace": "payments", "labels": {"app": "payments"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "payments"}},
            "template": {
                "metadata": {"labels": {"app": "payments"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/payments:1.4.2",
                            "ports": [{"containerPort": 8080}],
                            "resources": {
                                "requests": {"cpu": "1000m", "memory": 1073741824},
                                "limits": {"cpu": 1},
                            },
                        }
                    ]
                },
            },
        },
    }


# What our server-side apply of desired_deployment() owns (fieldsV1 as the API server writes it).
OUR_FIELDS = {
    "f:metadata": {"f:labels": {"f:app": {}}, "f:annotations": {f"f:{TRACKING_ANNOTATION}": {}}},
    "f:spec": {
        "f:replicas": {},
        "f:selector": {},
        "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:containers": {
                    'k:{"name":"app"}': {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {
                            'k:{"containerPort":8080,"protocol":"TCP"}': {
                                ".": {},
                                "f:containerPort": {},
                            }
                        },
                        "f:resources": {
                            "f:limits": {"f:cpu": {}},
                            "f:requests": {"f:cpu": {}, "f:memory": {}},
                        },
                    }
                }
            },
        },
    },
}


def live_deployment(
    replicas: int = 3, *, extra_managers: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The object a 1.30 API server returns after our apply: defaults, status, bookkeeping."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "payments",
            "namespace": "payments",
            "uid": "0b6c8a0e-8d0e-4a55-9d3f-2c8e4c1f0a11",
            "resourceVersion": "48213",
            "generation": 2,
            "creationTimestamp": "2026-11-21T20:00:00Z",
            "labels": {"app": "payments"},
            "annotations": {
                "deployment.kubernetes.io/revision": "1",
                TRACKING_ANNOTATION: "payments:apps/Deployment:payments/payments",
            },
            "managedFields": [
                {
                    "manager": "gitops-hub",
                    "operation": "Apply",
                    "apiVersion": "apps/v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": copy.deepcopy(OUR_FIELDS),
                },
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "subresource": "status",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:replicas": {}}},
                },
                *(extra_managers or []),
            ],
        },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "payments"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {"app": "payments"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/payments:1.4.2",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": "1", "memory": "1Gi"},
                                "limits": {"cpu": "1"},
                            },
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                        }
                    ],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        },
    }


def test_server_defaults_and_bookkeeping_are_not_drift() -> None:
    result = compare_resource(desired_deployment(), live_deployment())
    assert result.status is SyncStatus.SYNCED, result.diff_text()
    assert result.reason is None


def test_empty_maps_and_lists_in_git_equal_their_absence_as_the_go_types_make_it() -> None:
    desired = desired_deployment()
    desired["metadata"]["annotations"] = {}
    container = desired["spec"]["template"]["spec"]["containers"][0]
    container.update({"env": [], "securityContext": {}, "args": None})
    desired["spec"]["template"]["spec"]["volumes"] = []
    assert compare_resource(desired, live_deployment()).status is SyncStatus.SYNCED


@pytest.mark.parametrize(
    ("extra", "synced"),
    [
        ({"readOnly": False}, True),
        ({"subPath": ""}, True),
        ({"readOnly": True}, False),
        ({"subPath": "conf"}, False),
    ],
)
def test_zero_values_the_server_omits_are_not_drift(extra: dict[str, Any], synced: bool) -> None:
    desired = desired_deployment()
    desired["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "config", "mountPath": "/etc/app", **extra}
    ]
    live = live_deployment()
    live["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "config", "mountPath": "/etc/app"}
    ]
    assert (compare_resource(desired, live).status is SyncStatus.SYNCED) is synced


def test_scaled_replicas_are_drift_with_an_argocd_style_unified_diff() -> None:
    result = compare_resource(desired_deployment(3), live_deployment(5))
    assert result.status is SyncStatus.OUT_OF_SYNC
    assert result.reason is DiffReason.DIFFERS
    assert result.diff_text() == (
        "===== apps/Deployment payments/payments ======\n"
        "--- live\n"
        "+++ desired\n"
        "@@ -6,7 +6,7 @@\n"
        "   name: payments\n"
        "   namespace: payments\n"
        " spec:\n"
        "-  replicas: 5\n"
        "+  replicas: 3\n"
        "   selector:\n"
        "     matchLabels:\n"
        "       app: payments\n"
    )


def test_diff_text_is_deterministic() -> None:
    a = compare_resource(desired_deployment(3), live_deployment(5)).diff_text()
    b = compare_resource(desired_deployment(3), live_deployment(5)).diff_text()
    assert a == b


@pytest.mark.parametrize(
    "rule",
    [
        IgnoreDifference(group="apps", kind="Deployment", json_pointers=("/spec/replicas",)),
        IgnoreDifference(
            group="apps",
            kind="Deployment",
            name="payments",
            jq_path_expressions=(".spec.replicas",),
        ),
        IgnoreDifference(group="*", kind="*", json_pointers=("/spec/replicas",)),
    ],
    ids=["jsonPointers", "jqPathExpressions", "wildcards"],
)
def test_ignore_differences_on_replicas_keeps_the_app_synced(rule: IgnoreDifference) -> None:
    result = compare([desired_deployment(3)], [live_deployment(5)], ignore_differences=[rule])
    assert result.status is SyncStatus.SYNCED
    assert result.diff_text() == ""


def test_only_synced_resources_no_ignore_rule_touches_are_alike() -> None:
    # Synced under an ignore rule is not "an apply changes nothing": replicas differ.
    rule = IgnoreDifference(group="apps", kind="Deployment", json_pointers=("/spec/replicas",))
    ignored = compare([desired_deployment(3)], [live_deployment(5)], ignore_differences=[rule])
    assert ignored.status is SyncStatus.SYNCED and ignored.resources[0].ignored
    assert ignored.synced_keys and not ignored.alike_keys
    plain = compare([desired_deployment(3)], [live_deployment(3)])
    assert plain.alike_keys == plain.synced_keys and len(plain.alike_keys) == 1
    differs = compare([desired_deployment(3)], [live_deployment(5)])
    assert not differs.alike_keys


@pytest.mark.parametrize(
    ("group", "kind", "name", "applies"),
    [
        ("apps", "Deploy*", "", True),
        ("", "Deployment", "", False),  # "" is the core group, as in Argo CD
        ("apps", "Deployment", "payments", True),
        ("apps", "Deployment", "pay*", False),  # names are exact
    ],
)
def test_ignore_difference_selectors_follow_argo_cd(
    group: str, kind: str, name: str, applies: bool
) -> None:
    rule = IgnoreDifference(group=group, kind=kind, name=name, json_pointers=("/spec/replicas",))
    result = compare([desired_deployment(3)], [live_deployment(5)], ignore_differences=[rule])
    assert (result.status is SyncStatus.SYNCED) is applies


def test_ignore_differences_for_another_resource_does_not_apply() -> None:
    rule = IgnoreDifference(
        group="apps", kind="Deployment", name="other", json_pointers=("/spec/replicas",)
    )
    result = compare([desired_deployment(3)], [live_deployment(5)], ignore_differences=[rule])
    assert result.status is SyncStatus.OUT_OF_SYNC


def test_managed_fields_managers_ignores_fields_another_manager_owns() -> None:
    hpa = {
        "manager": "kube-controller-manager",
        "operation": "Update",
        "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }
    live = live_deployment(5, extra_managers=[hpa])
    rule = IgnoreDifference(
        group="apps", kind="Deployment", managed_fields_managers=("kube-controller-manager",)
    )
    assert (
        compare_resource(desired_deployment(3), live, ignore_differences=[rule]).status
        is SyncStatus.SYNCED
    )
    assert compare_resource(desired_deployment(3), live).status is SyncStatus.OUT_OF_SYNC


def test_a_field_git_dropped_that_our_manager_still_owns_is_drift() -> None:
    live = live_deployment()
    live["metadata"]["labels"]["team"] = "billing"
    live["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:labels"]["f:team"] = {}
    result = compare_resource(desired_deployment(), live)
    assert result.status is SyncStatus.OUT_OF_SYNC
    assert "-    team: billing" in result.diff_text()


def test_a_field_only_another_manager_owns_is_not_drift() -> None:
    live = live_deployment()
    live["metadata"]["labels"]["team"] = "billing"  # set by kubectl label, not by us
    assert compare_resource(desired_deployment(), live).status is SyncStatus.SYNCED


def test_a_container_injected_by_a_webhook_is_not_drift_when_managed_fields_say_it_is_not_ours() -> (
    None
):
    live = live_deployment()
    live["spec"]["template"]["spec"]["containers"].append(
        {"name": "istio-proxy", "image": "proxy:1"}
    )
    assert compare_resource(desired_deployment(), live).status is SyncStatus.SYNCED


def test_a_changed_image_is_drift() -> None:
    live = live_deployment()
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/payments:1.4.1"
    result = compare_resource(desired_deployment(), live)
    assert result.status is SyncStatus.OUT_OF_SYNC
    assert "+      - image: registry.example/payments:1.4.2" in result.diff_text()


def test_without_managed_fields_lists_of_objects_compare_position_by_position() -> None:
    live = live_deployment()
    del live["metadata"]["managedFields"]
    assert compare_resource(desired_deployment(), live).status is SyncStatus.SYNCED


@pytest.mark.parametrize(
    ("desired", "live", "same"),
    [
        ("1000m", "1", True),
        ("500m", "0.5", True),
        (1073741824, "1Gi", True),
        ("1Gi", "1G", False),
        (2, "2", True),
        ("250m", "0.3", False),
    ],
)
def test_quantities_compare_by_value(desired: Any, live: Any, same: bool) -> None:
    d: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "q", "namespace": "n"},
        "spec": {"hard": {"cpu": desired}},
    }
    lv = copy.deepcopy(d)
    lv["spec"]["hard"]["cpu"] = live
    status = compare_resource(d, lv).status
    assert (status is SyncStatus.SYNCED) is same


def test_numeric_looking_strings_outside_quantities_are_compared_as_text() -> None:
    d: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n"},
        "data": {"v": "1.0"},
    }
    lv = copy.deepcopy(d)
    lv["data"]["v"] = "1"
    assert compare_resource(d, lv).status is SyncStatus.OUT_OF_SYNC


def test_secret_string_data_is_folded_into_data() -> None:
    d = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "n"},
        "stringData": {"password": "hunter22"},
    }
    lv = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "n"},
        "type": "Opaque",
        "data": {"password": "aHVudGVyMjI="},
    }
    assert compare_resource(d, lv).status is SyncStatus.SYNCED


def test_secret_values_never_appear_in_the_diff_text() -> None:
    d = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "n"},
        "stringData": {"password": "hunter22", "user": "app"},
    }
    lv = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "n"},
        "data": {"password": "b2xkLXNlY3JldA==", "user": "YXBw"},
    }
    result = compare_resource(d, lv)
    assert result.status is SyncStatus.OUT_OF_SYNC
    text = result.diff_text()
    assert "b2xkLXNlY3JldA==" not in text and "aHVudGVyMjI=" not in text and "hunter22" not in text
    assert "-  password: ++++++++\n+  password: +++++++++\n" in text
    assert "   user: ++++++++\n" in text


def test_missing_and_extraneous_resources_make_the_app_out_of_sync() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}
    extra = with_tracking_id(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old", "namespace": "n"}},
        "payments",
    )
    result = compare([cm], [extra])
    assert result.status is SyncStatus.OUT_OF_SYNC
    reasons = {r.key.name: r.reason for r in result.resources}
    assert reasons == {"c": DiffReason.MISSING, "old": DiffReason.EXTRANEOUS}
    assert [r.requires_pruning for r in result.resources] == [False, True]


def test_ignore_extraneous_keeps_the_app_synced_but_the_resource_visible() -> None:
    extra = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "generated",
            "namespace": "n",
            "annotations": {"argocd.argoproj.io/compare-options": "IgnoreExtraneous"},
        },
    }
    result = compare([], [with_tracking_id(extra, "payments")])
    assert result.status is SyncStatus.SYNCED
    (res,) = result.resources
    assert res.status is SyncStatus.OUT_OF_SYNC and not res.counts_for_app


def test_live_objects_the_app_does_not_track_are_never_extraneous() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}
    other = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "other", "namespace": "n"},
    }
    result = compare(
        [cm],
        [
            cm,
            other,
            with_tracking_id(other | {"metadata": {"name": "x", "namespace": "n"}}, "billing"),
        ],
    )
    # the untracked "c" is compared because Git declares it (the apply adopts it)
    assert [(r.key.name, r.status) for r in result.resources] == [("c", SyncStatus.SYNCED)]
    assert result.status is SyncStatus.SYNCED


def test_hooks_are_not_compared() -> None:
    hook = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "m",
            "namespace": "n",
            "annotations": {"argocd.argoproj.io/hook": "PreSync"},
        },
    }
    assert compare([hook], [hook | {"spec": {"x": 1}}]).resources == ()


def test_a_slow_jq_expression_is_stopped_by_the_timeout() -> None:
    rule = IgnoreDifference(
        group="*", kind="*", jq_path_expressions=(".spec[(range(100000000000) | tostring)]",)
    )
    with JqRunner(timeout_s=0.3) as runner, pytest.raises(DiffError, match="took longer than"):
        compare(
            [desired_deployment()], [live_deployment()], ignore_differences=[rule], jq_runner=runner
        )


def test_an_invalid_jq_expression_is_a_clear_error() -> None:
    rule = IgnoreDifference(group="*", kind="*", jq_path_expressions=(".spec[[",))
    with pytest.raises(DiffError, match=r"jqPathExpression '\.spec\[\[' is invalid"):
        compare([desired_deployment()], [live_deployment()], ignore_differences=[rule])


def test_fields_v1_parsing_understands_keys_values_and_indexes() -> None:
    node = parse_fields_v1(
        {
            "f:spec": {
                "f:finalizers": {'v:"a"': {}},
                "f:items": {"i:0": {}},
                'k:{"name":"x","port":80}': {".": {}},
            }
        }
    )
    spec = node.children[("f", "spec")]
    assert ("v", json.dumps("a")) in spec.children[("f", "finalizers")].children
    assert ("i", 0) in spec.children[("f", "items")].children
    assert ("k", (("name", '"x"'), ("port", "80"))) in spec.children


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("100m", Decimal("0.1")),
        ("1Ki", Decimal(1024)),
        ("1e3", Decimal(1000)),
        ("1.5G", Decimal(1_500_000_000)),
        ("-2Mi", Decimal(-2 * 2**20)),
        (3, Decimal(3)),
        ("x", None),
        ("1 Gi", None),
        (True, None),
    ],
)
def test_parse_quantity(text: object, value: Decimal | None) -> None:
    assert parse_quantity(text) == value


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=6), _json, max_size=4),
    st.dictionaries(st.sampled_from(["status", "extra", "defaulted"]), _json, max_size=3),
)
def test_live_only_fields_nobody_declared_are_never_drift(
    body: dict[str, Any], live_only: dict[str, Any]
) -> None:
    desired = {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": {"name": "t", "namespace": "n"},
    }
    desired.update(
        {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata", *live_only)}
    )
    live = copy.deepcopy(desired) | live_only
    assert compare_resource(desired, live).status is SyncStatus.SYNCED


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _json, max_size=4))
def test_any_object_compared_with_itself_is_synced(body: dict[str, Any]) -> None:
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": {"name": "t", "namespace": "n"},
        **{k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")},
    }
    result = compare_resource(obj, copy.deepcopy(obj))
    assert result.status is SyncStatus.SYNCED, result.diff_text()


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["spec", "data", "x"]), _json, max_size=3),
    st.dictionaries(st.sampled_from(["spec", "data", "x", "status"]), _json, max_size=3),
    st.sampled_from(
        [
            None,
            {},
            {"f:spec": {}},
            {"f:spec": {"f:a": {}, 'k:{"name":"a"}': {}}},
            {"f:data": {'v:"x"': {}}},
        ]
    ),
)
def test_any_pair_compares_without_crashing(
    desired_body: dict[str, Any], live_body: dict[str, Any], fields: dict[str, Any] | None
) -> None:
    meta = {"name": "t", "namespace": "n"}
    desired = {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": dict(meta),
        **desired_body,
    }
    live_meta: dict[str, Any] = dict(meta)
    if fields is not None:
        live_meta["managedFields"] = [
            {"manager": "gitops-hub", "operation": "Apply", "fieldsV1": fields}
        ]
    live = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": live_meta, **live_body}
    result = compare_resource(desired, live)
    assert result.status in (SyncStatus.SYNCED, SyncStatus.OUT_OF_SYNC)
    text = result.diff_text()
    assert text.startswith("===== example.com/Thing n/t ======\n")
    assert (result.status is SyncStatus.SYNCED) == (text.count("\n") == 1)


# --------------------------------------------------------------------------- normalize


def _normalize_copying_everything(obj: dict[str, Any]) -> dict[str, Any]:
    """normalize() as it was before it dropped the noise first: clean the whole object,
    then remove status and the metadata noise (the reference for the property below)."""
    out: dict[str, Any] = _drop_nulls(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for k in _METADATA_NOISE:
            meta.pop(k, None)
        for k in ("annotations", "labels"):
            values = meta.get(k)
            if isinstance(values, dict):
                for noise in _NOISE_ANNOTATIONS if k == "annotations" else ():
                    values.pop(noise, None)
                if not values:
                    meta.pop(k)
    return out


_leaf = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "a", "b"])
_value = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=8,
)
_meta_keys = st.sampled_from(["name", "labels", "annotations", *_METADATA_NOISE])


@settings(max_examples=400, deadline=None)
@given(
    meta=st.none() | st.dictionaries(_meta_keys, _value, max_size=5),
    rest=st.dictionaries(st.sampled_from(["spec", "status", "data", "kind"]), _value, max_size=3),
)
def test_normalize_drops_noise_first_with_the_same_result(
    meta: dict[str, Any] | None, rest: dict[str, Any]
) -> None:
    obj = {"apiVersion": "v1", **rest}
    if meta is not None:
        obj["metadata"] = meta
    before = copy.deepcopy(obj)
    assert normalize(obj) == _normalize_copying_everything(copy.deepcopy(obj))
    assert obj == before  # the input is never changed


def test_a_managers_field_sets_are_merged_without_changing_the_parsed_ones() -> None:
    first = {"f:spec": {"f:replicas": {}}}
    second = {"f:spec": {"f:paused": {}}}
    obj: dict[str, Any] = {
        "metadata": {
            "managedFields": [
                {"manager": "hub", "operation": "Apply", "fieldsV1": first},
                {"manager": "hub", "operation": "Update", "fieldsV1": second},
            ]
        }
    }
    only_first: dict[str, Any] = {
        "metadata": {"managedFields": [{"manager": "hub", "fieldsV1": first}]}
    }
    for _ in range(2):  # the second round reads the remembered parses
        merged = managed_fields_of(obj, "hub")
        assert merged is not None
        spec = merged.child(("f", "spec"))
        assert spec is not None and set(spec.children) == {("f", "replicas"), ("f", "paused")}
        alone = managed_fields_of(only_first, "hub")
        assert alone is not None
        alone_spec = alone.child(("f", "spec"))
        assert alone_spec is not None and set(alone_spec.children) == {("f", "replicas")}
    assert managed_fields_of(only_first, "hub") is managed_fields_of(only_first, "hub")
