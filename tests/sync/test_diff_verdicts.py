"""Verdicts: a refresh reuses the last compare of a resource whose live object changed
only where a compare does not look, and never reaches another verdict than a full compare."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any, cast

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.sync.diff import (
    AppComparison,
    SyncStatus,
    Verdicts,
    compare_app,
    same_to_compare,
)
from hub.sync.live import compare as live_compare
from hub.sync.model import Application, IgnoreDifference, parse_application
from hub.sync.operation import Rendered, Run, SyncRequest
from hub.sync.resources import FIELD_MANAGER
from hub.sync.validate import SourcedManifest
from hub.worker.services import Desired, ManualSync
from tests.sync.test_diff import OUR_FIELDS, desired_deployment, live_deployment


def verdicts_of(comparison: AppComparison) -> list[tuple[str, SyncStatus, Any, bool]]:
    return [(str(r.key), r.status, r.reason, r.counts_for_app) for r in comparison.resources]


def compare(
    desired: list[dict[str, Any]], live: list[dict[str, Any]], memo: Verdicts | None, **kw: Any
) -> AppComparison:
    return compare_app(desired, live, app="payments", verdicts=memo, **kw)


def status_write(obj: dict[str, Any], ready: int) -> dict[str, Any]:
    """``obj`` after a controller's status write: new status, version and its own entry."""
    after = copy.deepcopy(obj)
    after["status"]["readyReplicas"] = ready
    after["metadata"]["resourceVersion"] = str(int(after["metadata"]["resourceVersion"]) + 1)
    after["metadata"]["managedFields"][1]["time"] = f"2026-12-03T10:00:{ready:02d}Z"
    return after


def test_a_status_write_reuses_the_verdict() -> None:
    desired, memo = [desired_deployment()], Verdicts()
    live = live_deployment()
    first = compare(desired, [live], memo)
    assert first.status is SyncStatus.SYNCED and memo.reused == 0
    again = compare(desired, [status_write(live, 1)], memo)
    assert memo.reused == 1
    assert verdicts_of(again) == verdicts_of(first)
    assert again.resources[0].desired is None  # a verdict, not a diff to show


def test_a_spec_change_after_a_reuse_is_compared_again() -> None:
    desired, memo = [desired_deployment()], Verdicts()
    live = live_deployment()
    compare(desired, [live], memo)
    written = status_write(live, 1)
    compare(desired, [written], memo)
    scaled = copy.deepcopy(written)
    scaled["spec"]["replicas"] = 5  # kubectl scale: drift
    drifted = compare(desired, [scaled], memo)
    assert drifted.status is SyncStatus.OUT_OF_SYNC
    assert memo.reused == 1


def test_a_label_or_our_own_field_set_changing_is_compared_again() -> None:
    desired, memo = [desired_deployment()], Verdicts()
    live = live_deployment()
    compare(desired, [live], memo)

    labelled = copy.deepcopy(live)
    labelled["metadata"]["labels"]["team"] = "billing"
    ours = labelled["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:labels"]
    ours["f:team"] = {}  # our manager owns the label Git no longer declares: drift
    assert not same_to_compare(live, labelled, FIELD_MANAGER)
    assert compare(desired, [labelled], memo).status is SyncStatus.OUT_OF_SYNC
    assert memo.reused == 0


def test_another_manager_s_entry_alone_does_not_count() -> None:
    live = live_deployment()
    other = copy.deepcopy(live)
    other["metadata"]["managedFields"][1]["fieldsV1"] = {"f:status": {"f:ready": {}}}
    assert same_to_compare(live, other, FIELD_MANAGER)
    assert not same_to_compare(live, other, "kube-controller-manager")


def test_a_rule_on_other_managers_fields_turns_the_memo_off() -> None:
    # managedFieldsManagers reads other managers' entries, which a status write changes
    rule = IgnoreDifference(
        group="apps", kind="Deployment", managed_fields_managers=("kube-controller-manager",)
    )
    desired, memo = [desired_deployment()], Verdicts()
    live = live_deployment()
    compare(desired, [live], memo, ignore_differences=[rule])
    compare(desired, [status_write(live, 1)], memo, ignore_differences=[rule])
    assert memo.reused == 0 and not memo.entries


def test_a_missing_resource_stays_missing_and_a_deleted_one_is_compared_again() -> None:
    desired, memo = [desired_deployment()], Verdicts()
    live = live_deployment()
    compare(desired, [live], memo)
    gone = compare(desired, [], memo)
    assert gone.status is SyncStatus.OUT_OF_SYNC
    assert compare(desired, [], memo).status is SyncStatus.OUT_OF_SYNC
    assert memo.reused == 1  # the second "missing"


# Our field set claiming a label Git does not declare: drift once the label is there.
OURS_WITH_TEAM = copy.deepcopy(OUR_FIELDS)
OURS_WITH_TEAM["f:metadata"]["f:labels"]["f:team"] = {}

# One live Deployment, changed step by step anywhere a user, a controller or the API
# server may change it; the memo must agree with a full compare after every step.
STEPS = st.lists(
    st.sampled_from(
        [
            ("status", "readyReplicas", 1),
            ("status", "readyReplicas", 3),
            ("status", "observedGeneration", 3),
            ("metadata", "resourceVersion", "99"),
            ("metadata", "resourceVersion", "100"),
            ("metadata", "generation", 3),
            ("spec", "replicas", 5),
            ("spec", "replicas", 3),
            ("spec", "paused", True),
            ("metadata", "labels", {"app": "payments", "team": "x"}),
            ("metadata", "labels", {"app": "payments"}),
            ("metadata", "annotations", {}),
            ("managed", 0, {"f:spec": {"f:replicas": {}}}),
            ("managed", 0, OURS_WITH_TEAM),
            ("managed", 0, OUR_FIELDS),
            ("managed", 1, {"f:status": {"f:ready": {}}}),
            ("top", "status", None),
        ]
    ),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(STEPS)
def test_the_memo_never_reaches_another_verdict_than_a_full_compare(steps: list[Any]) -> None:
    desired, memo = [desired_deployment()], Verdicts()
    live = live_deployment()
    compare(desired, [live], memo)
    for part, key, value in steps:
        live = copy.deepcopy(live)
        if part == "managed":
            live["metadata"]["managedFields"][key]["fieldsV1"] = copy.deepcopy(value)
        elif part == "top":
            live.pop(key, None)
        else:
            live.setdefault(part, {})[key] = value
        assert verdicts_of(compare(desired, [live], memo)) == verdicts_of(
            compare(desired, [live], None)
        )


# -- the engine's compare reuses the worker's verdicts (hub.sync.live.compare) ---------------


def payments() -> Application:
    return parse_application(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "payments"},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://example.com/r.git", "path": "app"},
                "destination": {"name": "a", "namespace": "default"},
            },
        }
    )


def engine_compare(
    manifests: list[dict[str, Any]], live: list[dict[str, Any]], given: Rendered
) -> AppComparison:
    """``hub.sync.live.compare`` for a run handed the worker's render ``given``."""
    run = SimpleNamespace(app=payments(), request=SyncRequest(rendered=given), jq_runner=None)
    sourced = [SourcedManifest(obj=m, origin="app/x.yaml") for m in manifests]
    return anyio.run(live_compare, cast(Run, run), sourced, live)


def rendered_with(manifests: list[dict[str, Any]], memo: Verdicts | None) -> Rendered:
    return Rendered(
        revision="r" * 40,
        manifests=tuple(SourcedManifest(obj=m, origin="app/x.yaml") for m in manifests),
        sources={},
        verdicts=memo,
    )


def test_the_engine_reuses_the_workers_verdicts_for_equal_manifests() -> None:
    desired, memo = [desired_deployment()], Verdicts()
    live = live_deployment()
    worker = compare(desired, [live], memo)  # the worker's refresh
    # The engine validates the render again: equal copies, not the same objects.
    got = engine_compare(copy.deepcopy(desired), [live], rendered_with(desired, memo))
    assert memo.reused == 1
    assert verdicts_of(got) == verdicts_of(worker)


def test_the_engine_compares_afresh_when_its_manifests_differ_from_the_workers() -> None:
    desired, memo = [desired_deployment()], Verdicts()
    live = live_deployment()
    assert compare(desired, [live], memo).status is SyncStatus.SYNCED
    changed = copy.deepcopy(desired)
    changed[0]["spec"]["replicas"] = 7  # same key, another desired state
    got = engine_compare(changed, [live], rendered_with(desired, memo))
    assert memo.reused == 0
    assert got.status is SyncStatus.OUT_OF_SYNC


def test_a_sync_of_the_workers_revision_gets_the_refreshes_verdicts() -> None:
    manifests, memo = [desired_deployment()], Verdicts()
    desired = Desired(
        generation=1,
        sha="r" * 40,
        app=payments(),
        manifests=tuple(manifests),
        rendered=rendered_with(manifests, None),
        verdicts=memo,
    )
    given = desired.for_sync(ManualSync(prune=False, revision=None, who="automated"))
    assert given is not None and given.verdicts is memo
    rollback = ManualSync(prune=False, revision="r" * 40, who="me", manifests=tuple(manifests))
    assert desired.for_sync(rollback) is None  # brings its own manifests: nothing reused
