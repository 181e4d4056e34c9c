"""Resource identity, tracking ids and Argo CD's annotation readers."""

from __future__ import annotations

from typing import Any

import pytest

from hub.sync.model import SyncOptions
from hub.sync.resources import (
    TRACKING_ANNOTATION,
    HookDeletePolicy,
    HookType,
    Phase,
    ResourceKey,
    argo_glob_match,
    compare_options,
    effective_sync_options,
    hook_delete_policies,
    hook_phases,
    hook_types,
    is_hook,
    is_skip,
    owning_app,
    parse_tracking_id,
    sync_wave,
    tracking_id,
    with_tracking_id,
)


def obj(
    kind: str = "Deployment", api: str = "apps/v1", ns: str | None = "payments", **anns: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "annotations": dict(anns)}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": api, "kind": kind, "metadata": meta}


def test_tracking_id_round_trips() -> None:
    key = ResourceKey(group="apps", kind="Deployment", namespace="payments", name="web")
    text = tracking_id("payments", key)
    assert text == "payments:apps/Deployment:payments/web"
    assert parse_tracking_id(text) == ("payments", key)
    core = ResourceKey(group="", kind="Namespace", namespace="", name="payments")
    assert tracking_id("a", core) == "a:/Namespace:/payments"
    assert parse_tracking_id("a:/Namespace:/payments") == ("a", core)


@pytest.mark.parametrize("text", ["", "payments", "payments:apps/Deployment", "a:b:c"])
def test_malformed_tracking_ids_are_not_ids(text: str) -> None:
    assert parse_tracking_id(text) is None


def test_an_object_is_owned_by_the_app_its_tracking_id_names() -> None:
    tracked = with_tracking_id(obj(), "payments")
    assert owning_app(tracked) == "payments"
    assert owning_app(obj()) is None


def test_a_copied_tracking_id_naming_another_object_is_ignored() -> None:
    copied = obj(**{TRACKING_ANNOTATION: "payments:apps/Deployment:payments/api"})
    assert owning_app(copied) is None
    other_ns = obj(ns="staging", **{TRACKING_ANNOTATION: "payments:apps/Deployment:payments/web"})
    assert owning_app(other_ns) is None


@pytest.mark.parametrize(
    ("anns", "wave"),
    [
        ({}, 0),
        ({"argocd.argoproj.io/sync-wave": "-2"}, -2),
        ({"argocd.argoproj.io/sync-wave": "+3"}, 3),
        ({"argocd.argoproj.io/sync-wave": " 1"}, 0),  # Go's Atoi rejects spaces
        ({"argocd.argoproj.io/sync-wave": "one", "helm.sh/hook-weight": "7"}, 7),
        ({"argocd.argoproj.io/sync-wave": "1_0"}, 0),
    ],
)
def test_sync_wave_falls_back_like_argo_cd(anns: dict[str, str], wave: int) -> None:
    assert sync_wave(obj(**anns)) == wave


@pytest.mark.parametrize(
    ("anns", "hook", "skip", "phases"),
    [
        ({}, False, False, (Phase.SYNC,)),
        ({"argocd.argoproj.io/hook": "PreSync"}, True, False, (Phase.PRE_SYNC,)),
        (
            {"argocd.argoproj.io/hook": " PostSync , PreSync,PreSync"},
            True,
            False,
            (Phase.PRE_SYNC, Phase.POST_SYNC),
        ),
        ({"argocd.argoproj.io/hook": "Skip"}, False, True, ()),
        ({"argocd.argoproj.io/hook": "Skip,PreSync"}, True, False, (Phase.PRE_SYNC,)),
        ({"argocd.argoproj.io/hook": "PreDelete"}, True, False, ()),
        (
            {"helm.sh/hook": "pre-install,post-upgrade"},
            True,
            False,
            (Phase.PRE_SYNC, Phase.POST_SYNC),
        ),
        ({"helm.sh/hook": "crd-install"}, False, False, (Phase.SYNC,)),
        (
            {"argocd.argoproj.io/hook": "SyncFail", "helm.sh/hook": "pre-install"},
            True,
            False,
            (Phase.SYNC_FAIL,),
        ),
    ],
)
def test_hook_annotations(
    anns: dict[str, str], hook: bool, skip: bool, phases: tuple[Phase, ...]
) -> None:
    o = obj(**anns)
    assert (is_hook(o), is_skip(o), hook_phases(o)) == (hook, skip, phases)


def test_hook_types_ignore_helm_when_argo_names_a_type() -> None:
    assert hook_types(
        obj(**{"argocd.argoproj.io/hook": "Sync", "helm.sh/hook": "post-install"})
    ) == (HookType.SYNC,)


@pytest.mark.parametrize(
    ("anns", "policies"),
    [
        ({}, {HookDeletePolicy.BEFORE_HOOK_CREATION}),
        (
            {"argocd.argoproj.io/hook-delete-policy": "HookSucceeded,HookFailed"},
            {HookDeletePolicy.HOOK_SUCCEEDED, HookDeletePolicy.HOOK_FAILED},
        ),
        ({"helm.sh/hook-delete-policy": "hook-succeeded"}, {HookDeletePolicy.HOOK_SUCCEEDED}),
        (
            {"argocd.argoproj.io/hook-delete-policy": "Bogus"},
            {HookDeletePolicy.BEFORE_HOOK_CREATION},
        ),
    ],
)
def test_hook_delete_policies_default_to_before_hook_creation(
    anns: dict[str, str], policies: set[HookDeletePolicy]
) -> None:
    assert hook_delete_policies(obj(**anns)) == policies


def test_resource_sync_options_win_over_app_options_key_by_key() -> None:
    app = SyncOptions.parse(["Prune=true", "ServerSideApply=true", "CreateNamespace=true"])
    o = obj(**{"argocd.argoproj.io/sync-options": "Prune=false, Replace=true"})
    opts = effective_sync_options(o, app)
    assert opts.get("Prune") == "false"
    assert opts.get("Replace") == "true"
    assert opts.get("ServerSideApply") == "true"
    assert opts.has("CreateNamespace", "true")
    assert effective_sync_options(None, app) == app


def test_compare_options_are_read_as_a_list() -> None:
    o = obj(**{"argocd.argoproj.io/compare-options": "IgnoreExtraneous,ServerSideDiff=true"})
    assert compare_options(o) == {"IgnoreExtraneous", "ServerSideDiff=true"}


@pytest.mark.timeout(20)
def test_argo_globs_match_in_linear_time_as_gobwas_glob_does() -> None:
    # With Python's `re` this backtracked for seconds and grew polynomially with the name.
    pattern = "*a" * 12 + "*b"
    for _ in range(50):
        assert not argo_glob_match(pattern, "a" * 60)
    assert argo_glob_match(pattern, "a" * 60 + "b")
