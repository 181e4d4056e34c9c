"""JSON patch (RFC 6902), merge patch (RFC 7386) and strategic merge patch, as a server applies them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.sim.patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    merge_patch_value,
)
from clusters.sim.store import load_yaml

# --- RFC 6902 appendix A --------------------------------------------------------------

RFC6902_OK: list[tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any]]] = [
    (
        "A.1 adding an object member",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
    ),
    (
        "A.2 adding an array element",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    (
        "A.3 removing an object member",
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
    ),
    (
        "A.4 removing an array element",
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
    ),
    (
        "A.5 replacing a value",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6 moving a value",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7 moving an array element",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8 testing a value: success",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        "A.10 adding a nested member object",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "A.11 ignoring unrecognized elements",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    (
        "A.14 ~ escape ordering",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}, {"op": "add", "path": "/~1", "value": 1}],
        {"/": 1, "~1": 10},
    ),
    (
        "A.16 adding an array value",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    (
        "copy a subtree",
        {"a": {"b": [1]}},
        [{"op": "copy", "from": "/a", "path": "/c"}, {"op": "add", "path": "/c/b/-", "value": 2}],
        {"a": {"b": [1]}, "c": {"b": [1, 2]}},
    ),
    (
        "annotation keys with slashes",
        {"metadata": {"annotations": {}}},
        [{"op": "add", "path": "/metadata/annotations/example.com~1team", "value": "x"}],
        {"metadata": {"annotations": {"example.com/team": "x"}}},
    ),
    (
        "test equates 1 and 1.0 but nested structures by value",
        {"spec": {"replicas": 1, "l": [{"a": True}]}},
        [
            {"op": "test", "path": "/spec/replicas", "value": 1.0},
            {"op": "test", "path": "/spec/l", "value": [{"a": True}]},
        ],
        {"spec": {"replicas": 1, "l": [{"a": True}]}},
    ),
]


@pytest.mark.parametrize(
    ("doc", "ops", "expected"), [c[1:] for c in RFC6902_OK], ids=[c[0] for c in RFC6902_OK]
)
def test_json_patch_follows_rfc6902(
    doc: dict[str, Any], ops: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    before = copy.deepcopy(doc)
    assert apply_json_patch(doc, ops) == expected
    assert doc == before


RFC6902_ERRORS: list[tuple[str, dict[str, Any], Any, int, str]] = [
    (
        "A.9 testing a value: error",
        {"baz": "qux"},
        [{"op": "test", "path": "/baz", "value": "bar"}],
        422,
        "testing value /baz failed",
    ),
    (
        "A.12 adding to a nonexistent target",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz/bat", "value": "qux"}],
        422,
        "missing path",
    ),
    (
        "A.15 comparing strings and numbers",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": "10"}],
        422,
        "test failed",
    ),
    ("remove a missing key", {"a": 1}, [{"op": "remove", "path": "/b"}], 422, "missing"),
    (
        "replace a missing key",
        {"a": 1},
        [{"op": "replace", "path": "/b", "value": 2}],
        422,
        "missing",
    ),
    (
        "index past the end",
        {"a": [1]},
        [{"op": "add", "path": "/a/5", "value": 2}],
        422,
        "out of range",
    ),
    (
        "leading zero index",
        {"a": [1, 2]},
        [{"op": "remove", "path": "/a/01"}],
        422,
        "invalid array index",
    ),
    ("unknown op", {"a": 1}, [{"op": "frobnicate", "path": "/a"}], 400, "Unexpected kind"),
    ("pointer without slash", {"a": 1}, [{"op": "remove", "path": "a"}], 400, "must start with /"),
    ("missing value", {"a": 1}, [{"op": "add", "path": "/b"}], 400, 'missing "value"'),
    ("not a list", {"a": 1}, {"op": "add"}, 400, "jsonpatch.Patch"),
    (
        "move into own child",
        {"a": {"b": 1}},
        [{"op": "move", "from": "/a", "path": "/a/b/c"}],
        422,
        "prefix",
    ),
    (
        "replace the document with a list",
        {"a": 1},
        [{"op": "replace", "path": "", "value": [1]}],
        400,
        "JSON object",
    ),
]


@pytest.mark.parametrize(
    ("doc", "ops", "code", "fragment"),
    [c[1:] for c in RFC6902_ERRORS],
    ids=[c[0] for c in RFC6902_ERRORS],
)
def test_json_patch_errors_carry_the_servers_reason_and_code(
    doc: dict[str, Any], ops: Any, code: int, fragment: str
) -> None:
    with pytest.raises(PatchError) as info:
        apply_json_patch(doc, ops)
    assert info.value.code == code
    assert info.value.reason == {400: "BadRequest", 422: "Invalid"}[code]
    assert fragment in info.value.message


def test_json_patch_result_shares_nothing_with_the_input() -> None:
    doc = {"spec": {"template": {"labels": {"a": "1"}}}, "other": {"x": [1]}}
    out = apply_json_patch(doc, [{"op": "add", "path": "/spec/replicas", "value": 2}])
    out["other"]["x"].append(2)
    out["spec"]["template"]["labels"]["b"] = "2"
    assert doc == {"spec": {"template": {"labels": {"a": "1"}}}, "other": {"x": [1]}}


# --- RFC 7386 appendix A ----------------------------------------------------------------

RFC7386: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7386)
def test_merge_patch_follows_rfc7386(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch_value(target, patch) == expected


def test_merge_patch_on_an_object_must_be_an_object() -> None:
    with pytest.raises(PatchError) as info:
        apply_merge_patch({"a": 1}, ["x"])
    assert (info.value.code, info.value.reason) == (400, "BadRequest")


def test_merge_patch_replaces_lists_and_deletes_nulls_without_touching_the_input() -> None:
    live = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "x"}]}}
    before = copy.deepcopy(live)
    out = apply_merge_patch(
        live,
        {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"containers": [{"name": "y"}]}},
    )
    assert out == {
        "metadata": {"labels": {"b": "2", "c": "3"}},
        "spec": {"containers": [{"name": "y"}]},
    }
    assert live == before


def _diff(a: Any, b: Any) -> Any:
    """A merge patch that turns ``a`` into ``b`` (the way clients generate them)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return b
    patch: dict[str, Any] = {k: None for k in a if k not in b}
    for k, v in b.items():
        if k not in a:
            patch[k] = v
        elif a[k] != v:
            patch[k] = _diff(a[k], v)
    return patch


_scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=3))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)
_objects = st.dictionaries(st.text(max_size=3), _values, max_size=4)


@settings(max_examples=200, deadline=None)
@given(_objects, _objects)
def test_a_generated_merge_patch_round_trips(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert apply_merge_patch(a, _diff(a, b)) == b


# --- strategic merge patch ------------------------------------------------------------


def _deployment(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": containers, **spec}}},
    }


def _containers(obj: dict[str, Any]) -> Any:
    return obj["spec"]["template"]["spec"]["containers"]


def _pod_spec(obj: dict[str, Any]) -> Any:
    return obj["spec"]["template"]["spec"]


SMP_CONTAINERS: list[
    tuple[str, list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]
] = [
    (
        "containers merge by name and keep the others",
        [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}],
        [{"name": "b", "image": "b:2"}],
        [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}],
    ),
    (
        # The server orders patch items first when it cannot place them among live ones.
        "a new container goes before the live ones",
        [{"name": "a", "image": "a:1"}],
        [{"name": "c", "image": "c:1"}],
        [{"name": "c", "image": "c:1"}, {"name": "a", "image": "a:1"}],
    ),
    (
        "live items keep their place around patched ones",
        [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        [{"name": "c", "image": "c:2"}, {"name": "a", "image": "a:2"}],
        [{"name": "b"}, {"name": "c", "image": "c:2"}, {"name": "a", "image": "a:2"}],
    ),
    (
        "$patch delete removes one container",
        [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}],
        [{"name": "a", "$patch": "delete"}],
        [{"name": "b", "image": "b:1"}],
    ),
    (
        "$patch replace swaps the whole list",
        [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}],
        [{"$patch": "replace"}, {"name": "z", "image": "z:1"}],
        [{"name": "z", "image": "z:1"}],
    ),
    (
        "env merges by name, null deletes a field",
        [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}],
        [
            {
                "name": "a",
                "env": [
                    {"name": "Y", "value": None, "valueFrom": {"fieldRef": {"fieldPath": "x"}}}
                ],
            }
        ],
        [
            {
                "name": "a",
                "env": [
                    {"name": "X", "value": "1"},
                    {"name": "Y", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
                ],
            }
        ],
    ),
    (
        "container ports merge by containerPort",
        [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}],
        [{"name": "a", "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 443}]}],
        [{"name": "a", "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 443}]}],
    ),
    (
        "volumeMounts merge by mountPath",
        [{"name": "a", "volumeMounts": [{"mountPath": "/d", "name": "v1"}]}],
        [{"name": "a", "volumeMounts": [{"mountPath": "/d", "name": "v2", "readOnly": True}]}],
        [{"name": "a", "volumeMounts": [{"mountPath": "/d", "name": "v2", "readOnly": True}]}],
    ),
    (
        "args are replaced, not merged",
        [{"name": "a", "args": ["1", "2"]}],
        [{"name": "a", "args": ["3"]}],
        [{"name": "a", "args": ["3"]}],
    ),
]


@pytest.mark.parametrize(
    ("live", "patch", "expected"),
    [c[1:] for c in SMP_CONTAINERS],
    ids=[c[0] for c in SMP_CONTAINERS],
)
def test_strategic_merge_patch_on_containers(
    live: list[dict[str, Any]], patch: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    obj = _deployment(live)
    before = copy.deepcopy(obj)
    out = apply_strategic_merge_patch(obj, {"spec": {"template": {"spec": {"containers": patch}}}})
    assert _containers(out) == expected
    assert obj == before


def test_strategic_merge_patch_merges_volumes_and_image_pull_secrets_by_name() -> None:
    obj = _deployment(
        [{"name": "a"}],
        volumes=[{"name": "v1", "emptyDir": {}}, {"name": "v2", "configMap": {"name": "c"}}],
        imagePullSecrets=[{"name": "s1"}],
    )
    out = apply_strategic_merge_patch(
        obj,
        {
            "spec": {
                "template": {
                    "spec": {
                        "volumes": [
                            {"name": "v2", "configMap": {"name": "d"}},
                            {"name": "v3", "emptyDir": {}},
                        ],
                        "imagePullSecrets": [{"name": "s2"}],
                    }
                }
            }
        },
    )
    spec = _pod_spec(out)
    assert spec["volumes"] == [
        {"name": "v1", "emptyDir": {}},
        {"name": "v2", "configMap": {"name": "d"}},
        {"name": "v3", "emptyDir": {}},
    ]
    assert spec["imagePullSecrets"] == [{"name": "s2"}, {"name": "s1"}]


def test_retain_keys_drops_the_old_volume_source() -> None:
    obj = _deployment([{"name": "a"}], volumes=[{"name": "v", "emptyDir": {}}])
    out = apply_strategic_merge_patch(
        obj,
        {
            "spec": {
                "template": {
                    "spec": {
                        "volumes": [
                            {
                                "$retainKeys": ["configMap", "name"],
                                "name": "v",
                                "configMap": {"name": "c"},
                            }
                        ]
                    }
                }
            }
        },
    )
    assert _pod_spec(out)["volumes"] == [{"name": "v", "configMap": {"name": "c"}}]


def test_retain_keys_drops_rolling_update_when_switching_to_recreate() -> None:
    obj = _deployment([{"name": "a"}])
    obj["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}
    out = apply_strategic_merge_patch(
        obj, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    )
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_rejects_a_patch_field_outside_the_list() -> None:
    obj = _deployment([{"name": "a"}])
    with pytest.raises(PatchError) as info:
        apply_strategic_merge_patch(
            obj, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "x": 1}}}
        )
    assert info.value.code == 422


def test_tolerations_are_replaced_and_finalizers_merge_as_a_set() -> None:
    obj = _deployment([{"name": "a"}], tolerations=[{"key": "a", "operator": "Exists"}])
    obj["metadata"]["finalizers"] = ["x", "y"]
    out = apply_strategic_merge_patch(
        obj,
        {
            "metadata": {"finalizers": ["y", "z"]},
            "spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}},
        },
    )
    assert _pod_spec(out)["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert sorted(out["metadata"]["finalizers"]) == ["x", "y", "z"]
    assert out["metadata"]["finalizers"].count("y") == 1


def test_delete_from_primitive_list_removes_finalizers() -> None:
    obj = _deployment([{"name": "a"}])
    obj["metadata"]["finalizers"] = ["x", "y", "z"]
    out = apply_strategic_merge_patch(
        obj, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["y"]}}
    )
    assert out["metadata"]["finalizers"] == ["x", "z"]


def test_set_element_order_reorders_the_merged_list() -> None:
    obj = _deployment([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    out = apply_strategic_merge_patch(
        obj,
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [
                            {"name": "c"},
                            {"name": "a"},
                            {"name": "b"},
                        ],
                        "containers": [{"name": "a", "image": "new"}],
                    }
                }
            }
        },
    )
    assert [c["name"] for c in _containers(out)] == ["c", "a", "b"]
    assert _containers(out)[1] == {"name": "a", "image": "new"}


def test_service_ports_merge_by_port_and_conditions_by_type() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]},
        "status": {"conditions": [{"type": "A", "status": "True"}]},
    }
    out = apply_strategic_merge_patch(
        svc,
        {
            "spec": {"ports": [{"port": 80, "targetPort": 9090}]},
            "status": {"conditions": [{"type": "B", "status": "False"}]},
        },
    )
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443}]
    assert [c["type"] for c in out["status"]["conditions"]] == ["B", "A"]


def test_patch_replace_and_delete_directives_on_maps() -> None:
    obj = _deployment([{"name": "a"}])
    obj["metadata"]["labels"] = {"a": "1", "b": "2"}
    obj["metadata"]["annotations"] = {"x": "1"}
    out = apply_strategic_merge_patch(
        obj,
        {
            "metadata": {
                "labels": {"$patch": "replace", "c": "3"},
                "annotations": {"$patch": "delete"},
            }
        },
    )
    assert out["metadata"]["labels"] == {"c": "3"}
    assert out["metadata"]["annotations"] == {}


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"metadata": {"labels": {"$patch": "merge"}}}, 400),
        ({"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}}, 400),
        ({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}, 400),
        (["not", "an", "object"], 400),
    ],
    ids=[
        "merge directive on a map",
        "merge directive in a list",
        "element without merge key",
        "not an object",
    ],
)
def test_strategic_merge_patch_rejects_bad_patches(patch: Any, code: int) -> None:
    obj = _deployment([{"name": "a"}])
    with pytest.raises(PatchError) as info:
        apply_strategic_merge_patch(obj, patch)
    assert info.value.code == code


def test_strategic_merge_patch_of_a_custom_resource_is_unsupported_media_type() -> None:
    cr = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(PatchError) as info:
        apply_strategic_merge_patch(cr, {"spec": {"a": 1}})
    assert (info.value.code, info.value.reason) == (415, "UnsupportedMediaType")
    assert "application/merge-patch+json" in info.value.message


def test_strategic_merge_patch_nulls_for_missing_fields_are_ignored() -> None:
    obj = _deployment([{"name": "a"}])
    out = apply_strategic_merge_patch(
        obj, {"spec": {"replicas": None, "paused": None, "x": {"y": None}}}
    )
    assert "replicas" not in out["spec"]
    assert out["spec"]["x"] == {}
    assert json.dumps(out)  # still plain JSON


@pytest.mark.parametrize("body", [b"data: {a: .nan}", b"spec: {replicas: .inf}"])
def test_a_yaml_body_with_nan_or_infinity_is_refused_as_json_would_be(body: bytes) -> None:
    # The server converts a YAML body to JSON first, and JSON has neither.
    with pytest.raises(yaml.YAMLError, match="unsupported value"):
        load_yaml(body)
