"""Pure parts of deletion safety: which clusters are fenced, what a deletion reports."""

from __future__ import annotations

from pathlib import Path

from clusters.registry import ClusterRecord
from hub.apps import AppStore
from hub.controller import CascadeOutcome, fences_of
from hub.store import Store
from hub.worker import FENCE_ANNOTATION, DeletionOutcome, synced_kinds
from tests.hub.test_apps_store import desired


def test_only_clusters_carrying_the_fence_annotation_are_fenced() -> None:
    records = [
        ClusterRecord(name="a", server="https://a", annotations={FENCE_ANNOTATION: "rm at t"}),
        ClusterRecord(name="b", server="https://b", annotations={"team": "x"}),
    ]
    assert fences_of(records) == {"a": "cluster a is being removed (rm at t)"}


def test_kept_resources_do_not_make_a_deletion_unfinished() -> None:
    kept = DeletionOutcome(app="web", deleted=("/ConfigMap:ns/a",), kept=("/ConfigMap:ns/b",))
    assert kept.done and kept.problem() is None


def test_a_remaining_resource_is_named_in_the_problem() -> None:
    left = DeletionOutcome(app="web", remaining=("/Namespace:/ns: still being deleted",))
    assert not left.done
    assert left.problem() == "web: /Namespace:/ns: still being deleted"


def test_a_cascade_is_done_only_when_nothing_remains() -> None:
    assert CascadeOutcome(by="this command", apps=("web",), kept=("x (Delete=false)",)).done
    assert not CascadeOutcome(by="this command", apps=(), remaining=("cannot check",)).done


def test_a_deletion_lists_the_kinds_the_last_sync_touched(tmp_path: Path) -> None:
    with Store.open(tmp_path / "hub.db", create=True) as store:
        apps = AppStore(store)
        with apps.transaction() as txn:
            txn.put_desired(desired("web"))
        result = {
            "resources": [
                {"group": "example.com", "kind": "Widget", "name": "w"},
                {"group": "", "kind": "ConfigMap", "name": "c"},
                {"kind": ""},  # unreadable entries are skipped
            ]
        }
        apps.set_status("web", operation_state={"phase": "Succeeded", "syncResult": result})
        rec = apps.get("web")
    assert rec is not None
    assert synced_kinds(rec) == {("example.com", "Widget"), ("", "ConfigMap")}
