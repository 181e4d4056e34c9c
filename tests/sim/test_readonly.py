"""Frozen JSON values: what the simulated controllers read when reads are checked."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from clusters.sim.readonly import FrozenDict, FrozenList, ReadOnlyError, freeze, thaw

OBJ: dict[str, Any] = {
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {"replicas": 1, "containers": [{"name": "main", "ports": [80]}]},
}

CHANGES: list[Callable[[Any], object]] = [
    lambda o: o.__setitem__("kind", "Pod"),
    lambda o: o.__delitem__("spec"),
    lambda o: o.pop("spec"),
    lambda o: o.popitem(),
    lambda o: o.setdefault("status", {}),
    lambda o: o.update({"status": {}}),
    lambda o: o.clear(),
    lambda o: o["metadata"]["labels"].__setitem__("app", "db"),
    lambda o: o["spec"].__setitem__("replicas", 2),
    lambda o: o["spec"]["containers"].append({}),
    lambda o: o["spec"]["containers"].extend([{}]),
    lambda o: o["spec"]["containers"].insert(0, {}),
    lambda o: o["spec"]["containers"].pop(),
    lambda o: o["spec"]["containers"].remove(o["spec"]["containers"][0]),
    lambda o: o["spec"]["containers"].sort(),
    lambda o: o["spec"]["containers"].reverse(),
    lambda o: o["spec"]["containers"].clear(),
    lambda o: o["spec"]["containers"].__setitem__(0, {}),
    lambda o: o["spec"]["containers"].__delitem__(0),
    lambda o: o["spec"]["containers"][0]["ports"].append(443),
]


@pytest.mark.parametrize("change", CHANGES)
def test_no_part_of_a_frozen_object_can_be_changed_in_place(
    change: Callable[[Any], object],
) -> None:
    frozen = freeze(OBJ)
    with pytest.raises(ReadOnlyError, match="copy it first"):
        change(frozen)
    assert frozen == OBJ


def test_augmented_assignment_is_refused_too() -> None:
    frozen = freeze(OBJ)
    containers = frozen["spec"]["containers"]
    with pytest.raises(ReadOnlyError):
        containers += [{}]
    metadata = frozen["metadata"]
    with pytest.raises(ReadOnlyError):
        metadata |= {"namespace": "ns"}
    assert frozen == OBJ


def test_a_frozen_object_reads_encodes_and_compares_like_the_original() -> None:
    frozen = freeze(OBJ)
    assert isinstance(frozen, dict) and isinstance(frozen["spec"]["containers"], list)
    assert frozen == OBJ
    assert json.dumps(frozen, sort_keys=True) == json.dumps(OBJ, sort_keys=True)
    assert frozen is not OBJ and frozen["spec"] is not OBJ["spec"]


def test_copies_of_a_frozen_object_are_ordinary_mutable_data() -> None:
    frozen = freeze(OBJ)
    for mutable in (copy.deepcopy(frozen), thaw(frozen)):
        mutable["spec"]["containers"][0]["ports"].append(443)
        mutable["metadata"]["labels"]["app"] = "db"
        assert type(mutable) is dict and type(mutable["spec"]["containers"]) is list
    shallow = {**frozen, "status": {}}
    assert type(shallow) is dict
    assert type(copy.copy(frozen)) is dict and type(dict(frozen)) is dict
    assert type(copy.copy(frozen["spec"]["containers"])) is list
    assert frozen == OBJ


def test_frozen_values_are_frozen_all_the_way_down() -> None:
    frozen = freeze(OBJ)
    assert isinstance(frozen, FrozenDict)
    assert isinstance(frozen["spec"]["containers"], FrozenList)
    assert isinstance(frozen["spec"]["containers"][0], FrozenDict)
    assert isinstance(frozen["spec"]["containers"][0]["ports"], FrozenList)
