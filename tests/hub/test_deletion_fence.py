"""Pure parts of deletion safety: which clusters are fenced, what a deletion reports."""

from __future__ import annotations

from clusters.registry import ClusterRecord
from hub.controller import CascadeOutcome, fences_of
from hub.worker import FENCE_ANNOTATION, DeletionOutcome


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
