"""Every manifest is validated before anything is applied."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.sync.model import ManifestError
from hub.sync.validate import KindScopes, SourcedManifest, validate_manifests


def m(obj: Any, origin: str = "apps/web.yaml") -> SourcedManifest:
    return SourcedManifest(obj=obj, origin=origin)


def cm(name: str = "c", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}}


def test_namespaced_objects_get_the_destination_namespace_and_inputs_are_not_changed() -> None:
    original = cm()
    out = validate_manifests([m(original)], destination_namespace="payments")
    assert out.manifests[0].obj["metadata"]["namespace"] == "payments"
    assert "namespace" not in original["metadata"]


def test_an_explicit_namespace_is_kept() -> None:
    out = validate_manifests([m(cm(namespace="other"))], destination_namespace="payments")
    assert out.manifests[0].obj["metadata"]["namespace"] == "other"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"apiVersion": "v1", "metadata": {"name": "c"}}, "apps/web.yaml: ? c: kind is missing"),
        (
            {"kind": "ConfigMap", "metadata": {"name": "c"}},
            "apps/web.yaml: ConfigMap c: apiVersion is missing",
        ),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}},
            "ConfigMap ?: metadata.name is missing",
        ),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, "metadata is missing"),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "c-"}},
            "generateName is only supported on hooks",
        ),
        (
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "r", "namespace": "x"},
            },
            "ClusterRole is cluster-scoped but has metadata.namespace 'x'; remove the namespace",
        ),
    ],
)
def test_invalid_manifests_name_file_object_and_problem(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError) as err:
        validate_manifests([m(obj)], destination_namespace="payments")
    assert message in str(err.value)
    assert "nothing was applied" in str(err.value)


def test_a_namespaced_object_without_any_namespace_fails() -> None:
    with pytest.raises(
        ManifestError, match=r"ConfigMap c: ConfigMap is namespaced but has no metadata\.namespace"
    ):
        validate_manifests([m(cm())], destination_namespace="")


def test_cluster_scoped_objects_need_no_namespace() -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}}
    out = validate_manifests([m(ns)], destination_namespace="")
    assert "namespace" not in out.manifests[0].obj["metadata"]


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ManifestError) as err:
        validate_manifests(
            [
                m({"apiVersion": "v1", "metadata": {"name": "a"}}, "a.yaml"),
                m(cm(), "b.yaml"),
                m({"kind": "Pod"}, "c.yaml"),
            ],
            destination_namespace="",
        )
    assert str(err.value).startswith("3 invalid manifests; nothing was applied: a.yaml: ")
    assert [p.split(":")[0] for p in err.value.problems] == ["a.yaml", "b.yaml", "c.yaml", "c.yaml"]


def test_duplicate_objects_are_rejected() -> None:
    with pytest.raises(ManifestError, match="declared twice"):
        validate_manifests([m(cm(), "a.yaml"), m(cm(), "b.yaml")], destination_namespace="n")


def test_unknown_kinds_fail_when_discovery_is_known() -> None:
    scopes = KindScopes.from_discovery(
        cluster_scoped=[("", "Namespace")], namespaced=[("", "ConfigMap")]
    )
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(
        ManifestError, match=r"kind Widget \(example.com/v1\) is not known to the cluster"
    ):
        validate_manifests([m(widget)], destination_namespace="n", scopes=scopes)
    # a CRD in the same render makes the kind known, with the scope it declares
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "names": {"kind": "Widget"}, "scope": "Cluster"},
    }
    scopes = KindScopes.from_discovery(
        cluster_scoped=[("apiextensions.k8s.io", "CustomResourceDefinition")], namespaced=[]
    )
    out = validate_manifests([m(crd), m(widget)], destination_namespace="n", scopes=scopes)
    assert "namespace" not in out.manifests[1].obj["metadata"]


def test_generate_name_hooks_are_valid() -> None:
    hook = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "generateName": "smoke-",
            "annotations": {"argocd.argoproj.io/hook": "PostSync"},
        },
    }
    out = validate_manifests([m(hook)], destination_namespace="n")
    assert out.manifests[0].obj["metadata"]["namespace"] == "n"


def test_a_bad_sync_wave_is_a_warning_not_an_error_as_in_argo_cd() -> None:
    obj = cm(
        annotations={
            "argocd.argoproj.io/sync-wave": "first",
            "argocd.argoproj.io/hook": "PreSnyc,PreSync",
        }
    )
    out = validate_manifests([m(obj)], destination_namespace="n")
    assert any("is not an integer; using wave 0" in w for w in out.warnings)
    assert any("unknown hook type(s) PreSnyc" in w for w in out.warnings)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"annotations": ["a"]}, "metadata.annotations must be a mapping"),
        (
            {"annotations": {"argocd.argoproj.io/sync-wave": 1}},
            r"metadata.annotations\[argocd.argoproj.io/sync-wave\] must be a string, got 1; quote it",
        ),
        ({"labels": {"tier": True}}, r"metadata.labels\[tier\] must be a string"),
        ({"x": [{1: "a"}]}, r"key 1 at metadata.x\[0\] is not a string; quote it"),
    ],
)
def test_labels_and_annotations_must_be_string_maps(meta: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        validate_manifests([m(cm(**meta))], destination_namespace="n")


_any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "apiVersion",
                    "kind",
                    "metadata",
                    "name",
                    "namespace",
                    "generateName",
                    "annotations",
                    "labels",
                    "spec",
                    "x",
                ]
            ),
            c,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_any, max_size=4))
def test_any_manifest_validates_or_fails_with_our_own_error(objs: list[Any]) -> None:
    try:
        out = validate_manifests([m(o) for o in objs], destination_namespace="n")
    except ManifestError as exc:
        assert exc.problems
    else:
        assert len(out.manifests) == len(objs)
