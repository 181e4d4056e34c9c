"""How the live cache keeps an object that it held before (``clusters.cache.compact`` with
the previous version): equal to what the API server sent, in its order, sharing what did
not change, and never hiding a change the diff would see. No cluster."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.cache import compact


def managed(manager: str, time: str, fields: dict[str, Any], **extra: str) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "apps/v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **extra,
    }


def deployment(*, ready: int, status_time: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Deployment as a watch event decodes it (no object shared with another call)."""
    return json.loads(
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "web",
                    "namespace": "shop",
                    "resourceVersion": str(100 + ready),
                    "generation": 2,
                    "labels": labels,
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "X", "name": "x", "controller": True}
                    ],
                    "managedFields": [
                        managed("gitops-hub", "T0", {"f:spec": {"f:replicas": {}}}),
                        managed(
                            "kube-controller-manager",
                            status_time,
                            {"f:status": {"f:readyReplicas": {}}},
                            subresource="status",
                        ),
                    ],
                },
                "spec": {"replicas": 2, "paused": False},
                "status": {"readyReplicas": ready, "replicas": 2},
            }
        )
    )


def test_a_status_event_reuses_the_unchanged_metadata_and_field_sets() -> None:
    labels = {"app": "web"}
    first = compact(deployment(ready=1, status_time="T1", labels=labels))
    event = deployment(ready=2, status_time="T2", labels=labels)
    order = json.dumps(event)
    kept = compact(event, first)
    assert kept == event and json.dumps(kept) == order  # equal, in the server's order
    assert json.dumps(event) == order  # the event itself is left as it was
    meta, before = kept["metadata"], first["metadata"]
    assert meta["labels"] is before["labels"]
    assert meta["ownerReferences"] == before["ownerReferences"]  # copied: it holds a bool
    assert meta["managedFields"][0] is before["managedFields"][0]  # untouched entry
    status_entry = meta["managedFields"][1]
    assert status_entry is not before["managedFields"][1] and status_entry["time"] == "T2"
    assert status_entry["fieldsV1"] is before["managedFields"][1]["fieldsV1"]
    assert kept["status"]["readyReplicas"] == 2 and first["status"]["readyReplicas"] == 1
    assert meta["resourceVersion"] == "102"


def test_a_changed_field_is_copied_not_reused() -> None:
    first = compact(deployment(ready=1, status_time="T1", labels={"app": "web"}))
    event = deployment(ready=1, status_time="T1", labels={"app": "web", "tier": "front"})
    kept = compact(event, first)
    assert kept["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert kept["metadata"]["labels"] is not first["metadata"]["labels"]


def test_spec_and_status_are_never_reused_since_python_equality_is_not_the_diffs() -> None:
    """``1 == True`` in Python, not for the diff: a custom resource whose field went from
    true to 1 must reach the cache as 1, even though the two versions compare equal."""
    before = {"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"on": True}}
    after = {"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"on": 1}}
    assert before == after  # which is the trap
    kept = compact(after, compact(before))
    assert type(kept["spec"]["on"]) is int


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2), st.sampled_from(["a", "b"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c", "time"]), inner, max_size=3),
    ),
    max_leaves=12,
)
# a field set means its keys only, and the API server writes {} for every leaf
_fields = st.recursive(
    st.just({}),
    lambda inner: st.dictionaries(st.sampled_from(["f:a", "f:b", "."]), inner, max_size=3),
    max_leaves=8,
)
_entries = st.lists(
    st.fixed_dictionaries(
        {"manager": st.sampled_from(["m1", "m2"]), "time": st.sampled_from(["T1", "T2"])},
        optional={"fieldsV1": _fields, "subresource": st.just("status")},
    ),
    max_size=3,
)
_objects = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                # strings as the API server allows, and what it would refuse: never reused
                "labels": st.dictionaries(
                    st.sampled_from(["x", "y"]), st.sampled_from(["1", 1, True, 1.0]), max_size=2
                ),
                "annotations": st.dictionaries(st.sampled_from(["x"]), st.sampled_from("ab")),
                "generation": st.integers(1, 3),
                "managedFields": _entries,
                "other": _values,
            },
        )
    },
    optional={"spec": _values, "status": _values},
)


@settings(max_examples=500, deadline=None)
@given(previous=_objects, obj=_objects)
def test_whatever_the_previous_version_the_kept_object_is_the_one_sent(
    previous: dict[str, Any], obj: dict[str, Any]
) -> None:
    sent = json.dumps(obj)
    kept = compact(json.loads(sent), compact(json.loads(json.dumps(previous))))
    # the same values of the same JSON types (true, 1 and 1.0 print apart)
    assert json.dumps(kept, sort_keys=True) == json.dumps(obj, sort_keys=True)
    # in the order sent, but for a reused value: it keeps the previous version's order
    # (the API server's encoder writes maps sorted and structs in field order)
    assert list(kept) == list(obj) and list(kept["metadata"]) == list(obj["metadata"])
